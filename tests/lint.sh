#!/usr/bin/env bash
# tests/lint.sh SRCDIR — the lint suite (`meson test --suite lint`):
#   (a) clang-format (SRCDIR/.clang-format) leaves every C source and header in src,
#       include, tools and tests unchanged (the fuzzing corpus and regression inputs are
#       data, not sources);
#   (b) shellcheck (SRCDIR/.shellcheckrc) finds nothing in any shell script: every *.sh in
#       the tree, and .ci/run.
# Each finding is printed; the exit status is 1 if there is any (or a tool is missing: the
# check is not skipped, `bash tools/setup.sh` installs both). Fix formatting with
#   clang-format -i FILE...
set -euo pipefail
S=$(cd "${1:?usage: lint.sh SRCDIR}" && pwd)
cd "$S"
for tool in clang-format shellcheck; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint: $tool is not installed (bash tools/setup.sh installs it)"
    exit 1
  fi
done
[[ -f .clang-format ]] || { echo "lint: no .clang-format in $S"; exit 1; }

# everything in the tree but version control, build directories and test data
prune=(\( -path ./.git -o -path './build*' -o -path ./exp -o -path ./subprojects
       -o -path ./tests/fuzz/corpus -o -path ./tests/fuzz/regress \) -prune -o)

bad=0
# (a) clang-format: the dry run prints one warning per line it would change
mapfile -t csrc < <(find . "${prune[@]}" -type f \( -name '*.c' -o -name '*.h' \) -print \
                    | sed 's|^\./||' | grep -E '^(src|include|tools|tests)/' | sort)
nfmt=0 nlines=0
for f in "${csrc[@]}"; do
  out=$(clang-format --style=file --dry-run --Werror "$f" 2>&1) && continue
  n=$(grep -c 'clang-format-violations' <<<"$out" || true)
  echo "lint: $f: clang-format would change it at $n place(s); first:"
  grep -A2 -m2 'clang-format-violations' <<<"$out" | sed 's/^/    /'
  nfmt=$((nfmt + 1)) nlines=$((nlines + n))
done
echo "lint: clang-format: ${#csrc[@]} C files, $nfmt not formatted ($nlines place(s))"
((nfmt == 0)) || bad=1

# (b) shellcheck, run from the top so that `# shellcheck source=` paths resolve
mapfile -t sh < <(find . "${prune[@]}" -type f -name '*.sh' -print | sed 's|^\./||' | sort)
[[ -f .ci/run ]] && sh+=(.ci/run)
if shellcheck -x "${sh[@]}"; then
  echo "lint: shellcheck: ${#sh[@]} scripts, no findings"
else
  echo "lint: shellcheck: findings above (${#sh[@]} scripts checked)"
  bad=1
fi
exit $bad
