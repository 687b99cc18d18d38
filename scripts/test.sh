#!/usr/bin/env bash
# Runs the whole test suite: unit and integration tests, and the IIIF Image
# API validator (PyPI iiif-validator 1.0.5) against a running server.
# Installs what it needs (Debian packages, a Python venv under target/tools).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test

venv=target/tools/venv
if [ ! -x "$venv/bin/iiif-validate.py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check iiif-validator==1.0.5
fi
if ! "$venv/bin/python" -c 'import iiif_prezi, pyld' 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check iiif-prezi pyld
fi
export TESSERA_VALIDATOR="$PWD/$venv/bin/iiif-validate.py"
export TESSERA_PREZI_VALIDATOR="$PWD/$venv/bin/python"
# Software Vulkan (lavapipe) for the GPU tests, which must not skip here.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export WGPU_BACKEND=vulkan
lvp=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
[ -f "$lvp" ] && export VK_ICD_FILENAMES="$lvp"
export TESSERA_REQUIRE_GPU=1

# Chromium and the npm packages of the Mirador end-to-end test.
bash scripts/e2e-setup.sh
# The Debian package test installs the package with dpkg, so it needs root;
# as root it must run (cargo-deb installed here), elsewhere it skips.
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/package.sh --tools
  export TESSERA_REQUIRE_PACKAGE=1
fi

# CI builds once from nothing: incremental state would only take disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
cargo test --locked --all-targets "$@"
# The chaos soak (two minutes; tests/soak.rs) needs the test-only fault
# hooks, compiled in by a feature the other tests run without.
if [ $# -eq 0 ]; then
  TESSERA_SOAK_SECS=${TESSERA_SOAK_SECS:-120} cargo test --locked --features fault-injection --test soak
fi
# What the build left on disk, for whoever reads a CI log after a full disk.
du -sh target/debug 2>/dev/null || true
