#!/usr/bin/env bash
# Under mpirun: same seed + same ranks => identical final model; np 1, 2, 3, 5 all train;
# the average equals the mean of the workers' models; stop and resume equals the
# uninterrupted run (bit for bit, every checkpoint kept as well as final.h5); BMUF trains;
# --optimizer=adam and --momentum train, and their stop + resume is bit for bit too; so is
# a run with --num-threads=2.
# Every run's exit status is checked (run_ok), and a check whose run failed counts as failed.
source "$(dirname "$0")/lib.sh" "$1"
E=(--num-epochs=2)

for np in 1 2 3 5; do
  run_ok "np $np trains" "$T/a$np.log" mpirun -np $np "$B/ngtrain" "${SMALL[@]}" "${E[@]}" \
      --dir="$T/a$np" --seed=3 \
    && has_file "np $np trains" "$T/a$np/final.h5" && pass "np $np trains"
done

run_ok "np 3: second run, seed 3" "$T/b3.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/b3" --seed=3 \
  && { same_params "$T/a3/final.h5" "$T/b3/final.h5" && pass "np 3: same seed, same model" \
         || fail "np 3: same seed gave different models"; }
run_ok "np 3: seed 4" "$T/c3.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/c3" --seed=4 \
  && has_file "np 3: seed 4" "$T/c3/final.h5" && has_file "np 3: seed 3" "$T/a3/final.h5" \
  && { same_params "$T/a3/final.h5" "$T/c3/final.h5" && fail "np 3: another seed gave the same model" \
         || pass "np 3: another seed, another model"; }

# stop after 2 iterations, then rerun the same command: identical to the uninterrupted run
run_ok "np 3: --stop-after=2" "$T/r3a.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r3" --seed=3 --stop-after=2 \
  && { grep -q "stopped after iteration 2" "$T/r3a.log" && [[ -f "$T/r3/2.h5" && ! -f "$T/r3/final.h5" ]] \
         && pass "stopped run stops after checkpoint 2.h5, no final.h5" \
         || fail "--stop-after=2: no 'stopped after iteration 2', no 2.h5 or a final.h5"; }
run_ok "np 3: rerun after --stop-after" "$T/r3b.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r3" --seed=3 \
  && { grep -q "resuming from checkpoint" "$T/r3b.log" && pass "rerun resumes" || fail "rerun did not resume"; }
same_params "$T/a3/final.h5" "$T/r3/final.h5" && pass "resume == uninterrupted (np 3)" || fail "resumed model differs (np 3)"
# every checkpoint the two runs kept (the same iterations: the same keep policy) is identical
ck_a=$(ckpts "$T/a3") ck_r=$(ckpts "$T/r3") ndiff=0
for k in $ck_r; do same_params "$T/a3/$k.h5" "$T/r3/$k.h5" || { ndiff=$((ndiff + 1)); echo "    $k.h5 differs"; }; done
if [[ -n "$ck_r" && "$ck_a" == "$ck_r" && $ndiff -eq 0 ]]; then
  pass "resumed run keeps the same checkpoints as the uninterrupted one, each identical ($ck_r)"
else
  fail "checkpoints after resume: kept {$ck_r} vs {$ck_a} uninterrupted, $ndiff differ"
fi
run_ok "np 1: --stop-after=1" "$T/r1a.log" "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r1" --seed=3 --stop-after=1 \
  && run_ok "np 1: rerun after --stop-after" "$T/r1b.log" "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r1" --seed=3 \
  && { grep -q "resuming from checkpoint .*/1\.h5" "$T/r1b.log" && same_params "$T/a1/final.h5" "$T/r1/final.h5" \
         && pass "resume == uninterrupted (np 1)" || fail "np 1: did not resume from checkpoint 1, or the model differs"; }
# a finished run is not trained again
run_ok "rerun of a finished run" "$T/r1c.log" "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/r1" --seed=3 \
  && { grep -q "finished run" "$T/r1c.log" && pass "rerun of a finished run says so" || fail "rerun of a finished run: no 'finished run'"; }

# --num-threads=2 (one OpenMP pool per rank: split GEMMs, the optimiser's layers one per
# thread): the same seed gives the same model, and stop + resume equals the uninterrupted run
TH=(--num-threads=2)
run_ok "np 2, --num-threads=2" "$T/t2a.log" mpirun -np 2 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" "${TH[@]}" \
    --dir="$T/t2a" --seed=3 \
  && run_ok "np 2, --num-threads=2, --stop-after=1" "$T/t2b.log" mpirun -np 2 "$B/ngtrain" "${SMALL[@]}" \
    "${E[@]}" "${TH[@]}" --dir="$T/t2b" --seed=3 --stop-after=1 \
  && run_ok "np 2, --num-threads=2, rerun" "$T/t2c.log" mpirun -np 2 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" \
    "${TH[@]}" --dir="$T/t2b" --seed=3 \
  && { grep -q "2 thread(s)" "$T/t2a.log" && grep -q "resuming from checkpoint" "$T/t2c.log" \
         && same_params "$T/t2a/final.h5" "$T/t2b/final.h5" \
         && pass "--num-threads=2: resume == uninterrupted" \
         || fail "--num-threads=2: no '2 thread(s)' in the log, no resume, or the models differ"; }

# the average is the mean of the workers' models: iteration 1 with 2 jobs
if run_ok "np 3: --debug-save-jobs" "$T/m3.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/m3" --seed=3 \
     --num-jobs-initial=2 --keep-models=100 --debug-save-jobs=1; then
  jobs1=("$T/m3"/job-1-*.h5)
  if [[ ${#jobs1[@]} -ge 2 && -f "${jobs1[0]}" ]]; then
    run_ok "avgmodel of the jobs' models" "$T/mean1.log" "$B/avgmodel" "${jobs1[@]}" "$T/m3/mean1.h5" \
      && { h5diff -q -d 1e-6 "$T/m3/mean1.h5" "$T/m3/2.h5" /components /components \
             && pass "model 2 == mean of the jobs' models of iteration 1" || fail "average != mean of workers"; }
  else
    fail "--debug-save-jobs saved ${#jobs1[@]} job model(s) of iteration 1, not 2 or more"
  fi
fi

# Adam and momentum: their per-worker state travels in the checkpoints, so stop + resume
# is bit for bit; Adam trains far above the majority-class baseline.
ADAM=(--optimizer=adam --use-natural-gradient=false --initial-effective-lrate=0.0005
      --final-effective-lrate=0.0002)
for v in adam mom; do
  if [[ $v == adam ]]; then X=("${ADAM[@]}"); else X=(--momentum=0.8); fi
  run_ok "$v trains" "$T/$v.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" "${X[@]}" \
      --dir="$T/$v" --seed=3 && has_file "$v trains" "$T/$v/final.h5" \
    && run_ok "$v: --stop-after=2" "$T/${v}r1.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" \
      "${X[@]}" --dir="$T/${v}r" --seed=3 --stop-after=2 \
    && run_ok "$v: rerun" "$T/${v}r2.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" \
      "${X[@]}" --dir="$T/${v}r" --seed=3 \
    && { grep -q "resuming from checkpoint" "$T/${v}r2.log" && same_params "$T/$v/final.h5" "$T/${v}r/final.h5" \
           && pass "$v: resume == uninterrupted (np 3)" || fail "$v: did not resume, or the resumed model differs"; }
done
if [[ -f "$T/adam/final.h5" ]]; then
  out=$("$B/nneval" "$T/adam/final.h5" "$S/data/dev.h5")
  acc=$(sed -n 's/.*frame accuracy \([0-9.]*\)%.*/\1/p' <<<"$out")
  base=$(sed -n 's/.*majority-class baseline \([0-9.]*\)%.*/\1/p' <<<"$out")
  if awk -v a="$acc" -v b="$base" 'BEGIN{exit !(a > b + 25)}'; then pass "adam: accuracy $acc% vs majority $base%"
  else fail "adam: accuracy $acc% not far above majority $base%"; fi
  same_params "$T/a3/final.h5" "$T/adam/final.h5" && fail "adam gave the SGD model" || pass "adam: another model than NG-SGD"
fi
expect_fail "adam with NG is refused" "does not combine with natural gradient" \
  "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --optimizer=adam --dir="$T/adamng"
# a stopped Adam run is not resumed by SGD (the signature names --optimizer)
run_ok "adam: --stop-after=1" "$T/adamx.log" "$B/ngtrain" "${SMALL[@]}" "${E[@]}" "${ADAM[@]}" \
    --dir="$T/adamx" --stop-after=1 \
  && expect_fail "a --dir of another optimizer is refused" "--optimizer differs" \
    "$B/ngtrain" "${SMALL[@]}" "${E[@]}" "${ADAM[@]/--optimizer=adam/--optimizer=sgd}" --dir="$T/adamx"

run_ok "BMUF trains" "$T/bm.log" mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/bm" --averaging=bmuf \
  && has_file "BMUF trains" "$T/bm/final.h5" && pass "BMUF trains"
finish
