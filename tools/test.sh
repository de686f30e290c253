#!/usr/bin/env bash
# tools/test.sh — set up (packages + build) and run the whole test suite.
#   bash tools/test.sh            # release build with -Werror, `meson test`
#   NGT_SANITIZE=1 bash tools/test.sh   # also an address+undefined sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
source tools/env.sh
meson test -C build --print-errorlogs --num-processes 2
if [[ -n ${NGT_SANITIZE:-} ]]; then
  [[ -f build-asan/build.ninja ]] || meson setup build-asan -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debugoptimized -Dwerror=true >/dev/null
  ninja -C build-asan >/dev/null
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite e2e
fi
