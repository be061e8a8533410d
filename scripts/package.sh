#!/usr/bin/env bash
# Builds every Lambda function for arm64 (Graviton, the cheaper architecture) with cargo lambda,
# into one zip per function with `bootstrap` at its root:
#   target/lambda/meter-fn-<name>/bootstrap.zip      (what deploy.sh uploads)
#   target/lambda/<name>-<sha256:16>.zip              (the same, named by content hash)
# and prints each zip's size, refusing any over 6 MB.
#
# cargo-lambda and ziglang (the cross linker) come from PyPI into a project virtualenv; the
# aarch64 Rust target is added when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${LAMBDA_VENV:-$HOME/.cache/meterflow/lambda-venv}
max_bytes=$((6 * 1000 * 1000))

die() { echo "package.sh: $*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is needed to install cargo-lambda and ziglang"
if [ ! -x "$venv/bin/cargo-lambda" ]; then
  python3 -m venv "$venv" || die "cannot create a virtualenv at $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "cargo-lambda==1.9.2" "ziglang==0.13.0" >&2 \
    || die "cannot install cargo-lambda and ziglang from PyPI"
fi
export PATH="$venv/bin:$PATH"
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu >&2 || die "cannot add the aarch64-unknown-linux-gnu target"
fi

# The function names come from the infra crate (the template's own list), not from here.
mapfile -t functions < <(cargo run -q --locked -p infra -- --functions | cut -d' ' -f1)
[ "${#functions[@]}" -gt 0 ] || die "the infra crate listed no functions"
packages=()
for f in "${functions[@]}"; do packages+=(--package "meter-fn-$f"); done
# --lambda-dir keeps the zips in the clone even when the build cache is elsewhere.
cargo lambda build --profile lambda-size --arm64 --output-format zip --lambda-dir target/lambda "${packages[@]}" >&2

status=0
printf '%-16s %10s  %s\n' function bytes zip
for f in "${functions[@]}"; do
  zip=target/lambda/meter-fn-$f/bootstrap.zip
  [ -f "$zip" ] || die "$zip was not built"
  [ "$(unzip -Z1 "$zip")" = bootstrap ] || die "$zip holds more or less than bootstrap at its root"
  bytes=$(stat -c %s "$zip")
  sum=$(sha256sum "$zip" | cut -c1-16)
  cp "$zip" "target/lambda/$f-$sum.zip"
  printf '%-16s %10d  %s\n' "$f" "$bytes" "target/lambda/$f-$sum.zip"
  if [ "$bytes" -gt "$max_bytes" ]; then
    echo "package.sh: $f is $bytes bytes, over the 6 MB budget" >&2
    status=1
  fi
done
exit $status
