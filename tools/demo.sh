#!/usr/bin/env bash
# tools/demo.sh — set up, then train on the example data with mpirun and print the result.
#   bash tools/demo.sh [DIR]     (default DIR: exp/demo; rerunning resumes or says it is done)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
source tools/env.sh
dir=${1:-exp/demo}
mpirun -np 3 build/ngtrain --config=data/nnet-small.cfg --train='data/train-*.h5' \
  --valid=data/dev.h5 --dir="$dir" --num-epochs=6 --samples-per-iter=10000 \
  --minibatch-size=256 --initial-effective-lrate=0.002 --final-effective-lrate=0.0002 \
  --num-jobs-initial=1 --num-jobs-final=2
echo
build/nneval "$dir/final.h5" data/dev.h5
build/plotcurves "$dir"
