#!/usr/bin/env bash
# Bad input to ngtrain: a clear error naming the file/value, printed once, every rank stopped.
source "$(dirname "$0")/lib.sh" "$1"
E=(--num-epochs=1)

expect_fail "unknown option" "unknown option --num-epoch" "$B/ngtrain" --num-epoch=3
expect_fail "malformed value" "'many' is not an integer" "$B/ngtrain" --minibatch-size=many
expect_fail "missing --config" "--config is required" "$B/ngtrain" --train=x --dir="$T/x"
expect_fail "no shards match" "x-nothing-\*.h5" "$B/ngtrain" "${SMALL[@]}" --train="$T/x-nothing-*.h5" --dir="$T/x"
printf 'input dim=13 context=-3..3\nlayer type=rleu dim=64\noutput dim=48\n' >"$T/bad.cfg"
expect_fail "bad config names line" "bad.cfg:2" "$B/ngtrain" "${SMALL[@]}" --config="$T/bad.cfg" --dir="$T/x"
printf 'input dim=20 context=-3..3\nlayer type=relu dim=64\noutput dim=48\n' >"$T/dim.cfg"
expect_fail "feat_dim disagrees with config" "feat_dim=13" "$B/ngtrain" "${SMALL[@]}" --config="$T/dim.cfg" --dir="$T/x"
printf 'input dim=13 context=-3..3\nlayer type=relu dim=64\noutput dim=40\n' >"$T/cls.cfg"
expect_fail "num_classes disagrees with config" "num_classes=48" "$B/ngtrain" "${SMALL[@]}" --config="$T/cls.cfg" --dir="$T/x"
expect_fail "more workers than shards" "matches 4 shard(s) but there are 5 workers" \
  mpirun -np 6 "$B/ngtrain" "${SMALL[@]}" --data-placement=local --dir="$T/x"
expect_fail "num-jobs-final above workers" "--num-jobs-final=3 is more than the 2 worker" \
  mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" --num-jobs-final=3 --dir="$T/x"
printf 'input dim=13 context=-3..3\nlayer type=relu dim=64 rank-in=200\noutput dim=48\n' >"$T/rank.cfg"
expect_fail "rank-in >= dim" "rank" "$B/ngtrain" "${SMALL[@]}" --config="$T/rank.cfg" --dir="$T/x"
expect_fail "bad input transform" "--input-transform=pca" "$B/ngtrain" "${SMALL[@]}" --input-transform=pca --dir="$T/x"

# a --dir holding another run's checkpoints
run_ok "dir of another run: the first run" "$T/other.log" \
    "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/other" --seed=1 --stop-after=1 \
  && expect_fail "dir of another run" "holds checkpoints of another run: --seed differs" \
       "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/other" --seed=2

# a corrupt last checkpoint: fall back to the one before, say so, and finish
if run_ok "corrupt checkpoint: the first run" "$T/corrupt1.log" \
     "$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/corrupt" --stop-after=2; then
  last=$(ckpts "$T/corrupt" | tr ' ' '\n' | tail -1).h5
  head -c 2000 "$T/corrupt/$last" >"$T/corrupt/$last.cut" && mv "$T/corrupt/$last.cut" "$T/corrupt/$last"
  out=$("$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/corrupt" 2>&1) && [[ -f "$T/corrupt/final.h5" ]] \
    && grep -q "unusable.*falling back" <<<"$out" && pass "corrupt checkpoint ($last): falls back and finishes" \
    || { fail "corrupt checkpoint ($last)"; echo "$out" | tail -5; }
fi

# a bad shard among the training shards
cp "$S"/data/train-*.h5 "$T/" && printf 'not hdf5' >"$T/train-9999.h5"
expect_fail "corrupt shard named" "train-9999.h5" "$B/ngtrain" "${SMALL[@]}" --train="$T/train-*.h5" --dir="$T/y"
# divergence: every job diverges, the iteration is retried at half the rate, then a clear stop
printf 'input dim=13 context=-3..3\nlayer type=relu dim=64 max-change=0\noutput dim=48 max-change=0\n' >"$T/div.cfg"
expect_fail "divergence: retried, then a clear stop" "diverged in every job 4 times" \
  mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" --config="$T/div.cfg" --dir="$T/div" --num-epochs=1 \
  --initial-effective-lrate=1e30 --final-effective-lrate=1e29 --max-param-change=0 \
  --input-transform=none --use-natural-gradient=false
rc=0
out=$(mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" --config="$T/div.cfg" --dir="$T/div2" --num-epochs=1 \
      --initial-effective-lrate=1e30 --final-effective-lrate=1e29 --max-param-change=0 \
      --input-transform=none --use-natural-gradient=false 2>&1) || rc=$?
n=$(grep -c "retrying with the learning rate halved" <<<"$out" || true)
[[ $rc -ne 0 && $n -eq 3 ]] && pass "divergence: three retries at halved rates, then a stop" \
  || fail "divergence retries: exit $rc, $n retries (want nonzero, 3)"
finish
