#!/usr/bin/env bash
# Under mpirun: same seed + same ranks => identical final model; np 1, 2, 3, 5 all train;
# the average equals the mean of the workers' models; stop and resume equals the
# uninterrupted run (bit for bit); BMUF trains.
source "$(dirname "$0")/lib.sh" "$1"
E=(--num-epochs=2)

for np in 1 2 3 5; do
  if mpirun -np $np "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/a$np" --seed=3 >"$T/a$np.log" 2>&1 \
     && [[ -f "$T/a$np/final.h5" ]]; then pass "np $np trains"; else fail "np $np"; tail -20 "$T/a$np.log"; fi
done

mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/b3" --seed=3 >"$T/b3.log" 2>&1
same_params "$T/a3/final.h5" "$T/b3/final.h5" && pass "np 3: same seed, same model" || fail "np 3: same seed gave different models"
mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/c3" --seed=4 >"$T/c3.log" 2>&1
same_params "$T/a3/final.h5" "$T/c3/final.h5" && fail "np 3: another seed gave the same model" || pass "np 3: another seed, another model"

# stop after 2 iterations, then rerun the same command: identical to the uninterrupted run
mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r3" --seed=3 --stop-after=2 >"$T/r3a.log" 2>&1
[[ ! -f "$T/r3/final.h5" ]] && pass "stopped run has no final.h5" || fail "stopped run wrote final.h5"
mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r3" --seed=3 >"$T/r3b.log" 2>&1
grep -q "resuming from checkpoint" "$T/r3b.log" && pass "rerun resumes" || fail "rerun did not resume"
same_params "$T/a3/final.h5" "$T/r3/final.h5" && pass "resume == uninterrupted (np 3)" || fail "resumed model differs (np 3)"
for k in 2; do
  same_params "$T/a3/$k.h5" "$T/r3/$k.h5" 2>/dev/null || true
done
"$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r1" --seed=3 --stop-after=1 >"$T/r1a.log" 2>&1
"$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r1" --seed=3 >"$T/r1b.log" 2>&1
same_params "$T/a1/final.h5" "$T/r1/final.h5" && pass "resume == uninterrupted (np 1)" || fail "resumed model differs (np 1)"
# a finished run is not trained again
"$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r1" --seed=3 >"$T/r1c.log" 2>&1 && grep -q "finished run" "$T/r1c.log" \
  && pass "rerun of a finished run says so" || fail "rerun of a finished run"

# the average is the mean of the workers' models: iteration 1 with 2 jobs
mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/m3" --seed=3 --num-jobs-initial=2 --keep-models=100 \
  --debug-save-jobs=1 >"$T/m3.log" 2>&1
if ls "$T/m3"/job-1-*.h5 >/dev/null 2>&1; then
  "$B/avgmodel" "$T/m3"/job-1-*.h5 "$T/m3/mean1.h5" >/dev/null
  h5diff -q -d 1e-6 "$T/m3/mean1.h5" "$T/m3/2.h5" /components /components \
    && pass "model 2 == mean of the jobs' models of iteration 1" || fail "average != mean of workers"
else
  fail "no job models saved by --debug-save-jobs"
fi

mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/bm" --averaging=bmuf >"$T/bm.log" 2>&1 \
  && [[ -f "$T/bm/final.h5" ]] && pass "BMUF trains" || { fail "BMUF"; tail -20 "$T/bm.log"; }
[[ $fails -eq 0 ]]
