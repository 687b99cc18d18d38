#!/usr/bin/env bash
# Runs Tessera on the bundled sample images (generated on first start into
# samples/generated/), at http://localhost:8182/. Extra arguments go to
# `tessera serve`, e.g. scripts/run.sh --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
# Mirador for the /viewer pages (served locally; the CDN copy is the fallback).
E2E_SKIP_CHROMIUM=1 bash scripts/e2e-setup.sh || echo "run.sh: Mirador not installed locally; /viewer uses the CDN copy"
exec cargo run --release --locked -- serve "$@"
