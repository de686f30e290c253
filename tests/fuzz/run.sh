#!/usr/bin/env bash
# tests/fuzz/run.sh — build the libFuzzer harnesses and run each for a bounded time.
#   bash tests/fuzz/run.sh [SECONDS_EACH=20] [WORKDIR=/tmp/ngt-fuzz] [HARNESS...]
# SECONDS_EACH=0 replays only (step 1 below): deterministic, what tools/test.sh runs.
# Random fuzzing (SECONDS_EACH > 0) can find libhdf5's own bugs on damaged files at any
# moment, so it is an evidence run, never part of the test command.
# For each harness tests/fuzz/fuzz_<parser>.c (built with clang -fsanitize=fuzzer,address,
# undefined against the library sources it needs):
#   1. replay every input in tests/fuzz/regress/<parser>/ (crashes found and fixed before:
#      each must now run clean), then the seed corpus tests/fuzz/corpus/<parser>/, then each
#      seed named crash-* (a crash found in code not fixed yet: it fails the run until the
#      fix lands, then belongs in regress/);
#   2. fuzz for SECONDS_EACH seconds, starting from the seeds (minus the crash-* ones; new
#      inputs go to WORKDIR/corpus/<parser>, never into the source tree). A crash inside
#      libhdf5 itself on a corrupt file (an upstream HDF5 bug, see classify below) is set
#      aside in WORKDIR/crashes/hdf5-upstream/ and fuzzing goes on; any other crash fails.
# Exits nonzero if any replay or fuzz run finds a crash, a sanitizer report, a leak, an
# exit() from library code, a timeout or an out-of-memory; the reproducer is saved as
# WORKDIR/crashes/<parser>-crash-<sha1> (replay it with WORKDIR/bin/fuzz_<parser> FILE).
# A harness whose library sources (SRCS below) are missing fails: update SRCS when a
# module moves or is split.
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
  [nnet_config]="log fileio mat engine rng nnet"
  [opts]="log opts"
  [nnet_load]="log fileio mat engine rng nnet h5util nnet_io"
  [shard]="log fileio h5util shard"
  [kaldi_io]="log fileio mat kaldi_io"
  [npy]="log npy"
)
SAN=('-fsanitize=address,undefined' -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
CFLAGS=(-std=c11 -g -O1 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$S/include")
read -r -a DEPS <<<"$(pkg-config --cflags --libs openblas hdf5) -lm -lpthread"
read -r -a LIBCFLAGS <<<"$(pkg-config --cflags hdf5 openblas)"

# the allocator returns NULL above 1 GB instead of aborting, so the library's
# out-of-memory paths (user-controlled sizes) run instead of stopping the fuzzer
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$S/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export HDF5_USE_FILE_LOCKING=FALSE
export OPENBLAS_NUM_THREADS=1

# classify LOG: "hdf5" if the sanitizer report is a memory error inside libhdf5 that is
# HDF5's own bug on a corrupt file (not a buffer ngtrain handed it), else "ngtrain".
#  - the faulting access must be in libhdf5 (first frame that is not a sanitizer
#    interceptor or libFuzzer), and
#  - either the HDF5 API function ngtrain called takes no buffer from ngtrain (H5Aexists,
#    H5Fopen, H5Dopen2, ...: then no ngtrain memory can be involved; HDF5 1.10.8 has a
#    use-after-free in H5Aexists on damaged attribute messages, reproducible with a
#    10-line program and no ngtrain code), or the memory involved was allocated/freed
#    by libhdf5 itself. A buffer ngtrain allocated and HDF5 overran counts as ngtrain's.
classify() {
  awk '
    function skip(line) {
      # sanitizer interceptors (strdup, strlen, memcpy, ... compiled into the harness),
      # libFuzzer and libc start-up frames are not where the fault is
      return line ~ /__interceptor_|__asan|__sanitizer|__ubsan|libclang_rt|fuzzer::|in (malloc|calloc|realloc|free|memcpy|memmove|memset|memcmp|strdup|strndup|strlen|strnlen|strcpy|strncpy|strcmp|strncmp|strcat|strchr|strrchr|strstr|sprintf|snprintf|vsnprintf)[ (]|libc_start|_start |\/libc\.so|sysdeps\/|in __(mem|str)[a-z_0-9]+ / 
    }
    /^ *#[0-9]+ 0x/ {
      if (skip($0)) next
      if (stack == 0) {                          # the access (or crash) stack
        if (!seen_access) { access = ($0 ~ /libhdf5/) ? "hdf5" : "ngtrain"; seen_access = 1 }
        if ($0 ~ /libhdf5/ && !left_hdf5) { if (match($0, / in H5[A-Za-z0-9_]+/)) api = substr($0, RSTART + 4, RLENGTH - 4) }
        else left_hdf5 = 1
      } else if (!seen_alloc) { alloc = ($0 ~ /libhdf5/) ? "hdf5" : "ngtrain"; seen_alloc = 1 }
      next
    }
    /allocated by thread|freed by thread/ { stack = 1 }
    END {
      nobuf = "^(H5Aexists|H5Aexists_by_name|H5Lexists|H5Fopen|H5Fis_hdf5|H5Fclose|H5Gopen2|H5Gget_info|H5Dopen2|H5Aopen|H5Aopen_by_name|H5Aget_type|H5Aget_space|H5Dget_type|H5Dget_space|H5Oopen|H5Oget_info3|H5Tget_class|H5Tget_size|H5Tis_variable_str)$"
      if (seen_access && access == "hdf5" && (api ~ nobuf || !seen_alloc || alloc == "hdf5")) print "hdf5"
      else print "ngtrain"
    }' "$1"
}

status=0
summary=()
build() {
  local p=$1 objs=() m
  for m in ${SRCS[$p]}; do
    if [[ ! -f "$S/src/$m.c" ]]; then echo "src/$m.c (SRCS[$p] in tests/fuzz/run.sh) does not exist"; return 1; fi
    local o="$W/obj/$m.o"
    if [[ ! -f "$o" || "$S/src/$m.c" -nt "$o" || -n "$(find "$S/include/ngtrain" -newer "$o" -print -quit)" ]]; then
      "$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link -c "$S/src/$m.c" -o "$o" \
        "${LIBCFLAGS[@]}" || return 1
    fi
    objs+=("$o")
  done
  "$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer "$S/tests/fuzz/fuzz_$p.c" "${objs[@]}" \
    "${DEPS[@]}" -o "$W/bin/fuzz_$p"
}

for p in "${WANT[@]}"; do
  echo "=== $p"
  if ! build "$p"; then
    echo "FAIL - $p: build failed"; status=1; summary+=("$p: build FAILED")
    continue
  fi
  bin="$W/bin/fuzz_$p"
  # 1. replay: each regression input (must run clean), the seeds in one batch, then each
  #    known crash seed (crash-*, unfixed): still crashing fails the run with its name
  replay_one() { "$bin" -timeout=30 -rss_limit_mb=2048 "$@" >"$W/logs/$p-replay.log" 2>&1; }
  show() { grep -E "ERROR|SUMMARY|runtime error|fatal|#[0-9]+ 0x" "$W/logs/$p-replay.log" | grep -v "fuzzer::" | head -"${1:-12}" | sed 's/^/    /'; }
  nreg=0
  while IFS= read -r f; do
    nreg=$((nreg + 1))
    replay_one "$f" || { echo "FAIL - $p: regression input $(basename "$f") crashes again:"; show; status=1
                         summary+=("$p: regression $(basename "$f") FAILED"); }
  done < <(find "$S/tests/fuzz/regress/$p" -type f 2>/dev/null | sort)
  seeds=()
  while IFS= read -r f; do seeds+=("$f"); done < <(find "$S/tests/fuzz/corpus/$p" -type f ! -name 'crash-*' | sort)
  if ((${#seeds[@]})) && ! replay_one "${seeds[@]}"; then
    echo "FAIL - $p: a seed input crashes:"; show 20; status=1; summary+=("$p: seed replay FAILED")
  else
    echo "ok   - $p: replayed $nreg regression input(s) and ${#seeds[@]} seed(s)"
  fi
  while IFS= read -r f; do
    if replay_one "$f"; then
      echo "note - $p: known crash $(basename "$f") no longer crashes: move it to tests/fuzz/regress/$p/"
    else
      echo "FAIL - $p: known crash $(basename "$f") still crashes (unfixed; docs/results/trust.md):"; show 6
      status=1; summary+=("$p: known crash $(basename "$f") still crashes")
    fi
  done < <(find "$S/tests/fuzz/corpus/$p" -type f -name 'crash-*' | sort)
  if ((SECS == 0)); then summary+=("$p: replayed $nreg regression input(s) and ${#seeds[@]} seed(s)"); continue; fi
  # 2. fuzz, restarting after crashes inside HDF5 itself (see classify) until time is up
  # seeds without the crash-* ones (known, unfixed crashes: the replay above reports them)
  rm -rf "$W/seeds/$p" "$W/logs/$p-fuzz."*.log
  mkdir -p "$W/corpus/$p" "$W/seeds/$p" "$W/crashes/hdf5-upstream"
  find "$S/tests/fuzz/corpus/$p" -type f ! -name 'crash-*' -exec cp {} "$W/seeds/$p/" \;
  t_end=$((SECONDS + SECS)) execs=0 upstream=0 ok=1 part=0
  while :; do
    left=$((t_end - SECONDS))
    ((left >= 2)) || break
    part=$((part + 1))
    log="$W/logs/$p-fuzz.$part.log"
    if "$bin" -max_total_time="$left" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
         -print_final_stats=1 -artifact_prefix="$W/crashes/$p-" \
         "$W/corpus/$p" "$W/seeds/$p" >"$log" 2>&1; then
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
      rm -f "$W/corpus/$p/${art##*-}"   # corpus files are named by SHA-1, like artifacts
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
