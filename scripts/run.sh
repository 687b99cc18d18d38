#!/usr/bin/env bash
# Runs Tessera on the bundled sample images (generated on first start into
# samples/generated/), at http://localhost:8182/. Extra arguments go to
# `tessera serve`, e.g. scripts/run.sh --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
exec cargo run --release --locked -- serve "$@"
