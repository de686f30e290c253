#!/usr/bin/env bash
# The tools on real models: avgmodel (Kaldi nnet3-average semantics), nninfo, plotcurves.
source "$(dirname "$0")/lib.sh" "$1"
"$B/ngtrain" "${SMALL[@]}" --num-epochs=1 --dir="$T/a" --seed=1 --keep-models=100 >"$T/a.log" 2>&1 || { cat "$T/a.log"; exit 1; }
A="$T/a/2.h5"; Bm="$T/a/4.h5"

"$B/avgmodel" "$A" "$A" "$A" "$T/aaa.h5" >/dev/null
same_params "$A" "$T/aaa.h5" && pass "avgmodel of 3 copies is the model" || fail "avgmodel of copies differs"
"$B/avgmodel" "$A" "$Bm" "$T/ab.h5" >/dev/null
"$B/avgmodel" "$A" "$A" "$Bm" "$Bm" "$T/aabb.h5" >/dev/null
h5diff -q -d 1e-7 "$T/ab.h5" "$T/aabb.h5" /components /components && ! same_params "$T/ab.h5" "$A" \
  && pass "avgmodel of two models is their mean" || fail "avgmodel of two models"
"$B/avgmodel" --weights=1:0 "$A" "$Bm" "$T/w10.h5" >/dev/null
same_params "$A" "$T/w10.h5" && pass "--weights=1:0 gives the first model" || fail "--weights=1:0"
out=$("$B/avgmodel" --weights=2:2 "$A" "$Bm" "$T/w22.h5" 2>&1)
grep -q "renormalising" <<<"$out" && same_params "$T/w22.h5" "$T/ab.h5" \
  && pass "--weights=2:2 warns and renormalises" || fail "--weights renormalisation"
expect_fail "avgmodel: weight count" "2 input model" "$B/avgmodel" --weights=1:2:3 "$A" "$Bm" "$T/x.h5"
printf 'input dim=13 context=-3..3\nlayer type=relu dim=64\noutput dim=48\n' >"$T/other.cfg"
run_ok "train another structure" "$T/o.log" "$B/ngtrain" "${SMALL[@]}" --config="$T/other.cfg" --num-epochs=1 --dir="$T/o" \
  && expect_fail "avgmodel: different structures refused" "different structures" "$B/avgmodel" "$A" "$T/o/final.h5" "$T/x.h5"
run_ok "train with CMVN" "$T/c.log" "$B/ngtrain" "${SMALL[@]}" --num-epochs=1 --dir="$T/c" --input-transform=cmvn \
  && expect_fail "avgmodel: LDA vs CMVN refused" "input transform type differs" "$B/avgmodel" "$T/a/final.h5" "$T/c/final.h5" "$T/x.h5"
run_ok "train with another LDA" "$T/l.log" "$B/ngtrain" "${SMALL[@]}" --num-epochs=1 --dir="$T/l" --lda-frames=5000 \
  && expect_fail "avgmodel: two different LDA transforms refused" "different input transforms" "$B/avgmodel" "$T/a/final.h5" "$T/l/final.h5" "$T/x.h5"
[[ ! -e "$T/x.h5" ]] && pass "no output written on refusal" || fail "output written on refusal"

"$B/nninfo" "$A" >"$T/info" && grep -q "positions" "$T/info" && grep -q "ngstate" "$T/info" \
  && pass "nninfo lists a checkpoint's train state" || fail "nninfo checkpoint"
"$B/nninfo" "$S/data/nnet-small.cfg" | grep -q "20\*" && pass "nninfo shows resolved NG defaults" || fail "nninfo NG defaults"
"$B/plotcurves" "$T/a" >/dev/null && grep -q "<polyline" "$T/a/curves.svg" && pass "plotcurves draws an SVG" || fail "plotcurves"
expect_fail "plotcurves: not a run dir" "metrics.jsonl" "$B/plotcurves" "$T/nowhere"
nohelp=()
for t in ngtrain nninfo nneval avgmodel nnforward mkshards mkdata plotcurves idx2shards; do
  "$B/$t" --help >"$T/h" 2>&1 && grep -qi "e\.g\.\|example" "$T/h" || nohelp+=("$t")
done
((${#nohelp[@]} == 0)) && pass "every program has --help (exit 0) with an example" \
  || fail "--help fails or lacks an example: ${nohelp[*]}"
# one front door: a bad option or a missing file is "PROG: error: ..." naming it, exit status 1
N=/nonexistent-ngt f0=$fails
declare -A bad=([ngtrain]="--config=$N.cfg --train=$N.h5 --dir=$T/z" [nninfo]="$N.h5"
  [nneval]="$N.h5 $N-2.h5" [avgmodel]="$N.h5 $N-2.h5 $T/z.h5" [nnforward]="$N.h5 $N-2.h5 $T/z.h5"
  [mkshards]="--feats=$N.ark --ali=$N.txt --out=$T/z" [mkdata]="--num-utts=1 --out=$N/z.h5"
  [plotcurves]="$N" [idx2shards]="--images=$N --labels=$N --out=$T/z")
for t in "${!bad[@]}"; do
  rc=0; "$B/$t" --no-such-option >/dev/null 2>"$T/e" || rc=$?
  [[ $rc -eq 1 ]] && grep -q "^$t: error: unknown option --no-such-option" "$T/e" \
    || { fail "$t: bad option (exit $rc)"; cat "$T/e"; }
  rc=0
  # shellcheck disable=SC2086  # the arguments are split on purpose
  "$B/$t" ${bad[$t]} >/dev/null 2>"$T/e" || rc=$?
  [[ $rc -eq 1 && $(grep -c "^$t: error: .*$N" "$T/e") -eq 1 ]] && { [[ $t == ngtrain ]] || ! grep -q "^ngtrain" "$T/e"; } \
    || { fail "$t: missing input (exit $rc)"; cat "$T/e"; }
done
[[ $fails -eq $f0 ]] && pass "every program: a bad option or a missing file is one 'PROG: error: ...' line, exit status 1"
finish
