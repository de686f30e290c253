#!/usr/bin/env bash
# Data coverage (docs/design.md §3.6). Shared placement (default): Kaldi's round-robin over archives of
# the whole corpus reads every frame --num-epochs times whatever the shard sizes, the worker
# count and the job ramp; fewer shards than workers train; one job under mpirun -np 2
# equals one process bit for bit. Local placement: shards no job reads are refused (named,
# once), uneven coverage is warned about at start-up.
source "$(dirname "$0")/lib.sh" "$1"

# three shards of 1:2:3 utterances (same generator as data/, other utterances)
for k in 1 2 3; do
  "$B/mkdata" --seed=1 --part=$((k + 4)) --num-utts=$((50 * k)) --out="$T/u-$k.h5" >/dev/null
done
U=(--train="$T/u-*.h5" --samples-per-iter=4000)

# 3 workers, ramp 1 -> 3, 5 epochs
mpirun -np 4 "$B/ngtrain" "${SMALL[@]}" "${U[@]}" --num-epochs=5 --num-jobs-initial=1 --dir="$T/c" >"$T/c.log" 2>&1 \
  && [[ -f "$T/c/final.h5" ]] && pass "1:2:3 shards, 3 workers, ramp 1->3, 5 epochs: trains" || { fail "coverage run"; tail -20 "$T/c.log"; }
grep -q "data: shared placement" "$T/c.log" && pass "start line says how the data is assigned" || fail "no data-assignment line"
line=$(grep "data coverage: passes over the data per shard" "$T/c.log" || true)
echo "    ${line#*INFO }"
read -r mn md mx < <(sed -n 's/.*min \([0-9.]*\), median \([0-9.]*\), max \([0-9.]*\).*/\1 \2 \3/p' <<<"$line")
# every frame 5 times, but for the frames of at most one archive (Kaldi's schedule hands
# out 5 A reads, give or take one): per shard between 5 - (one archive / shard) and 5
if [[ -n "$mn" ]] && awk -v a="$mn" -v b="$md" -v c="$mx" 'BEGIN{exit !(a >= 4.0 && b >= 4.5 && c <= 5.0001)}'; then
  pass "passes per shard: min $mn, median $md, max $mx"
else fail "passes per shard: '$line'"; fi
# metrics.jsonl: job j of iteration i read archive (p_i + j) mod A
if python3 - "$T/c/metrics.jsonl" "$T/c.log" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
A = int(re.search(r"cut into A = (\d+) archives", open(sys.argv[2]).read()).group(1))
p = 0
for r in rows:
    assert r["archives"] == [(p + j) % A for j in range(r["jobs"])], (r["iter"], r["archives"])
    assert r["archive_epochs"] == [(p + j) // A for j in range(r["jobs"])]
    p += r["jobs"]
assert abs(p - 5 * A) <= 1, (p, A)
print(f"    {len(rows)} iterations, {p} archive reads of A = {A} archives")
PY
then pass "metrics record the archive of every job: Kaldi's (p_i + j) mod A"; else fail "metrics archives"; fi
ck=$(ckpts "$T/c" | cut -d' ' -f1)
"$B/nninfo" "$T/c/$ck.h5" | grep -q "archive sequence" && pass "nninfo shows the position in the archive sequence" \
  || fail "nninfo archive sequence"

# fewer shards than workers
mpirun -np 4 "$B/ngtrain" "${SMALL[@]}" --train="$T/u-1.h5" --samples-per-iter=2000 --num-epochs=2 --dir="$T/f" >"$T/f.log" 2>&1 \
  && [[ -f "$T/f/final.h5" ]] && pass "1 shard, 3 workers: trains ($(grep -o 'min [0-9.]*, median [0-9.]*, max [0-9.]*' "$T/f.log"))" \
  || { fail "1 shard, 3 workers"; tail -20 "$T/f.log"; }

# one job under mpirun -np 2 == one process
"$B/ngtrain" "${SMALL[@]}" --num-epochs=1 --dir="$T/n1" >"$T/n1.log" 2>&1
mpirun -np 2 "$B/ngtrain" "${SMALL[@]}" --num-epochs=1 --dir="$T/n2" >"$T/n2.log" 2>&1
same_params "$T/n1/final.h5" "$T/n2/final.h5" && pass "mpirun -np 2 (one job) == one process, bit for bit" \
  || fail "np 2 differs from np 1"

# local placement: unread shards refused, uneven coverage warned about
expect_fail "local: shards no job reads are refused, named" "u-3.h5" \
  mpirun -np 4 "$B/ngtrain" "${SMALL[@]}" "${U[@]}" --data-placement=local --num-jobs-final=2 --dir="$T/l1"
out=$(mpirun -np 4 "$B/ngtrain" "${SMALL[@]}" "${U[@]}" --data-placement=local --num-epochs=5 --stop-after=1 --dir="$T/l2" 2>&1 || true)
n=$(grep -c "reads the data unevenly" <<<"$out" || true)
[[ $n -eq 1 ]] && pass "local: uneven coverage warned once: $(grep -o 'expected passes[^(]*' <<<"$out" | head -1)" \
  || { fail "local: no (single) uneven-coverage warning ($n)"; echo "$out" | tail -5; }
[[ $fails -eq 0 ]]
