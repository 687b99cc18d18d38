#!/usr/bin/env bash
# Builds Tessera's Debian package with cargo-deb (metadata in Cargo.toml,
# [package.metadata.deb]):
#   /usr/bin/tessera
#   /etc/tessera/tessera.toml        a conffile: config/default.toml with an
#                                    installed server's paths (deploy/debian/conffile.py)
#   /usr/lib/systemd/system/tessera.service   the hardened unit (deploy/debian/),
#                                    installed disabled: set source.root, then
#                                    systemctl enable --now tessera
#   /usr/share/tessera/mirador/      Mirador 3.4.3 for the /viewer pages
#
# Usage: scripts/package.sh [--binary PATH] [--output DIR] | --tools
#   With no --binary, cargo-deb makes a release build (minutes). --binary
#   packages a binary already built (the package test gives its own).
#   --tools only installs what it needs (scripts/test.sh, before the tests).
# Installs what it needs: dpkg-dev (dependencies from the binary's shared
# libraries), cargo-deb 3.8.0 under target/tools/cargo-deb, Mirador from npm.
# The path of the .deb is the last line it prints.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
output=target/debian
tools_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --tools) tools_only=1; shift ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bash scripts/deps.sh package
cargo_deb=target/tools/cargo-deb/bin/cargo-deb
if [ ! -x "$cargo_deb" ]; then
  echo "package.sh: installing cargo-deb 3.8.0 into target/tools/cargo-deb"
  cargo install --quiet --locked --version 3.8.0 --root target/tools/cargo-deb cargo-deb
fi
E2E_SKIP_CHROMIUM=1 bash scripts/e2e-setup.sh
[ -z "$tools_only" ] || exit 0

mkdir -p target/package "$output"
python3 deploy/debian/conffile.py config/default.toml target/package/tessera.toml

if [ -n "$binary" ]; then
  # cargo-deb takes binaries from <target dir>/release/: give it a target
  # folder of its own holding this one, so no real release build is touched.
  stage="$PWD/target/package/stage"
  rm -rf "$stage"
  mkdir -p "$stage/release"
  cp "$binary" "$stage/release/tessera"
  CARGO_TARGET_DIR="$stage" "$cargo_deb" --no-build --fast --output "$output"
else
  "$cargo_deb" --locked --output "$output"
fi
ls -t "$output"/tessera_*.deb | head -1
