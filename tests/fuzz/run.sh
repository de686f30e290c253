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
mkdir -p "$W" && W=$(cd "$W" && pwd)
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

# classify LOG: "hdf5" if the sanitizer report is a crash inside libhdf5 on memory libhdf5
# allocated itself (an upstream HDF5 bug on a corrupt file, e.g. HDF5 1.10.8's
# use-after-free in H5Aexists, reproducible without ngtrain), else "ngtrain". The first
# frame that is not a sanitizer interceptor or libFuzzer decides, for the faulting access
# and for the allocation; a buffer ngtrain allocated and HDF5 overran counts as ngtrain's.
classify() {
  awk '
    function top(line) { return line ~ /libhdf5/ ? "hdf5" : "ngtrain" }
    /^ *#[0-9]+ 0x/ {
      if ($0 ~ /__interceptor_|__asan|__sanitizer|__ubsan|libclang_rt|fuzzer::|in (malloc|calloc|realloc|free|memcpy|memmove|memset)[ (]|LLVMFuzzerTestOneInput|in main |libc_start|_start /) next
      if (!seen_access) { access = top($0); seen_access = 1 }
      else if (in_alloc && !seen_alloc) { alloc = top($0); seen_alloc = 1 }
      next
    }
    /allocated by thread|freed by thread/ { in_alloc = 1 }
    END {
      if (seen_access && access == "hdf5" && (!seen_alloc || alloc == "hdf5")) print "hdf5"; else print "ngtrain"
    }' "$1"
}

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
  # 2. fuzz, restarting after crashes inside HDF5 itself (see classify) until time is up
  mkdir -p "$W/corpus/$p" "$W/crashes/hdf5-upstream"
  rm -f "$W/logs/$p-fuzz."*.log
  t_end=$((SECONDS + SECS)) execs=0 upstream=0 ok=1 part=0
  while :; do
    left=$((t_end - SECONDS))
    ((left >= 2)) || break
    part=$((part + 1))
    log="$W/logs/$p-fuzz.$part.log"
    if "$bin" -max_total_time="$left" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
         -print_final_stats=1 -artifact_prefix="$W/crashes/$p-" \
         "$W/corpus/$p" "$S/tests/fuzz/corpus/$p" >"$log" 2>&1; then
      n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
      execs=$((execs + ${n:-0}))
      break
    fi
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    n=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    execs=$((execs + ${n:-0}))
    if [[ "$(classify "$log")" == hdf5 && -n "$art" && $upstream -lt 20 ]]; then
      upstream=$((upstream + 1))
      mv "$art" "$W/crashes/hdf5-upstream/$p-$(basename "$art")"
      echo "     $p: a crash inside libhdf5 itself (upstream bug, not ngtrain code): $(grep -m1 SUMMARY "$log")"
      echo "       input kept as $W/crashes/hdf5-upstream/$p-$(basename "$art"); fuzzing on"
      continue
    fi
    ok=0
    echo "FAIL - $p: the fuzzer found a problem (log: $log, input: ${art:-?}):"
    grep -E "ERROR|SUMMARY|runtime error|fatal|exited|#[0-9]+ 0x" "$log" | head -30 | sed 's/^/    /'
    status=1; summary+=("$p: CRASH (see $log)")
    break
  done
  if ((ok)); then
    cov=$(grep -hE '^#[0-9]+.*cov: ' "$W/logs/$p-fuzz."*.log 2>/dev/null | tail -1 | grep -o 'cov: [0-9]*')
    note=$( ((upstream)) && echo ", $upstream crash(es) inside libhdf5 set aside" )
    echo "ok   - $p: $execs executions in ${SECS}s, ${cov:-cov: ?}, no ngtrain crash$note"
    summary+=("$p: $execs execs in ${SECS}s, ${cov:-cov: ?}, no ngtrain crash$note")
  fi
done
echo "--- fuzz summary"
printf '  %s\n' "${summary[@]}"
exit $status
