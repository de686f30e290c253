#!/usr/bin/env bash
# Fault injection under mpirun -np 3 on the example data. Each fault must stop the job with
# a message that says what happened, leave every remaining checkpoint loadable, and the
# rerun of the same command must resume and end with a model identical (h5diff of
# /components) to an uninterrupted run:
#   1. a worker (rank 1) killed with SIGKILL mid-iteration;
#   2. the coordinator (rank 0) killed with SIGKILL several times, as soon as a checkpoint
#      temp file appears (i.e. while it is being written) or at a random moment;
#   3. the disk full while writing a checkpoint (a 2.5 MB tmpfs; needs root for mount) and
#      a file-size limit (ulimit -f) on the resumed run;
#   4. a training shard truncated in the middle of the run.
source "$(dirname "$0")/lib.sh" "$1"
trap 'umount "$T/full" 2>/dev/null || true; rm -rf "$T"' EXIT
NP=3
E=(--num-epochs=6 --seed=3)   # 31 iterations of 0.1-0.4 s: time to hit the run mid-way
train() { local dir=$1; shift; mpirun -np $NP "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$dir" "$@"; }

# pid of the ngtrain process of MPI rank $2 whose command line has --dir=$1 (other jobs on
# the machine may run ngtrain too)
rank_pid() {
  local p
  for p in $(pgrep -x ngtrain); do
    tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | grep -qxF -- "--dir=$1" || continue
    tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return 0; }
  done
  return 1
}
# number of checkpoint temp files ("N.h5.tmp.PID") in $1, without forking
count_tmp() { local f; shopt -s nullglob; f=("$1"/*.tmp.*); shopt -u nullglob; echo ${#f[@]}; }
n_tmp=0
# number of model temp files (N.h5.tmp.PID) of writer pid $2 in $1, into n_tmp (no fork)
set_n_tmp() { local f; shopt -s nullglob; f=("$1"/*.h5.tmp."$2"); shopt -u nullglob; n_tmp=${#f[@]}; }
newest_ckpt() { { ls "$1" 2>/dev/null || true; } | sed -n 's/^\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1; }
# wait until checkpoint >= $2 exists in $1 while job $3 runs (60 s at most)
wait_ckpt() {
  local i
  for ((i = 0; i < 600; i++)); do
    local k; k=$(newest_ckpt "$1")
    [[ -n "$k" && $k -ge $2 ]] && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# every N.h5 left in $1 loads (nninfo reads it through ngt_nnet_load)
all_loadable() {
  local f bad=0
  for f in "$1"/[0-9]*.h5; do
    [[ -e "$f" ]] || continue
    "$B/nninfo" "$f" >/dev/null 2>&1 || { echo "    not loadable: $f"; bad=1; }
  done
  return $bad
}
resumes_identical() { # NAME DIR LOG: the rerun resumed and matches the reference
  local name=$1 dir=$2 log=$3
  if ! grep -q "resuming from checkpoint" "$log"; then fail "$name: the rerun did not resume"; tail -5 "$log"; return; fi
  if [[ -f "$dir/final.h5" ]] && same_params "$T/ref/final.h5" "$dir/final.h5"; then
    pass "$name: resumed ($(grep -o 'resuming from checkpoint [^ ]*' "$log" | sed 's|.*/||')) and ends identical to the uninterrupted run"
  else
    fail "$name: resumed run differs from the uninterrupted run"; tail -5 "$log"
  fi
}

# ---- the uninterrupted reference
train "$T/ref" >"$T/ref.log" 2>&1 && [[ -f "$T/ref/final.h5" ]] && pass "reference run" \
  || { fail "reference run"; tail -20 "$T/ref.log"; exit 1; }

# ---- 1. a worker killed with SIGKILL mid-iteration
train "$T/w" >"$T/w1.log" 2>&1 &
mp=$!
if wait_ckpt "$T/w" 3 $mp; then
  sleep "0.$((RANDOM % 4))"
  pid=$(rank_pid "$T/w" 1) && kill -9 "$pid" || true
fi
rc=0; wait $mp || rc=$?
if [[ $rc -ne 0 ]] && grep -qE "rank 1 .*(signal 9|Killed)|rank 1\b.*(died|dead|lost)" "$T/w1.log"; then
  pass "worker SIGKILL: job stops (mpirun exit $rc) naming rank 1: $(grep -oE 'process rank 1 [^(]*\([^)]*\)' "$T/w1.log" | head -1)"
else
  fail "worker SIGKILL: mpirun exit $rc, no message naming rank 1"; tail -15 "$T/w1.log"
fi
all_loadable "$T/w" && pass "worker SIGKILL: every checkpoint left is loadable" || fail "worker SIGKILL: unloadable checkpoint"
train "$T/w" >"$T/w2.log" 2>&1 || fail "worker SIGKILL: rerun failed"
resumes_identical "worker SIGKILL" "$T/w" "$T/w2.log"

# ---- 2. the coordinator killed while writing a checkpoint (or at a random moment)
during=0 kills=0 tmps=0
for round in 1 2 3 4 5; do
  train "$T/c" >"$T/c$round.log" 2>&1 &
  mp=$!
  wait_ckpt "$T/c" 0 $mp || { wait $mp || true; break; }
  start=$(newest_ckpt "$T/c")
  pid0=
  for ((i = 0; i < 200; i++)); do pid0=$(rank_pid "$T/c" 0) && break; sleep 0.05; done
  if ((round % 2)); then
    # poll for a temp file of this rank 0 (a checkpoint being written now: the writer
    # names it N.h5.tmp.<its pid>), then kill at once
    for ((i = 0; i < 5000 && ${#pid0} > 0; i++)); do
      set_n_tmp "$T/c" "$pid0"
      if ((n_tmp > 0)); then
        [[ -n "$pid0" ]] && kill -9 "$pid0" && during=$((during + 1))
        break
      fi
      kill -0 $mp 2>/dev/null || break
      sleep 0.002
    done
  else
    sleep "0.$((3 + RANDOM % 7))"
  fi
  [[ -n "$pid0" ]] && kill -9 "$pid0" 2>/dev/null || true   # it may have finished already
  rc=0; wait $mp || rc=$?
  [[ $rc -ne 0 ]] && kills=$((kills + 1))
  n=$(count_tmp "$T/c"); tmps=$n
  all_loadable "$T/c" || fail "coordinator SIGKILL round $round: a checkpoint is not loadable"
  if [[ $rc -ne 0 ]]; then
    echo "    round $round: killed rank 0 (exit $rc) after checkpoint $start; newest now $(newest_ckpt "$T/c"), $n temp file(s) left"
  else
    echo "    round $round: the run finished before the kill"
  fi
done
[[ $kills -ge 3 ]] && pass "coordinator SIGKILL: $kills kills ($during while a checkpoint temp file existed), all checkpoints loadable, $tmps temp file(s) left over" \
  || fail "coordinator SIGKILL: only $kills kills landed"
train "$T/c" >"$T/c-final.log" 2>&1 || { fail "coordinator SIGKILL: rerun failed"; tail -10 "$T/c-final.log"; }
resumes_identical "coordinator SIGKILL" "$T/c" "$T/c-final.log"
if ((tmps > 0)); then
  grep -q "removed $tmps temporary file" "$T/c-final.log" && (($(count_tmp "$T/c") == 0)) \
    && pass "coordinator SIGKILL: the rerun removed the $tmps leftover temp file(s)" \
    || fail "coordinator SIGKILL: leftover temp files not cleaned up"
else
  echo "    (no kill left a temp file behind this time: the rerun's clean-up was not exercised)"
fi

# ---- 3a. the disk full while writing a checkpoint: a tmpfs of 2.5 MB holds 0.h5 and three
# checkpoints (~0.6 MB each), so writing the fifth fails
mkdir -p "$T/full"
if mount -t tmpfs -o size=2500k tmpfs "$T/full" 2>/dev/null; then
  rc=0; train "$T/full/run" >"$T/full1.log" 2>&1 || rc=$?
  last=$(newest_ckpt "$T/full/run")
  # (HDF5's part of the message spans two lines)
  if [[ $rc -ne 0 ]] && grep -q "fatal.*writing checkpoint" "$T/full1.log" && grep -q "No space left on device" "$T/full1.log"; then
    pass "disk full: clear error: $(grep -o 'writing checkpoint [0-9]*: cannot write model [^:]*' "$T/full1.log" | head -1) ... No space left on device"
  else
    fail "disk full: exit $rc, no clear error"; tail -10 "$T/full1.log"
  fi
  all_loadable "$T/full/run" && [[ -n "$last" ]] && pass "disk full: previous checkpoint $last.h5 intact" \
    || fail "disk full: previous checkpoint damaged"
  (($(count_tmp "$T/full/run") > 0)) && fail "disk full: a temp file was left behind" \
    || pass "disk full: no temp file left behind"
  mount -o remount,size=64m "$T/full" || fail "disk full: cannot grow the tmpfs"   # the user frees space
  train "$T/full/run" >"$T/full2.log" 2>&1 || { fail "disk full: rerun failed"; tail -10 "$T/full2.log"; }
  resumes_identical "disk full" "$T/full/run" "$T/full2.log"
  umount "$T/full" || true
else
  echo "    (skipped the tmpfs case: mount needs root; the ulimit -f case below covers a failed write)"
fi

# ---- 3b. a file-size limit: checkpoints are ~0.6 MB, ulimit -f 500 (KB) makes the write
# fail with EFBIG (ngtrain ignores SIGXFSZ). Open MPI's shared-memory files would hit the
# limit too, so this run uses PMIx's hash store and the TCP transport.
train "$T/fsz" --stop-after=3 >"$T/fsz1.log" 2>&1 || fail "file-size limit: first part failed"
rc=0
(ulimit -f 500; export PMIX_MCA_gds=hash OMPI_MCA_btl=self,tcp; train "$T/fsz") >"$T/fsz2.log" 2>&1 || rc=$?
if [[ $rc -ne 0 ]] && grep -q "fatal.*writing checkpoint 4: " "$T/fsz2.log" && grep -q "File too large" "$T/fsz2.log"; then
  pass "file-size limit: clear error (writing checkpoint 4: ... File too large)"
else
  fail "file-size limit: exit $rc, no clear error"; tail -10 "$T/fsz2.log"
fi
[[ "$(newest_ckpt "$T/fsz")" == 3 ]] && all_loadable "$T/fsz" && pass "file-size limit: checkpoint 3.h5 intact" \
  || fail "file-size limit: checkpoints damaged"
train "$T/fsz" >"$T/fsz3.log" 2>&1 || fail "file-size limit: rerun failed"
resumes_identical "file-size limit" "$T/fsz" "$T/fsz3.log"

# ---- 4. a shard truncated mid-run (rank 2 = worker 1 reads train-0002 and train-0004)
mkdir -p "$T/sh"
cp "$S"/data/train-*.h5 "$T/sh/"
train "$T/shr" --train="$T/sh/train-*.h5" >"$T/sh1.log" 2>&1 &
mp=$!
if wait_ckpt "$T/shr" 2 $mp; then
  sz=$(stat -c %s "$T/sh/train-0002.h5")
  truncate -s $((sz / 2)) "$T/sh/train-0002.h5"
fi
rc=0; wait $mp || rc=$?
if [[ $rc -ne 0 ]] && grep -q "fatal.*train-0002.h5" "$T/sh1.log"; then
  pass "truncated shard: clear error: $(grep -o "fatal.*train-0002.h5'[^(]*" "$T/sh1.log" | head -1 | sed "s|$T/sh/||")"
else
  fail "truncated shard: exit $rc, no error naming train-0002.h5"; tail -10 "$T/sh1.log"
fi
all_loadable "$T/shr" && pass "truncated shard: every checkpoint left is loadable" || fail "truncated shard: unloadable checkpoint"
cp "$S/data/train-0002.h5" "$T/sh/"   # the user restores the shard, then reruns
train "$T/shr" --train="$T/sh/train-*.h5" >"$T/sh2.log" 2>&1 || { fail "truncated shard: rerun failed"; tail -10 "$T/sh2.log"; }
resumes_identical "truncated shard" "$T/shr" "$T/sh2.log"

finish
