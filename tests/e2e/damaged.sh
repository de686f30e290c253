#!/usr/bin/env bash
# A damaged checkpoint is never trained on: 64 bytes flipped in the middle
# of the newest checkpoint of a stopped run; the resumed run says so naming the file, falls
# back to the checkpoint before, and ends with the final model an undamaged run gives, bit
# for bit (resuming is exact). The tools refuse a damaged final model, naming it.
source "$(dirname "$0")/lib.sh" "$1"
E=(--num-epochs=2)

# flip64 FILE: xor 64 bytes at the middle of FILE with 0xff, in place
flip64() {
  python3 - "$1" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
m = len(b) // 2
for i in range(m, m + 64):
    b[i] ^= 0xff
open(p, 'wb').write(b)
EOF
}

"$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/ref" >"$T/ref.log" 2>&1 || { cat "$T/ref.log"; exit 1; }
"$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/dmg" --stop-after=5 >"$T/dmg1.log" 2>&1 \
  || { cat "$T/dmg1.log"; exit 1; }
last=$(ckpts "$T/dmg" | tr ' ' '\n' | tail -1).h5
prev=$(ckpts "$T/dmg" | tr ' ' '\n' | tail -2 | head -1).h5
[[ -n "$last" && "$last" != "$prev" ]] && pass "stopped run left checkpoints $prev and $last" \
  || fail "stopped run left no two checkpoints (have: $(ckpts "$T/dmg"))"
flip64 "$T/dmg/$last"
out=$("$B/ngtrain" "${SMALL[@]}" "${E[@]}" --dir="$T/dmg" 2>&1) || { fail "resume after damage exits non-zero"; echo "$out" | tail -5; }
grep -m1 "unusable" <<<"$out" | sed 's/^/    /'
grep -q "checkpoint '$T/dmg/$last' is unusable (.*damaged.*); falling back" <<<"$out" \
  && pass "damaged $last: warned naming the file, fell back" \
  || { fail "no fall-back warning naming $last"; echo "$out" | head -8 | sed 's/^/    /'; }
grep -q "resuming from checkpoint $T/dmg/${prev}" <<<"$out" \
  && pass "resumed from the checkpoint before ($prev)" \
  || { fail "did not resume from $prev"; echo "$out" | grep -i resum | sed 's/^/    /'; }
cmp -s "$T/dmg/final.h5" "$T/ref/final.h5" \
  && pass "final model bit-identical to the undamaged run's" \
  || fail "final model differs from the undamaged run's"

# the tools on a damaged final model: refuse, naming the file
cp "$T/ref/final.h5" "$T/bad.h5"
flip64 "$T/bad.h5"
expect_fail "nneval: damaged model named" "$T/bad.h5" "$B/nneval" "$T/bad.h5" "$S/data/dev.h5"
expect_fail "nnforward: damaged model named" "$T/bad.h5" "$B/nnforward" "$T/bad.h5" "$S/data/dev.h5" "$T/out.h5"
expect_fail "avgmodel: damaged model named" "$T/bad.h5" "$B/avgmodel" "$T/ref/final.h5" "$T/bad.h5" "$T/avg.h5"
expect_fail "nninfo: damaged model named" "$T/bad.h5" "$B/nninfo" "$T/bad.h5"
[[ ! -e "$T/out.h5" && ! -e "$T/avg.h5" ]] && pass "no output written from a damaged model" \
  || fail "an output was written from a damaged model"
[[ $fails -eq 0 ]]
