# shellcheck shell=bash
# tests/e2e/lib.sh — shared helpers for the end-to-end tests. Usage: source it with the
# build dir as $1. B, S, T and SMALL are for the scripts that source it.
# shellcheck disable=SC2034
set -euo pipefail
B=$(cd "$1" && pwd)
S=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$S/tools/env.sh"
T=$(mktemp -d /tmp/ngt-e2e.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0
pass() { echo "ok   - $*"; passes=$((passes + 1)); }
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
# run_ok NAME LOG CMD...: CMD must exit 0; its output goes to LOG. If it does not, that is
# a failure of NAME, shown with the end of LOG.
run_ok() {
  local name=$1 log=$2 rc=0; shift 2
  "$@" >"$log" 2>&1 || rc=$?
  ((rc == 0)) && return 0
  fail "$name: exit $rc"; tail -20 "$log" | sed 's/^/    /'
  return 1
}
# has_file NAME FILE: FILE exists, or that is a failure of NAME
has_file() { [[ -f $2 ]] || { fail "$1: no ${2##*/} written"; return 1; }; }
same_params() { h5diff -q "$1" "$2" /components /components >/dev/null 2>&1; }
# ckpts DIR: the iterations N of the checkpoints N.h5 in DIR, ascending, on one line
ckpts() {
  find "$1" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9]+\.h5' -printf '%f\n' \
    | sed 's/\.h5$//' | sort -n | paste -sd ' ' -
}
# finish: the last command of every e2e script; its exit status is the test's
finish() { echo "$passes passed, $fails failed"; ((fails == 0)); }
