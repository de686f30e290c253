#!/usr/bin/env bash
# End to end: one process (no mpirun) and mpirun -np 3 train the example data to a frame
# accuracy far above the majority-class baseline; the tools read the result.
source "$(dirname "$0")/lib.sh" "$1"

"$B/ngtrain" "${SMALL[@]}" --dir="$T/np1" --num-epochs=3 >"$T/np1.log" 2>&1 || { cat "$T/np1.log"; exit 1; }
out=$("$B/nneval" "$T/np1/final.h5" "$S/data/dev.h5")
echo "$out"
acc=$(sed -n 's/.*frame accuracy \([0-9.]*\)%.*/\1/p' <<<"$out")
base=$(sed -n 's/.*majority-class baseline \([0-9.]*\)%.*/\1/p' <<<"$out")
if awk -v a="$acc" -v b="$base" 'BEGIN{exit !(a > b + 25)}'; then pass "np 1: accuracy $acc% vs majority $base%"
else fail "np 1: accuracy $acc% not far above majority $base%"; fi
[[ -s "$T/np1/metrics.jsonl" ]] && pass "metrics.jsonl written" || fail "no metrics.jsonl"
grep -q '"valid_accuracy"' "$T/np1/metrics.jsonl" && pass "metrics carry validation accuracy" || fail "metrics lack valid_accuracy"

mpirun -np 3 "$B/ngtrain" "${SMALL[@]}" --dir="$T/np3" --num-epochs=3 >"$T/np3.log" 2>&1 || { cat "$T/np3.log"; exit 1; }
out=$("$B/nneval" "$T/np3/final.h5" "$S/data/dev.h5")
echo "$out"
acc3=$(sed -n 's/.*frame accuracy \([0-9.]*\)%.*/\1/p' <<<"$out")
if awk -v a="$acc3" -v b="$base" 'BEGIN{exit !(a > b + 25)}'; then pass "np 3: accuracy $acc3%"
else fail "np 3: accuracy $acc3% not far above majority $base%"; fi
grep -q "iter" "$T/np3.log" && pass "per-iteration log lines" || fail "no iteration lines in the log"
"$B/nninfo" "$T/np3/final.h5" >"$T/info.txt" && grep -qi "priors" "$T/info.txt" && pass "nninfo reads final.h5" || fail "nninfo"
finish
