#!/usr/bin/env bash
# Installs the Debian packages Tessera needs to build and test, if missing.
# Usage: scripts/deps.sh build|test|package
set -euo pipefail
want=(cmake nasm gcc pkg-config)
# dpkg-dev: dpkg-shlibdeps, which cargo-deb asks for the package's dependencies.
if [ "${1:-build}" = package ]; then
  want+=(dpkg-dev)
fi
if [ "${1:-build}" = test ]; then
  # opj_dump/opj_decompress (JPEG 2000 checks), python venv (IIIF validator),
  # lavapipe (software Vulkan for the GPU path), nginx (the HTTP-source origin in tests; started by the tests on loopback only),
  # tesseract with English (real hOCR and ALTO for the OCR parser's realism test).
  # redis-server and haproxy (several instances sharing one tile tier behind a balancer; started by the tests on loopback only).
  # libvips-tools (TIFFs made as IIPImage installations make them), icc-profiles-free (an Adobe RGB profile for the colour tests),
  # openjph-tools (HTJ2K codestreams from OpenJPH's encoder), libtiff-tools (tiffcp: planar TIFFs, which vips does not write).
  want+=(libopenjp2-tools python3-venv libmagic1 mesa-vulkan-drivers nginx tesseract-ocr tesseract-ocr-eng redis-server haproxy
    libvips-tools icc-profiles-free openjph-tools libtiff-tools
    # The Debian package test (tests/package.rs): dpkg-dev for scripts/package.sh, systemd for systemd-analyze verify.
    dpkg-dev systemd)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-build}" = test ]; then
  # Garage (crates.io `garage`, AGPL-3.0): a real S3-compatible store for the
  # S3 source's tests (tests/s3_source.rs), run as an external program and
  # never linked. No Debian or PyPI package has one; building it takes about
  # ten minutes on two cores, so only when missing.
  if ! command -v garage >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/garage" ]; then
    echo "Installing garage (cargo install garage --locked; about ten minutes, once)"
    cargo install garage --locked --quiet
  fi
fi
