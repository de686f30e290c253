#!/usr/bin/env bash
# tests/fuzz/run.sh — build the libFuzzer harnesses and run each for a bounded time.
#   bash tests/fuzz/run.sh [SECONDS_EACH=20] [WORKDIR=/tmp/ngt-fuzz] [HARNESS...]
# For each harness tests/fuzz/fuzz_<parser>.c (built with clang -fsanitize=fuzzer,address,
# undefined against the library sources it needs):
#   1. replay every input in tests/fuzz/regress/<parser>/ (crashes found and fixed before:
#      each must now run clean), then the seed corpus tests/fuzz/corpus/<parser>/;
#   2. fuzz for SECONDS_EACH seconds, starting from the seeds (new inputs go to
#      WORKDIR/corpus/<parser>, never into the source tree).
# Exits nonzero if any replay or fuzz run finds a crash, a sanitizer report, a leak, an
# exit() from library code, a timeout or an out-of-memory; the reproducer is saved as
# WORKDIR/crashes/<parser>-crash-<sha1> (replay it with WORKDIR/bin/fuzz_<parser> FILE).
# A harness whose library module is not in the tree yet is skipped with a note.
set -uo pipefail
S=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${1:-20}
W=${2:-/tmp/ngt-fuzz}
shift $(($# > 2 ? 2 : $#))
ALL=(nnet_config opts nnet_load shard kaldi_io npy)
WANT=("${@:-${ALL[@]}}")
CC=${CC_FUZZ:-clang}
command -v "$CC" >/dev/null || { echo "run.sh: $CC not found (apt-get install clang)"; exit 2; }
mkdir -p "$W"/{bin,obj,corpus,crashes,logs}

# library sources each harness links (beyond its own file)
declare -A SRCS=(
  [nnet_config]="log fileio mat rng nnet"
  [opts]="log opts"
  [nnet_load]="log fileio mat rng nnet nnet_io"
  [shard]="log fileio shard"
  [kaldi_io]="log fileio mat kaldi_io"
  [npy]="log npy"
)
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
CFLAGS=(-std=c11 -g -O1 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$S/include")
read -r -a DEPS <<<"$(pkg-config --cflags --libs openblas hdf5) -lm -lpthread"

# the allocator returns NULL above 1 GB instead of aborting, so the library's
# out-of-memory paths (user-controlled sizes) run instead of stopping the fuzzer
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$S/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export HDF5_USE_FILE_LOCKING=FALSE
export OPENBLAS_NUM_THREADS=1

status=0
summary=()
build() {
  local p=$1 objs=() m
  for m in ${SRCS[$p]}; do
    if [[ ! -f "$S/src/$m.c" ]]; then echo "skip $p: src/$m.c is not in the tree yet"; return 1; fi
    local o="$W/obj/$m.o"
    if [[ ! -f "$o" || "$S/src/$m.c" -nt "$o" || -n "$(find "$S/include/ngtrain" -newer "$o" -print -quit)" ]]; then
      "$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link -c "$S/src/$m.c" -o "$o" \
        $(pkg-config --cflags hdf5 openblas) || return 1
    fi
    objs+=("$o")
  done
  "$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer "$S/tests/fuzz/fuzz_$p.c" "${objs[@]}" \
    "${DEPS[@]}" -o "$W/bin/fuzz_$p"
}

for p in "${WANT[@]}"; do
  echo "=== $p"
  if ! build "$p"; then
    if [[ -f "$S/tests/fuzz/fuzz_$p.c" ]] && [[ -z "$(for m in ${SRCS[$p]}; do [[ -f "$S/src/$m.c" ]] || echo x; done)" ]]; then
      echo "FAIL - $p: build failed"; status=1; summary+=("$p: build FAILED")
    else
      summary+=("$p: skipped (module not in the tree)")
    fi
    continue
  fi
  bin="$W/bin/fuzz_$p"
  # 1. replay: regressions first, then the seeds; each input runs once
  replay=()
  [[ -d "$S/tests/fuzz/regress/$p" ]] && while IFS= read -r f; do replay+=("$f"); done \
    < <(find "$S/tests/fuzz/regress/$p" -type f | sort)
  nreg=${#replay[@]}
  while IFS= read -r f; do replay+=("$f"); done < <(find "$S/tests/fuzz/corpus/$p" -type f | sort)
  if ((${#replay[@]})); then
    if ! "$bin" -timeout=30 -rss_limit_mb=2048 "${replay[@]}" >"$W/logs/$p-replay.log" 2>&1; then
      echo "FAIL - $p: replaying the regression/seed inputs crashed:"
      grep -E "Running:|ERROR|SUMMARY|fatal|#[0-9]+ 0x" "$W/logs/$p-replay.log" | tail -25 | sed 's/^/    /'
      status=1; summary+=("$p: replay FAILED (see $W/logs/$p-replay.log)")
      continue
    fi
    echo "ok   - $p: replayed $nreg regression input(s) and $((${#replay[@]} - nreg)) seed(s)"
  fi
  # 2. fuzz
  mkdir -p "$W/corpus/$p"
  if "$bin" -max_total_time="$SECS" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$W/crashes/$p-" \
       "$W/corpus/$p" "$S/tests/fuzz/corpus/$p" >"$W/logs/$p-fuzz.log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$W/logs/$p-fuzz.log" | grep -o '[0-9]*$')
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$W/logs/$p-fuzz.log" | tail -1 | grep -o 'cov: [0-9]*')
    echo "ok   - $p: ${execs:-?} executions in ${SECS}s, ${cov:-cov: ?}, no crash"
    summary+=("$p: ${execs:-?} execs in ${SECS}s, ${cov:-cov: ?}, no crash")
  else
    echo "FAIL - $p: the fuzzer found a problem:"
    grep -E "ERROR|SUMMARY|Test unit written|fatal|exited|#[0-9]+ 0x" "$W/logs/$p-fuzz.log" | head -30 | sed 's/^/    /'
    status=1; summary+=("$p: CRASH (see $W/logs/$p-fuzz.log)")
  fi
done
echo "--- fuzz summary"
printf '  %s\n' "${summary[@]}"
exit $status
