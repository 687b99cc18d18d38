#!/usr/bin/env bash
# The chaos soak (tests/soak.rs) for MINUTES (30 by default) with fault
# schedule SEED (random by default; printed, so a run can be repeated):
# three Tessera instances, Redis, HAProxy and an HTTP origin under faults,
# every answer checked. The summary lands in target/soak/summary.md, the
# instances' logs in target/soak/logs/.
#   bash scripts/soak.sh 30
#   bash scripts/soak.sh 5 1234
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
seed=${2:-$((RANDOM * 32768 + RANDOM))}
bash scripts/deps.sh test
export TESSERA_SOAK_SECS=$((minutes * 60)) TESSERA_SOAK_SEED=$seed
echo "soak: $minutes min, seed $seed" >&2
cargo test --locked --features fault-injection --test soak -- --nocapture
