#!/usr/bin/env bash
# Removes a meterflow stack: empties the import bucket (every version and delete marker, which
# CloudFormation cannot delete a bucket without), deletes the stack and waits for it.
#
# Usage: scripts/cleanup.sh [--dry-run] [--stack NAME] [--region REGION] [--code-bucket BUCKET]
# With --code-bucket, that bucket (the packages deploy.sh uploaded) is emptied and removed too.
# --dry-run prints the commands it would run and needs neither the AWS CLI nor credentials.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
stack=meterflow
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
code_bucket=

die() { echo "cleanup.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --stack) stack=${2:?--stack needs a name}; shift ;;
    --region) region=${2:?--region needs a region}; shift ;;
    --code-bucket) code_bucket=${2:?--code-bucket needs a bucket}; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ -n "$region" ] || die "no region: pass --region or set AWS_REGION"

run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

if [ "$dry_run" = 0 ]; then
  command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not installed"
  aws sts get-caller-identity >/dev/null 2>&1 || die "no AWS credentials: configure a profile or set AWS_ACCESS_KEY_ID"
fi

# Deletes every object version and delete marker, 1,000 at a time (DeleteObjects' limit).
empty_bucket() {
  local bucket=$1 batch
  if [ "$dry_run" = 1 ]; then
    run aws s3api list-object-versions --bucket "$bucket" --region "$region" --max-items 1000
    run aws s3api delete-objects --bucket "$bucket" --region "$region" --delete "file://<batch>"
    return
  fi
  batch=$(mktemp)
  while true; do
    # shellcheck disable=SC2016 # the backticks are a JMESPath literal, not a shell expansion
    aws s3api list-object-versions --bucket "$bucket" --region "$region" --max-items 1000 \
      --query '{Objects: [Versions, DeleteMarkers][][].{Key: Key, VersionId: VersionId}, Quiet: `true`}' \
      --output json > "$batch"
    if grep -q '"Objects": null' "$batch" || grep -q '"Objects": \[\]' "$batch"; then
      break
    fi
    aws s3api delete-objects --bucket "$bucket" --region "$region" --delete "file://$batch" >/dev/null
  done
  rm -f "$batch"
}

if [ "$dry_run" = 1 ]; then
  bucket="<ImportBucketName of $stack>"
  run aws cloudformation describe-stacks --stack-name "$stack" --region "$region" \
    --query "Stacks[0].Outputs[?OutputKey=='ImportBucketName'].OutputValue" --output text
else
  bucket=$(aws cloudformation describe-stacks --stack-name "$stack" --region "$region" \
    --query "Stacks[0].Outputs[?OutputKey=='ImportBucketName'].OutputValue" --output text) \
    || die "no stack $stack in $region"
fi
echo "== empty the import bucket $bucket"
empty_bucket "$bucket"
echo "== delete the stack $stack"
run aws cloudformation delete-stack --stack-name "$stack" --region "$region"
run aws cloudformation wait stack-delete-complete --stack-name "$stack" --region "$region"
if [ -n "$code_bucket" ]; then
  echo "== remove the code bucket $code_bucket"
  empty_bucket "$code_bucket"
  run aws s3api delete-bucket --bucket "$code_bucket" --region "$region"
fi
echo "done"
