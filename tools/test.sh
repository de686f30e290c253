#!/usr/bin/env bash
# tools/test.sh — set up (packages + build) and run the whole test suite:
#   1. release build with -Werror: every unit and end-to-end test and the lint suite
#      (clang-format, shellcheck: tests/lint.sh), all counted in the closing line (meson test);
#   2. address + undefined-behaviour sanitizer build: the unit tests, leaks checked;
#   3. every fuzzing regression input and seed replayed through the libFuzzer harnesses
#      (tests/fuzz/run.sh 0): deterministic, the same inputs on every run.
#   NGT_SANITIZE=0 skips 2 and 3. Random fuzzing is not part of this command (it can find
#   libhdf5's own bugs by chance): run it with `bash tests/fuzz/run.sh SECONDS`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
source tools/env.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# meson's own summary ("Ok: N", "Fail: N") is added up into one closing line at the end;
# a failing stage does not stop the later ones, and any failure makes the exit status 1
status=0
meson test -C build --print-errorlogs --num-processes 2 | tee -a "$log" || status=1

if [[ ${NGT_SANITIZE:-1} != 0 ]]; then
  echo "== sanitizer build (address, undefined): unit tests"
  [[ -f build-asan/build.ninja ]] || meson setup build-asan -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debugoptimized -Dwerror=true >/dev/null
  ninja -C build-asan >/dev/null
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp \
    meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit | tee -a "$log" || status=1
fi

if [[ ${NGT_SANITIZE:-1} != 0 ]]; then
  echo "== fuzz harnesses: replay of every kept regression input and seed"
  if bash tests/fuzz/run.sh 0; then echo "Ok: 1" >>"$log"; else echo "Fail: 1" >>"$log"; fi
fi

ok=$(awk '/^Ok:/ {n += $2} END {print n + 0}' "$log")
bad=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {n += $NF} END {print n + 0}' "$log")
if ((status != 0 && bad == 0)); then
  echo "tests: $ok passed, $bad failed, and a meson test run itself failed (see above)"
else
  echo "tests: $ok passed, $bad failed"
fi
((status == 0 && bad == 0))
