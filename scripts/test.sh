#!/usr/bin/env bash
# Every test of the project, as CI runs it (.ci/run calls this). Works on a fresh machine with
# only Rust (the pinned toolchain in rust-toolchain.toml) and Python installed.
#
# Set CARGO_TARGET_DIR to reuse a build cache between clones; nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
rustc --version
cargo --version

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests"
cargo test --workspace --all-features --locked

step "main job: import the examples and print daily rollups"
bash scripts/demo.sh >/dev/null
echo "demo ok"
