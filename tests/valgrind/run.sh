#!/usr/bin/env bash
# tests/valgrind/run.sh — a short multi-rank training under valgrind memcheck.
#   bash tests/valgrind/run.sh [BUILDDIR=build] [NP=3]
# Runs `mpirun -np NP valgrind ngtrain` on the example data twice: a fresh run stopped
# after 2 iterations (--stop-after), then the same command resuming from its checkpoint to
# the end (final combination, priors, final.h5), so the checkpoint read path is covered.
# Every rank's memcheck log (kept in the printed directory) must show zero errors: invalid
# reads/writes, uninitialised values, bad frees, and "definitely lost" leaks all count
# (--errors-for-leak-kinds=definite). Noise from Open MPI, PMIx, libevent, hwloc, HDF5 and
# OpenBLAS is suppressed with tests/valgrind/ngtrain.supp and Open MPI's own file; no
# suppression names a frame of ngtrain code. A build with debug info (meson
# -Dbuildtype=debugoptimized) gives file:line in the reports. Takes a few minutes.
set -uo pipefail
S=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=$(cd "${1:-$S/build}" && pwd)
NP=${2:-3}
source "$S/tools/env.sh"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 2; }
[[ -x "$B/ngtrain" ]] || { echo "no $B/ngtrain (build first)"; exit 2; }
L=$(mktemp -d /tmp/ngt-valgrind.XXXXXX)
# keep the MCA plugins mapped at exit so their frames have names in the reports
export OMPI_MCA_mca_base_component_disable_dlclose=1
export HDF5_USE_FILE_LOCKING=FALSE
SUPP=(--suppressions="$S/tests/valgrind/ngtrain.supp")
[[ -f /usr/share/openmpi/openmpi-valgrind.supp ]] && SUPP+=(--suppressions=/usr/share/openmpi/openmpi-valgrind.supp)
VG=(valgrind --tool=memcheck --error-exitcode=97 --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --track-origins=yes --num-callers=40 "${SUPP[@]}")
# small enough for valgrind (~30x slower): a third of an epoch, both workers active
ARGS=(--config="$S/data/nnet-small.cfg" --train="$S/data/train-*.h5" --valid="$S/data/dev.h5"
      --num-epochs=0.3 --samples-per-iter=3000 --minibatch-size=128 --num-jobs-initial=$((NP > 2 ? 2 : 1))
      --initial-effective-lrate=0.002 --final-effective-lrate=0.0005 --lda-frames=3000
      --valid-frames=1000 --combine-frames=1000 --prior-subset-size=1000 --keep-models=1
      --progress=0 --dir="$L/run")

status=0
phase() { # NAME EXTRA-ARGS...
  local name=$1; shift
  local t0=$SECONDS rc=0
  mpirun -np "$NP" "${VG[@]}" --log-file="$L/$name.rank%q{OMPI_COMM_WORLD_RANK}.log" \
    "$B/ngtrain" "${ARGS[@]}" "$@" >"$L/$name.out" 2>&1 || rc=$?
  local errs=0 f n
  for f in "$L/$name".rank*.log; do
    n=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
    [[ -n "$n" ]] || { echo "FAIL - $name: no ERROR SUMMARY in $f (did valgrind die?)"; n=1; }
    errs=$((errs + n))
  done
  if [[ $rc -eq 0 && $errs -eq 0 ]]; then
    echo "ok   - $name: $NP ranks under memcheck, 0 errors, no definite leak ($((SECONDS - t0)) s)"
  else
    status=1
    echo "FAIL - $name: mpirun exit $rc, $errs memcheck error(s); logs in $L"
    for f in "$L/$name".rank*.log; do
      grep -qE "ERROR SUMMARY: [1-9]" "$f" || continue
      echo "  --- $f"
      awk '/== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|Argument)|definitely lost in loss/{p=12}
           p>0{print; p--}' "$f" | sed 's/^==[0-9]*== /    /' | head -60
    done
    [[ $rc -ne 0 && $errs -eq 0 ]] && tail -20 "$L/$name.out"
  fi
}
phase fresh --stop-after=2
grep -q "stopped after iteration" "$L/fresh.out" || { echo "FAIL - fresh: did not stop as asked"; status=1; }
phase resume
grep -q "resuming from checkpoint" "$L/resume.out" && [[ -f "$L/run/final.h5" ]] \
  || { echo "FAIL - resume: did not resume and finish"; tail -5 "$L/resume.out"; status=1; }
echo "memcheck logs: $L"
exit $status
