#!/usr/bin/env bash
# tools/test.sh — set up (packages + build) and run the whole test suite:
#   1. release build with -Werror: every unit and end-to-end test (meson test);
#   2. address + undefined-behaviour sanitizer build: the unit tests, leaks checked;
#   3. a bounded fuzzing run of every input parser (tests/fuzz/run.sh), if present.
#   NGT_SANITIZE=0 skips 2, NGT_FUZZ_SECONDS=N sets 3's time per parser (0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
source tools/env.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# meson's own summary ("Ok: N", "Fail: N") is added up into one closing line at the end
meson test -C build --print-errorlogs --num-processes 2 | tee -a "$log"

if [[ ${NGT_SANITIZE:-1} != 0 ]]; then
  echo "== sanitizer build (address, undefined): unit tests"
  [[ -f build-asan/build.ninja ]] || meson setup build-asan -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debugoptimized -Dwerror=true >/dev/null
  ninja -C build-asan >/dev/null
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp \
    meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit | tee -a "$log"
fi

if [[ -f tests/fuzz/run.sh && ${NGT_FUZZ_SECONDS:-15} != 0 ]]; then
  echo "== fuzzing: ${NGT_FUZZ_SECONDS:-15} s per parser"
  bash tests/fuzz/run.sh "${NGT_FUZZ_SECONDS:-15}"
fi

ok=$(awk '/^Ok:/ {n += $2} END {print n + 0}' "$log")
bad=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {n += $NF} END {print n + 0}' "$log")
echo "tests: $ok passed, $bad failed"
