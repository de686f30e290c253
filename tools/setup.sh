#!/usr/bin/env bash
# tools/setup.sh — install what ngtrain's build, tests and demo need on Debian 12
# (as root, idempotent, quiet when everything is present), then configure and build.
#
#   bash tools/setup.sh            # packages + build into ./build
#   NGT_SETUP_NO_BUILD=1 bash tools/setup.sh   # packages only
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config meson ninja-build
      libopenmpi-dev openmpi-bin
      libopenblas-dev libdnnl-dev
      libhdf5-dev hdf5-tools
      check
      dataset-fashion-mnist
      clang libclang-rt-14-dev valgrind
      clang-format shellcheck)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to apt-get install: ${missing[*]} (rerun as root, or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ -n ${NGT_SETUP_NO_BUILD:-} ]] && exit 0
if [[ ! -f build/build.ninja ]]; then
  meson setup build --buildtype=release -Dwerror=true >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built ngtrain in ./build"
