#!/usr/bin/env bash
# tests/fuzz/make_corpus.sh — (re)generate the seed corpus tests/fuzz/corpus/<parser>/.
#   bash tests/fuzz/make_corpus.sh [OUTDIR]      (default: tests/fuzz/corpus)
# Text seeds (configs, command lines) are written here by hand and copied from data/;
# binary seeds (models, shards, Kaldi archives, npy files) come from gen_seeds.c, which
# cuts a few utterances out of data/dev.h5 and writes them with the library's writers.
# Deterministic: rerunning gives the same files. Total size stays well under 2 MB.
set -euo pipefail
S=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-$S/tests/fuzz/corpus}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT"/{nnet_config,opts,nnet_load,shard,kaldi_io,npy}
mkdir -p "$OUT"/{nnet_config,opts,nnet_load,shard,kaldi_io,npy}

# ---- network configs: the examples, and one seed per syntax feature or error path
cp "$S"/data/nnet-small.cfg "$S"/data/nnet-speech.cfg "$OUT/nnet_config/"
c=0
cfg() { c=$((c + 1)); printf '%b' "$1" >"$OUT/nnet_config/hand-$(printf %02d $c).cfg"; }
cfg 'input dim=40 context=-5..5\nlayer type=relu-renorm dim=1024\nlayer type=pnorm dim=2000 group=10\nlayer type=relu dim=512\noutput dim=3000\n'
cfg 'input dim=3 context=0..0\noutput dim=2\n'
cfg 'input dim=2\nlayer type=affine dim=4\noutput dim=2 max-change=0\n'
cfg '# comment only line\n\tinput\tdim=13   context=-2..0  # trailing comment\r\nlayer type=pnorm dim=12 group=3 bias-stddev=0.1 param-stddev=0.2\noutput dim=4 learning-rate-factor=0.5\n'
cfg 'input dim=5 context=-1..1\nlayer type=relu dim=8 use-natural-gradient=false rank-in=3 rank-out=2 update-period=2 num-samples-history=500 alpha=1.5\noutput dim=3 use-natural-gradient=true\n'
cfg 'input dim=13 context=-3..3\nlayer type=rleu dim=64\noutput dim=48\n'
cfg 'input dim=13 context=3..-3\nlayer type=relu dim=64\noutput dim=48\n'
cfg 'input dim=13 context=-3..3\nlayer type=pnorm dim=10 group=3\noutput dim=48\n'
cfg 'input dim=13 context=-3..3\nlayer type=relu dim=64 dim=32\noutput dim=48\noutput dim=4\n'
cfg 'layer type=relu dim=64\ninput dim=1\n'
cfg 'input dim=1000000 context=-1000..1000\noutput dim=1\n'
cfg 'input dim=13 context=-3..3\nlayer type=relu dim=1e3\noutput dim=-1 max-change=nan\n'
cfg 'input dim=13 context=-3..3\nlayer type=relu dim=64 rank-in=200\noutput dim=48 type=relu group=2\n'
cfg 'input dim=4 context=-99999999999999999999..0\n'
cfg 'input dim=2 context=-1..1 context=-2..2\nlayer type=affine dim=2 bogus=1\n'

# ---- command lines for the option parser (one argument a line)
o=0
opt() { o=$((o + 1)); printf '%b' "$1" >"$OUT/opts/hand-$(printf %02d $o).txt"; }
opt '--config=data/nnet-small.cfg\n--train=data/train-*.h5\n--valid=data/dev.h5\n--samples-per-iter=8000\n--minibatch-size=128\n--initial-effective-lrate=0.002\n--final-effective-lrate=0.0005\n--combine-frames=3000\n--prior-subset-size=3000\n--lda-frames=20000\n--progress=0\n--num-epochs=2\n--dir=/tmp/x\n--seed=3'
opt '--num_epochs\n4\n--use-natural-gradient\n--do_final_combination=false\n--seed\n18446744073709551615\n--\n--not-an-option\npositional'
opt '--help'
opt '-h\nfile1\nfile2'
opt '--num-epoch=3'
opt '--minibatch-size=many'
opt '--max-param-change=1e400\n--alpha=inf\n--num-samples-history=nan'
opt '--samples-per-iter=-9223372036854775808\n--rank-in=2147483648\n--seed=-1'
opt '--use-natural-gradient=yes\n--ng-reset-each-iter=maybe'
opt '--dir'
opt '--=x\n---\n-\n--\n'
opt '--averaging=bmuf\n--block-momentum=0.9\n--block-lr\n1.0\n--preconditioner=simple\n--input-transform=cmvn\n--verbose=2\n--num-threads=2\n--keep-models=5\n--max-models-combine=3\n--debug-save-jobs\n--stop-after=2\n--max-retries=1\n--num-jobs-initial=1\n--num-jobs-final=2\n--num-jobs-step=1\n--valid-frames=100\n--shuffle-buffer=1000\n--lda-within-class-factor=0.01\n--lda-max-singular-value=4\n--update-period=4'
opt '--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1'

# ---- binary seeds
B=$(mktemp -d /tmp/ngt-gen.XXXXXX)
trap 'rm -rf "$B"' EXIT
read -r -a DEPS <<<"$(pkg-config --cflags --libs openblas hdf5)"
gcc -std=c11 -O1 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$S/include" \
  "$S"/tests/fuzz/gen_seeds.c "$S"/src/{log,fileio,mat,engine,rng,nnet,h5util,nnet_io,shard,kaldi_io}.c \
  "${DEPS[@]}" -lm -lpthread -o "$B/gen_seeds"
"$B/gen_seeds" "$S" "$OUT"
printf 'not hdf5 at all' >"$OUT/shard/not-hdf5.h5"
cp "$OUT/shard/not-hdf5.h5" "$OUT/nnet_load/not-hdf5.h5"
du -sh "$OUT"
