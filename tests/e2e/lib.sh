# tests/e2e/lib.sh — shared helpers for the end-to-end tests. Usage: source it with the
# build dir as $1.
set -euo pipefail
B=$(cd "$1" && pwd)
S=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$S/tools/env.sh"
T=$(mktemp -d /tmp/ngt-e2e.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }
# the small, fast training settings every e2e run uses
SMALL=(--config="$S/data/nnet-small.cfg" --train="$S/data/train-*.h5" --valid="$S/data/dev.h5"
       --samples-per-iter=8000 --minibatch-size=128 --initial-effective-lrate=0.002
       --final-effective-lrate=0.0005 --combine-frames=3000 --prior-subset-size=3000
       --lda-frames=20000 --progress=0)
# expect_fail NAME PATTERN CMD...: CMD must exit non-zero and print PATTERN exactly once
expect_fail() {
  local name=$1 pat=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  local n
  n=$(grep -c -- "$pat" <<<"$out" || true)
  if [[ $rc -ne 0 && $n -eq 1 ]]; then pass "$name"; else
    fail "$name (exit $rc, pattern '$pat' seen $n times)"; echo "$out" | head -20 | sed 's/^/    /'; fi
}
same_params() { h5diff -q "$1" "$2" /components /components >/dev/null 2>&1; }
finish() { echo "$((${#}>0 ? $1 : 0)) passed, $fails failed" >/dev/null; [[ $fails -eq 0 ]]; }
