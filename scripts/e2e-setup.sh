#!/usr/bin/env bash
# Installs what the Mirador end-to-end test (tests/mirador.rs, driving
# tests/e2e/mirador.mjs) needs, if missing:
#   - Debian's chromium (/usr/bin/chromium), through apt-get;
#   - the npm packages pinned by tests/e2e/package.json and package-lock.json
#     (mirador 3.4.3, playwright-core), into target/tools/e2e/node_modules, so
#     node_modules stays out of the source tree.
# Idempotent and quiet: a second run with an unchanged lockfile does nothing
# and needs no network. Needs Node 20+ and npm. Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium_bin=/usr/bin/chromium
dest=target/tools/e2e
lock=tests/e2e/package-lock.json

# E2E_SKIP_CHROMIUM=1: only the npm packages (scripts/run.sh uses this for the viewer).
if [ "${E2E_SKIP_CHROMIUM:-}" != 1 ] && [ ! -x "$chromium_bin" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "e2e-setup: installing Debian package chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  [ -x "$chromium_bin" ] || { echo "e2e-setup: apt-get installed chromium but $chromium_bin is missing" >&2; exit 1; }
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "e2e-setup: node and npm are required (Node 20 or later)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "e2e-setup: Node $(node --version) is too old; playwright-core needs Node 20 or later" >&2
  exit 1
fi

installed() {
  cmp -s "$lock" "$dest/.installed-lock.json" &&
    [ -f "$dest/node_modules/mirador/dist/mirador.min.js" ] &&
    [ -f "$dest/node_modules/playwright-core/package.json" ]
}
if ! installed; then
  echo "e2e-setup: installing tests/e2e npm packages into $dest"
  mkdir -p "$dest"
  rm -f "$dest/.installed-lock.json"
  cp tests/e2e/package.json "$lock" "$dest/"
  (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null)
  cp "$lock" "$dest/.installed-lock.json"
  installed || { echo "e2e-setup: npm ci finished but mirador or playwright-core is missing in $dest" >&2; exit 1; }
fi
