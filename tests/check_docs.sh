#!/usr/bin/env bash
# tests/check_docs.sh SRCDIR — every document the code cites exists, with the cited section.
#
# Scans src/ include/ tools/ tests/ evidence/ docs/ data/ README.md meson.build (text files;
# not the fuzzing inputs, not this file) and fails, naming file:line, when
#   - a cited docs/<name>.md does not exist, or a cited section does not: a citation is
#     `docs/<name>.md §N[.N...]`, with more sections chained by ",", "–", "-" or "and"
#     (`docs/algorithm.md §2.4–§2.5`, `docs/algorithm.md §4.2, §6 (j)`), or
#     `§N of docs/<name>.md`; the section exists if the document has a heading whose
#     first word is that number (`### 2.4 Efficient representation`, `## 3. Protocol`);
#   - any other markdown file is named (`README.md`, `docs/results/ng.md`, `X.md`) that is
#     not in the repository, neither from its top nor from the naming file's folder: the
#     repository stands alone;
#   - a docs/*.md has two headings with the same number.
# References to issue numbers of the project's tracker are listed as notes, not failures.
#
#   bash tests/check_docs.sh .        # meson: suite 'lint'
set -euo pipefail
SRC=${1:?usage: check_docs.sh SRCDIR}
cd "$SRC"
export LC_ALL=C.UTF-8 2>/dev/null || true

files=()
for top in src include tools tests evidence docs data README.md meson.build; do
  [ -e "$top" ] || continue
  while IFS= read -r f; do files+=("$f"); done < <(
    find "$top" -type f \
      -not -path 'tests/fuzz/corpus/*' -not -path 'tests/fuzz/regress/*' \
      -not -path 'tests/check_docs.sh' | sort)
done

exec perl -CSD -e '
use strict; use warnings;
my @files = @ARGV;
my (%sections, %exists, @problems, @notes);
my $ncite = 0;
my $num = qr/\d+(?:\.\d+)*/;

# The numbered headings of one document (cached); reports duplicates once.
sub sections_of {
  my ($doc) = @_;
  return $sections{$doc} if exists $sections{$doc};
  my %s;
  if (open(my $fh, "<:encoding(UTF-8)", $doc)) {
    my $in_code = 0;
    while (my $l = <$fh>) {
      $in_code = !$in_code if $l =~ /^\s*```/;
      next if $in_code;
      if ($l =~ /^#{1,6}\s+($num)(?:\.)?(?:\s|$)/) {
        push @problems, "$doc:$.: section $1 appears twice (also line $s{$1})" if $s{$1};
        $s{$1} = $.;
      }
    }
    close $fh;
    $exists{$doc} = 1;
  } else {
    $exists{$doc} = 0;
  }
  return $sections{$doc} = \%s;
}

sub check {
  my ($where, $doc, @secs) = @_;
  $ncite++;
  my $s = sections_of($doc);
  return unless $exists{$doc};  # a missing document is reported by the name check below
  for my $n (@secs) {
    push @problems, "$where: cites $doc \x{a7}$n, but $doc has no heading numbered $n"
      unless $s->{$n};
  }
}

for my $f (@files) {
  next if -B $f;
  open(my $fh, "<:encoding(UTF-8)", $f) or next;
  while (my $l = <$fh>) {
    my $where = "$f:$.";
    # any markdown file named must be in the repository (a placeholder such as <name>.md,
    # $label.md or *.md is not a name), found from the top or from the folder of the file naming it
    (my $dir = $f) =~ s![^/]*\z!!;
    while ($l =~ m#(?<![\w/.\$<>*{-])((?:[\w.-]+/)*[A-Za-z][\w.-]*\.md)\b(?![\w/-])#g) {
      my $md = $1;
      next if -e $md || -e "$dir$md";
      push @problems, "$where: names $md, which is not in the repository "
        . "(the repository stands alone: cite docs/design.md, docs/algorithm.md or README.md)";
    }
    # docs/<name>.md, optionally followed by a chain of sections
    while ($l =~ m{\bdocs/([\w./-]+?)\.md((?:\s*\x{a7}$num(?:\s*[-\x{2013}]\s*\x{a7}?$num)?(?:\s*(?:,|and|\x{2013}|-)\s*\x{a7}$num(?:\s*[-\x{2013}]\s*\x{a7}?$num)?)*)?)}g) {
      my ($doc, $chain) = ("docs/$1.md", $2 // "");
      my @secs = $chain =~ /($num)/g;
      check($where, $doc, @secs);
    }
    # the other order: "§N of docs/<name>.md"
    while ($l =~ m{\x{a7}($num)\s+of\s+docs/([\w./-]+?)\.md}g) {
      check($where, "docs/$2.md", $1);
    }
    push @notes, "$where: refers to a tracker issue: $1" if $l =~ /\b(issues? \d+)\b/;
  }
  close $fh;
}
# every numbered document is checked for duplicate numbers even if nobody cites it
sections_of($_) for grep { m{^docs/[^/]+\.md$} } @files;

print "note: $_\n" for @notes;
if (@problems) {
  print STDERR "$_\n" for @problems;
  printf STDERR "check_docs: %d problem(s) in %d citation(s)\n", scalar @problems, $ncite;
  exit 1;
}
printf "check_docs: %d citation(s) in %d file(s) scanned; every cited document and section exists\n",
  $ncite, scalar @files;
' "${files[@]}"
