#!/usr/bin/env bash
# tools/dev/fix-citations.sh — rewrite citations of documents that are not in the repository
# into citations of docs/design.md and docs/algorithm.md (idempotent; run it after merging a
# branch that still carries old citations, then run tests/check_docs.sh).
#
#   bash tools/dev/fix-citations.sh [SRCDIR]      # default: the repository holding this script
#
# What it rewrites (comments and doc text; the rules are specific enough to leave code alone):
#   docs/ngsgd.md §X               -> docs/algorithm.md §X   (same section numbers)
#   DESIGN.md "Heading"            -> docs/design.md §N      (the section that now holds it)
#   STYLE.md "Heading"             -> docs/design.md §8.x    (the Style section; "Errors" is §6)
#   "issue N" references to the project's tracker, in the phrasings the tree used, -> the
#   thing itself or the docs section that describes it.
# Scope: src include tools tests evidence docs data README.md meson.build, text files only; fuzzing
# inputs (tests/fuzz/corpus, tests/fuzz/regress), this script and tests/check_docs.sh are
# left alone. Prints the files it changed.
set -euo pipefail
export LC_ALL=C
SRC=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$SRC"

rules=(
  # --- the NG-SGD specification: same numbering, new name
  -e 's#docs/ngsgd\.md#docs/algorithm.md#g'
  -e 's#§([0-9][0-9.]*[0-9]|[0-9]) of docs/algorithm\.md#docs/algorithm.md §\1#g'
  # --- the design page: headings of the old page -> sections of docs/design.md
  -e 's#\(DESIGN\.md, docs/algorithm\.md §4\)#(docs/design.md §3, docs/algorithm.md §4)#g'
  -e 's#shard\.h and DESIGN\.md#shard.h and docs/design.md §5.1#g'
  -e 's#bad-shard path of DESIGN\.md#bad-shard path of docs/design.md §6#g'
  -e 's#DESIGN\.md "Formats", issue 5\)#docs/design.md §5.1; memory: the streaming below)#g'
  -e 's#(shard files in and out|shard format) \(DESIGN\.md "Formats"\)#\1 (docs/design.md §5.1)#g'
  -e 's#DESIGN\.md "Formats"#docs/design.md §5#g'
  -e 's#DESIGN\.md "Network config"#docs/design.md §5.3#g'
  -e 's#DESIGN\.md "Layout"#docs/design.md §2.1#g'
  -e 's#DESIGN\.md "The parts[^"]*"#docs/design.md §2.2#g'
  -e 's#DESIGN\.md "Running"#docs/design.md §3#g'
  -e 's#DESIGN\.md "Rules[^"]*"#docs/design.md §7#g'
  -e 's#DESIGN\.md( "[^"]*")?#docs/design.md#g'
  # --- the style page -> docs/design.md §8 (errors: §6)
  -e 's#STYLE\.md "Errors[^"]*"#docs/design.md §6#g'
  -e 's#STYLE\.md "Names"#docs/design.md §8.1#g'
  -e 's#STYLE\.md "Layout"#docs/design.md §2.1#g'
  -e 's#STYLE\.md "Ownership"#docs/design.md §8.2#g'
  -e 's#STYLE\.md "Logging"#docs/design.md §8.3#g'
  -e 's#STYLE\.md "Comments and math"#docs/design.md §8.4#g'
  -e 's#STYLE\.md "Tests[^"]*"#docs/design.md §8.5#g'
  -e 's#STYLE\.md "MPI etiquette"#docs/design.md §8.6#g'
  -e 's#STYLE\.md "Build"#docs/design.md §8.7#g'
  -e 's#STYLE\.md "File formats"#docs/design.md §8.8#g'
  -e 's#STYLE\.md( "[^"]*")?#docs/design.md §8#g'
  # --- references to the project's issue tracker, which a reader of the repository lacks
  -e 's#the evidence runs of issues 3, 4 and 8 \(docs/algorithm\.md §5\)#the evidence runs of docs/algorithm.md §5 and §4.9#g'
  -e 's#; issue [0-9]+, §#; docs/algorithm.md §#g'
  -e 's#issue [0-9]+, (§5 claims? )#\1#g'
  -e 's#(transform +)issue 8:#\1§4.9:#g'
  -e 's# ng \(issue 3\)# ng (§5 claim 3)#g'
  -e 's# parallel \(issue 4\)# parallel (§5 claims 1-2)#g'
  -e 's# transform \(issue 8\)# transform (§4.9)#g'
  -e 's#\(issue [0-9]+; docs/#(docs/#g'
  -e 's#(transform\.md`); issue 8\)#\1; docs/algorithm.md §4.9)#g'
  -e 's#\(issue [0-9]+ goal(:?) #(goal\1 #g'
  -e 's#\(issue 3 "Bad input"\)#(docs/algorithm.md §2.8)#g'
  -e 's#^(\#+ .*[^ ]) \(issue [0-9]+\)$#\1#'
)

changed=0
while IFS= read -r f; do
  tmp=$(mktemp)
  sed -E "${rules[@]}" "$f" > "$tmp"
  if ! cmp -s "$f" "$tmp"; then
    cat "$tmp" > "$f"   # keep the file's mode and inode
    echo "fixed: $f"
    changed=$((changed + 1))
  fi
  rm -f "$tmp"
done < <(grep -rlIE 'docs/ngsgd\.md|DESIGN\.md|STYLE\.md|issues? [0-9]|§[0-9][0-9.]* of docs/' \
           src include tools tests evidence docs data README.md meson.build 2>/dev/null |
         grep -vE '^(tests/fuzz/(corpus|regress)/|tools/dev/fix-citations\.sh$|tests/check_docs\.sh$)' |
         sort)
echo "fix-citations: $changed file(s) changed"
