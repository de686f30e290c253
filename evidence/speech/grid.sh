#!/usr/bin/env bash
# The speech evidence: learning-rate grids, longer runs and 1..8 workers, ngtrain and the
# PyTorch peers on the corpus of mkcorpus.sh. Evidence, not a test (hours of CPU).
#
#   bash evidence/speech/grid.sh PHASE [--corpus=DIR] [--out=DIR] [--slots=N] [--build=DIR]
#
# PHASE
#   grid      1 epoch, 1 worker, each method over its learning-rate grid (20 runs)
#   grid2     the Adam grids extended down to 1e-4 (their best 1-epoch point was the lowest)
#   grid3     plain SGD down to 3e-4 (0.003 and 0.01 diverged)
#   epochs    3 epochs, 1 worker, each method at its best grid point (--ng-lr, --ngadam-lr,
#             --ngsgd-lr, --pt-adam-lr, --pt-adam-sched; --ng-mb: NG-SGD's minibatch, 512)
#   workers   1 epoch, 1/2/4/8 workers (--workers="1 2 4 8"; --methods= a subset of "ng ngadam
#             ngsgd pt-ddp-adam pt-localsgd-adam"): ngtrain NG-SGD, plain SGD and Adam (parameter
#             averaging every --workers-spi frames per job, one process per worker + the
#             coordinator; per-iteration validation on 25,000 dev frames, the final model on
#             all), PyTorch DDP Adam and post-local-SGD Adam (averaging every --workers-spi
#             frames per worker); learning rates per worker as at 1 worker
#   scaling   NG-SGD at 8 workers: per-job rate 0.001 and 0.003 (not 8 x 0.001), BMUF, 16
#             averagings per epoch, max-change x 8, jobs ramped 1 -> 8, 3 epochs; the default
#             ramp 1 -> W at 2, 4 and 8 workers (1 and 3 epochs)
#   seeds     the 1-epoch NG-SGD run and best peer again, with --seed=N
#   defaults  1 and 3 epochs of ngtrain with no learning-rate options at all (its defaults)
#
# --seed=N (default 1) seeds every run; other seeds name their runs NAME-sN.
# Every run writes RUN/ (ngtrain --dir, or RUN.jsonl for a peer) under OUT/PHASE/ and is
# skipped when its result exists, so rerunning a phase resumes it. --slots runs (default 2)
# go at a time, each on one thread; workers runs take the whole machine, one at a time.
# Tables and the plot: evidence/speech/report.py.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
phase=${1:?usage: grid.sh grid|grid2|grid3|epochs|workers|scaling|seeds|defaults [options]}
shift
corpus=/work/speech-corpus
out=/work/speech-runs
slots=2
build=$here/build
ng_lr=0.001 ngadam_lr=0.001 ngsgd_lr=0.003 pt_adam_lr=0.001 pt_adam_sched=exp
ng_spi=400000 ng_mb=512 workers="1 2 4 8" workers_spi=50000
methods="ng ngadam ngsgd pt-ddp-adam pt-localsgd-adam"
seed=1
for a in "$@"; do
  case $a in
  --corpus=*) corpus=${a#*=} ;;
  --out=*) out=${a#*=} ;;
  --slots=*) slots=${a#*=} ;;
  --build=*) build=${a#*=} ;;
  --ng-lr=*) ng_lr=${a#*=} ;;
  --ng-spi=*) ng_spi=${a#*=} ;;
  --ng-mb=*) ng_mb=${a#*=} ;;
  --ngadam-lr=*) ngadam_lr=${a#*=} ;;
  --ngsgd-lr=*) ngsgd_lr=${a#*=} ;;
  --pt-adam-lr=*) pt_adam_lr=${a#*=} ;;
  --pt-adam-sched=*) pt_adam_sched=${a#*=} ;;
  --workers=*) workers=${a#*=} ;;
  --workers-spi=*) workers_spi=${a#*=} ;;
  --methods=*) methods=${a#*=} ;;
  --seed=*) seed=${a#*=} ;;
  *)
    echo "grid.sh: error: unknown option '$a'" >&2
    exit 1
    ;;
  esac
done
train="$corpus/shards/train-[0-9]*.h5"
dev=$corpus/shards/dev-001.h5
test=$corpus/shards/test-001.h5
for f in "$dev" "$test" "$build/ngtrain" "$build/nneval"; do
  [[ -e $f ]] || {
    echo "grid.sh: error: '$f' is missing (make the corpus with mkcorpus.sh; build with meson)" >&2
    exit 1
  }
done
# shellcheck source=/dev/null
source "$here/tools/env.sh"
py=/usr/bin/python3
dir=$out/$phase
sfx="" # runs with a seed other than 1 are named NAME-sSEED
[[ $seed == 1 ]] || sfx=-s$seed
mkdir -p "$dir"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$dir/grid.log"; }
log "phase $phase on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), build $build"

div10() { $py -c "print('%g' % ($1 / 10))"; }

# ngtrain NAME WORKERS EPOCHS [ngtrain options...]: one run, then its test-set figure
ngtrain() {
  local name=$1$sfx w=$2 ep=$3
  shift 3
  local d=$dir/$name
  [[ -e $d/test.txt ]] && return 0
  rm -rf "$d"
  local cmd=("$build/ngtrain" --config="$here/data/nnet-speech.cfg" --train="$train"
    --valid="$dev" --dir="$d" --num-epochs="$ep" --seed="$seed" --num-jobs-initial="$w"
    --num-jobs-final="$w" --progress=0 "$@")
  if ((w > 1)); then cmd=(mpirun -np $((w + 1)) "${cmd[@]}"); fi
  log "start $name: ${cmd[*]}"
  mkdir -p "$d.tmp"
  /usr/bin/time -v "${cmd[@]}" >"$d.tmp/log.txt" 2>&1 || {
    log "FAILED $name (see $d.tmp/log.txt)"
    return 0
  }
  mv "$d.tmp/log.txt" "$d/log.txt" && rmdir "$d.tmp"
  "$build/nneval" "$d/final.h5" "$dev" >"$d/dev.txt" 2>&1 || log "nneval (dev) failed for $name"
  "$build/nneval" "$d/final.h5" "$test" >"$d/test.txt" 2>&1 || log "nneval failed for $name"
  log "done $name: $(tail -1 "$d/test.txt")"
}

# peer NAME [peers.py options...]
peer() {
  local name=$1$sfx
  shift
  local f=$dir/$name.jsonl
  [[ -e $f ]] && return 0
  log "start $name: peers.py $*"
  if $py "$here/evidence/speech/peers.py" --train="$train" --dev="$dev" --test="$test" \
    --seed="$seed" --threads=1 --out="$f.tmp" "$@" >"$dir/$name.log" 2>&1; then
    mv "$f.tmp" "$f"
    log "done $name: $(tail -1 "$f" | cut -c1-160)"
  else
    log "FAILED $name (see $dir/$name.log)"
  fi
}

# Run the queued commands, $slots at a time.
queue=()
q() { queue+=("$(printf '%q ' "$@")"); }
drain() {
  local n=0
  for c in "${queue[@]}"; do
    eval "$c" &
    n=$((n + 1))
    if ((n >= slots)); then
      wait -n || true
      n=$((n - 1))
    fi
  done
  wait || true
  queue=()
}

case $phase in
grid)
  for lr in 0.001 0.0003 0.003; do
    f=$(div10 $lr)
    for spi in 100000 400000; do
      q ngtrain "ng-lr$lr-spi$spi" 1 1 --samples-per-iter=$spi --initial-effective-lrate=$lr \
        --final-effective-lrate="$f"
    done
    q peer "pt-adam-lr$lr-const" --method=adam --precision=bf16 --lr=$lr --schedule=constant \
      --epochs=1
    q peer "pt-adam-lr$lr-exp" --method=adam --precision=bf16 --lr=$lr --schedule=exp --epochs=1
    q ngtrain "ngadam-lr$lr" 1 1 --samples-per-iter=100000 --optimizer=adam \
      --use-natural-gradient=false --initial-effective-lrate=$lr --final-effective-lrate="$f"
  done
  for lr in 0.003 0.01 0.001; do
    q ngtrain "ngsgd-lr$lr" 1 1 --samples-per-iter=100000 --use-natural-gradient=false \
      --initial-effective-lrate=$lr --final-effective-lrate="$(div10 $lr)"
  done
  for lr in 0.1 0.3; do
    q peer "pt-sgd-lr$lr-exp" --method=sgd --precision=bf16 --lr=$lr --schedule=exp --epochs=1
  done
  drain
  ;;
grid2)
  dir=$out/grid
  q peer pt-adam-lr0.0001-exp --method=adam --precision=bf16 --lr=0.0001 --schedule=exp --epochs=1
  q ngtrain ngadam-lr0.0001 1 1 --samples-per-iter=100000 --optimizer=adam \
    --use-natural-gradient=false --initial-effective-lrate=0.0001 --final-effective-lrate=0.00001
  drain
  ;;
grid3)
  dir=$out/grid
  for lr in 0.001 0.0003; do
    q ngtrain "ngsgd-lr$lr" 1 1 --samples-per-iter=100000 --use-natural-gradient=false \
      --initial-effective-lrate=$lr --final-effective-lrate="$(div10 $lr)"
  done
  drain
  ;;
epochs)
  mbs=""
  [[ $ng_mb == 512 ]] || mbs=-mb$ng_mb
  q ngtrain "ng-lr$ng_lr$mbs-e3" 1 3 --samples-per-iter="$ng_spi" --initial-effective-lrate="$ng_lr" \
    --final-effective-lrate="$(div10 "$ng_lr")" --minibatch-size="$ng_mb"
  q peer "pt-adam-lr$pt_adam_lr-$pt_adam_sched-e3" --method=adam --precision=bf16 \
    --lr="$pt_adam_lr" --schedule="$pt_adam_sched" --epochs=3
  q ngtrain "ngadam-lr$ngadam_lr-e3" 1 3 --samples-per-iter=100000 --optimizer=adam \
    --use-natural-gradient=false --initial-effective-lrate="$ngadam_lr" \
    --final-effective-lrate="$(div10 "$ngadam_lr")"
  drain
  ;;
workers)
  slots=1
  has() { [[ " $methods " == *" $1 "* ]]; }
  common=(--samples-per-iter="$workers_spi" --valid-frames=25000)
  # post-local SGD averages as often as ngtrain: every spi frames per worker (with
  # --workers-spi=0, ngtrain's automatic T / (4 W) for a corpus of fewer than 1.6 M frames)
  T=$($py -c "import json; print(json.load(open('$corpus/stats.json'))['train']['frames'])")
  for w in $workers; do
    spi_w=$workers_spi
    ((spi_w > 0)) || spi_w=$((T / (4 * w)))
    period=$((spi_w / 256))
    has ng && q ngtrain "ng-w$w" "$w" 1 "${common[@]}" --initial-effective-lrate="$ng_lr" \
      --final-effective-lrate="$(div10 "$ng_lr")"
    has ngadam && q ngtrain "ngadam-w$w" "$w" 1 "${common[@]}" --optimizer=adam \
      --use-natural-gradient=false --initial-effective-lrate="$ngadam_lr" \
      --final-effective-lrate="$(div10 "$ngadam_lr")"
    has ngsgd && q ngtrain "ngsgd-w$w" "$w" 1 "${common[@]}" --use-natural-gradient=false \
      --initial-effective-lrate="$ngsgd_lr" --final-effective-lrate="$(div10 "$ngsgd_lr")"
    if ((w > 1)); then
      has pt-ddp-adam && q peer "pt-ddp-adam-w$w" --method=ddp-adam --workers="$w" \
        --precision=bf16 --lr="$pt_adam_lr" --schedule="$pt_adam_sched" --epochs=1
      has pt-localsgd-adam && q peer "pt-localsgd-adam-w$w" --method=localsgd-adam \
        --workers="$w" --precision=bf16 --lr="$pt_adam_lr" --schedule="$pt_adam_sched" \
        --epochs=1 --period="$period" --warmup-steps=0
    fi
  done
  drain
  ;;
scaling)
  # NG-SGD at 8 workers, 1 epoch unless named: what might close the gap to one worker
  # (docs/results/speech.md, "Workers"). Each variant changes one thing of workers/ng-w8.
  slots=1
  base=(--samples-per-iter=0 --valid-frames=25000)
  lr=(--initial-effective-lrate="$ng_lr" --final-effective-lrate="$(div10 "$ng_lr")")
  cfg8=$dir/nnet-speech-maxchange8.cfg # every component's max-change x 8
  sed -e 's/^\(layer .*dim=1024\)/\1 max-change=6/' -e 's/^\(output dim=2000\)/\1 max-change=12/' \
    "$here/data/nnet-speech.cfg" >"$cfg8"
  q ngtrain ng-w8-lrjob0.001 8 1 "${base[@]}" --initial-effective-lrate=0.000125 \
    --final-effective-lrate=0.0000125
  q ngtrain ng-w8-lrjob0.003 8 1 "${base[@]}" --initial-effective-lrate=0.000375 \
    --final-effective-lrate=0.0000375
  q ngtrain ng-w8-bmuf 8 1 "${base[@]}" "${lr[@]}" --averaging=bmuf
  q ngtrain ng-w8-spi8000 8 1 --samples-per-iter=8000 --valid-frames=25000 "${lr[@]}"
  q ngtrain ng-w8-maxchange8 8 1 "${base[@]}" "${lr[@]}" --config="$cfg8" --max-param-change=16
  q ngtrain ng-w8-ramp 8 1 "${base[@]}" "${lr[@]}" --num-jobs-initial=1
  q ngtrain ng-w8-e3 8 3 "${base[@]}" "${lr[@]}"
  # ngtrain's default job ramp, 1 -> W (the workers phase fixes the jobs at W)
  q ngtrain ng-w2-ramp 2 1 "${base[@]}" "${lr[@]}" --num-jobs-initial=1
  q ngtrain ng-w4-ramp 4 1 "${base[@]}" "${lr[@]}" --num-jobs-initial=1
  q ngtrain ng-w8-ramp-e3 8 3 "${base[@]}" "${lr[@]}" --num-jobs-initial=1
  drain
  ;;
seeds)
  # the 1-epoch headline pair again (run with --seed=N, N != 1; the 3-epoch pair is
  # `epochs --seed=N`): NG-SGD at --ng-lr, 400000 samples per iteration, and the best peer
  q ngtrain "ng-lr$ng_lr-spi400000" 1 1 --samples-per-iter=400000 \
    --initial-effective-lrate="$ng_lr" --final-effective-lrate="$(div10 "$ng_lr")"
  q peer "pt-adam-lr$pt_adam_lr-$pt_adam_sched" --method=adam --precision=bf16 \
    --lr="$pt_adam_lr" --schedule="$pt_adam_sched" --epochs=1
  drain
  ;;
defaults)
  q ngtrain defaults-e1 1 1
  q ngtrain defaults-e3 1 3
  drain
  ;;
*)
  echo "grid.sh: error: unknown phase '$phase' (grid, grid2, grid3, epochs, workers, scaling, seeds or defaults)" >&2
  exit 1
  ;;
esac
log "phase $phase finished"
