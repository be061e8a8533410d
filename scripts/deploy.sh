#!/usr/bin/env bash
# Deploys the meterflow stack: packages the functions (scripts/package.sh), uploads them under
# content-hashed keys, synthesises the templates (cargo run -p infra), runs
# `aws cloudformation deploy`, and prints the outputs and the next steps.
#
# Usage: scripts/deploy.sh [--dry-run] [--stack NAME] [--region REGION]
#                          [--history dynamodb|timestream] [--code-bucket BUCKET]
#                          [--api-auth AWS_IAM|NONE] [--alarm-email ADDRESS]
# --dry-run prints the commands it would run and needs neither the AWS CLI nor credentials.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
stack=meterflow
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
history=dynamodb
code_bucket=
api_auth=AWS_IAM
alarm_email=

die() { echo "deploy.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --stack) stack=${2:?--stack needs a name}; shift ;;
    --region) region=${2:?--region needs a region}; shift ;;
    --history) history=${2:?--history needs dynamodb or timestream}; shift ;;
    --code-bucket) code_bucket=${2:?--code-bucket needs a bucket}; shift ;;
    --api-auth) api_auth=${2:?--api-auth needs AWS_IAM or NONE}; shift ;;
    --alarm-email) alarm_email=${2:?--alarm-email needs an address}; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case $history in dynamodb|timestream) ;; *) die "--history must be dynamodb or timestream" ;; esac
case $api_auth in AWS_IAM|NONE) ;; *) die "--api-auth must be AWS_IAM or NONE" ;; esac
[ -n "$region" ] || die "no region: pass --region or set AWS_REGION"
if [ -n "$alarm_email" ] && ! [[ $alarm_email =~ ^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$ ]]; then
  die "--alarm-email $alarm_email is not an email address"
fi

# Runs a command, or prints it in a dry run.
run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

if [ "$dry_run" = 1 ]; then
  account=123456789012
else
  command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not installed: https://docs.aws.amazon.com/cli/"
  account=$(aws sts get-caller-identity --query Account --output text 2>/dev/null) \
    || die "no AWS credentials: configure a profile (aws configure) or set AWS_ACCESS_KEY_ID"
fi
code_bucket=${code_bucket:-$stack-code-$account-$region}

# The function names and their template parameters come from the infra crate, not from here.
functions=$(cargo run -q -p infra -- --functions)

echo "== package the functions"
run bash scripts/package.sh

echo "== synthesise the templates"
run cargo run -q -p infra -- --out infra/out
template=infra/out/meterflow-$history.json

echo "== upload the packages to s3://$code_bucket"
if [ "$dry_run" = 1 ] || ! aws s3api head-bucket --bucket "$code_bucket" --region "$region" >/dev/null 2>&1; then
  run aws s3 mb "s3://$code_bucket" --region "$region"
fi
overrides=(HistoryStore="$history" CodeBucket="$code_bucket" ApiAuthType="$api_auth" AlarmEmail="$alarm_email")
while read -r name param; do
  zip=target/lambda/meter-fn-$name/bootstrap.zip
  if [ "$dry_run" = 1 ]; then
    sum=DRYRUNSHA256
  else
    [ -f "$zip" ] || die "$zip is missing: scripts/package.sh did not build $name"
    sum=$(sha256sum "$zip" | cut -c1-16)
  fi
  key=lambda/$name-$sum.zip
  run aws s3 cp "$zip" "s3://$code_bucket/$key" --region "$region"
  overrides+=("$param=$key")
done <<< "$functions"

echo "== deploy the stack $stack"
run aws cloudformation deploy \
  --stack-name "$stack" --region "$region" \
  --template-file "$template" \
  --s3-bucket "$code_bucket" --s3-prefix templates \
  --capabilities CAPABILITY_IAM \
  --no-fail-on-empty-changeset \
  --parameter-overrides "${overrides[@]}"
run aws cloudformation describe-stacks --stack-name "$stack" --region "$region" \
  --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table

cat <<NEXT

Next steps:
  1. Store the SST Cloud token (the secret's ARN is the SstSecretArn output):
       aws secretsmanager put-secret-value --region $region --secret-id <SstSecretArn> --secret-string <token>
  2. Read the generated API token and webhook secret (ApiTokenSecretArn, WebhookSecretArn):
       aws secretsmanager get-secret-value --region $region --secret-id <ApiTokenSecretArn> --query SecretString
  3. Register the mbed Connector callback: the WebhookUrl output, with header x-webhook-secret.
  4. Add meters to the registry table (RegistryTableName), and put CSV or Pi JSON files in the
     import bucket (ImportBucketName).
NEXT
