#!/usr/bin/env bash
# evidence/run.sh — the evidence runs of docs/algorithm.md §5 and §4.9, one command each.
# Every subcommand trains with build/ngtrain, writes a markdown table to docs/results/<name>.md
# (with the exact command, date, machine, OpenBLAS kernel line and wall time) and prints it.
# The tables' numbers come from evidence/metrics.py. (This was tools/evidence.sh: results written
# before the move name that path in their Command line.)
#
#   bash evidence/run.sh [--quick] [--build=DIR] [--out=DIR] ng|parallel|transform|all
#
#   ng         §5 claim 3: plain SGD, simple NG-SGD and online NG-SGD in one process;
#              each method's best initial effective lrate from a factor-2 grid (searched up or
#              down from 0.002 until the final validation objective gets worse, so the best is
#              bracketed), final lrate = initial/10; validation objective/accuracy per epoch at
#              each method's best lrate, two seeds. Example data and Fashion-MNIST.
#   parallel   §5 claims 1-2: 1, 2, 4, 8 jobs (mpirun -np J+1) at each method's best
#              1-job lrate (kept fixed: lr per job = J x lrate), plain SGD, online NG-SGD, and BMUF;
#              max-change firing. Then the cost on the speech-sized network: averaging time as a
#              fraction of iteration time, speed-up from 1 to 2 workers, coordinator CPU use.
#   transform  §4.9: --input-transform=none|cmvn|lda with plain SGD and online NG-SGD.
#   precision  bf16 against fp32 (--precision): plain SGD and online NG-SGD, 1 and 4 jobs, at the
#              best 1-job lrates of docs/results/ng.md; validation objective per epoch, Δ bf16 - fp32.
#   ramp       data coverage under Kaldi's job ramp: 1, 2, 4, 8 jobs, constant (initial = final
#              = J) beside the ramp 1 -> J, plain SGD and online NG-SGD at the best 1-job lrates of
#              docs/results/ng.md; passes over the data per shard. Writes ramp-<label>.md, label =
#              --label=NAME (default: the commit), so runs of two builds stand side by side.
#   all        the three in order.
#
# Full mode (default) takes about 30 min on 2 cores and writes docs/results/<name>.md.
# --quick is a smoke test of the whole pipeline (1 epoch, a 12000-image Fashion-MNIST subset, a
# tiny cost run; a few minutes); it writes OUT/results/<name>.md (OUT = exp/evidence-quick), never
# docs/. All data is generated under OUT (exp/ is git-ignored): the example data re-split into 8
# shards by build/mkdata (8 jobs need 8 shards; same seed, same 63208 frames as data/), Fashion-MNIST
# from Debian's dataset-fashion-mnist (gunzip + build/idx2shards, raw 0..255 pixels), 40-dim
# speech-like data for the cost runs. Runs are cached: a run whose command line and ngtrain binary
# are unchanged and which finished is not run again (delete OUT/runs to start over). Runs go one
# after the other, so that the timings are not distorted by each other (others' jobs on the same
# machine still are: the load average is recorded).
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; }

MODE=full BUILD=build OUT="" CMD="" LABEL=""
for a in "$@"; do
  case $a in
    --quick) MODE=quick ;;
    --build=*) BUILD=${a#--build=} ;;
    --out=*) OUT=${a#--out=} ;;
    -h|--help) usage; exit 0 ;;
    --label=*) LABEL=${a#--label=} ;;
    ng|parallel|transform|ramp|precision|all) CMD=$a ;;
    *) echo "evidence: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
[[ -n $CMD ]] || { usage >&2; exit 2; }
NGTRAIN=$BUILD/ngtrain
for t in ngtrain mkdata idx2shards; do
  [[ -x $BUILD/$t ]] || { echo "evidence: $BUILD/$t not found; build first (bash tools/setup.sh, or ninja -C $BUILD), or pass --build=DIR" >&2; exit 1; }
done
PY=$(command -v python3 || true)
[[ -n $PY ]] || { echo "evidence: python3 is needed to read metrics.jsonl (apt-get install python3)" >&2; exit 1; }
command -v h5ls >/dev/null || { echo "evidence: h5ls is needed (apt-get install hdf5-tools)" >&2; exit 1; }
source tools/env.sh
ARGV_ORIG="bash evidence/run.sh $*"

if [[ $MODE == quick ]]; then
  OUT=${OUT:-exp/evidence-quick}; RES=$OUT/results
  EPOCHS=1; SEEDS=(0); FM_TRAIN_LIMIT=12000; FM_TEST_LIMIT=2000; COST_S=3000; DIRECT=0
else
  OUT=${OUT:-exp/evidence}; RES=docs/results
  EPOCHS=4; SEEDS=(0 1); FM_TRAIN_LIMIT=0; FM_TEST_LIMIT=0; COST_S=40000; DIRECT=1
fi
# the input transform of the ng and parallel runs: the default lda on the example data; cmvn on
# Fashion-MNIST, where lda (10 classes: 9 informative directions of 784) costs ~0.1 in objective
declare -A TR=([ex]=lda [fm]=cmvn)
GRID=(0.00025 0.0005 0.001 0.002 0.004 0.008 0.016 0.032)   # initial effective lrates
GRID_START=3                                                 # 0.002
JOBS=(1 2 4 8)
ITERS_PER_EPOCH=16        # --samples-per-iter = frames/16: an epoch is 16 iterations at 1 job
mkdir -p "$OUT/runs" "$RES"
BIN_KEY=$(md5sum "$NGTRAIN" | cut -c1-12)
EV=$PWD/evidence/metrics.py   # the tables' numbers from metrics.jsonl

# ------------------------------------------------------------------ helpers
py() { "$PY" "$EV" "$@"; }

log() { echo "evidence: $*" >&2; }

frames_of() { # total frames of the shards matching a glob (h5ls of /labels)
  local n=0 f d
  for f in $1; do
    d=$(h5ls "$f/labels" | sed -n 's/.*{\([0-9]*\).*/\1/p')
    n=$((n + d))
  done
  echo "$n"
}

# run NAME NP ARGS... : train into OUT/runs/NAME unless that finished with the same command.
# Returns ngtrain's exit status (the caller decides whether a failure is a result or a stop).
run() {
  local name=$1 np=$2; shift 2
  local dir=$OUT/runs/$name
  local key="np=$np ngtrain=$BIN_KEY $*"
  if [[ -f $dir/metrics.jsonl && -f $dir.key && "$(<"$dir.key")" == "$key" ]]; then
    echo x >>"$OUT/.cached.$$"
    return 0
  fi
  echo x >>"$OUT/.ran.$$"
  rm -rf "$dir" "$dir.key" "$dir.log"
  log "run $name (np $np)"
  local rc=0
  if ((np == 1)); then
    "$NGTRAIN" "$@" --dir="$dir" >"$dir.log" 2>&1 || rc=$?
  else
    mpirun -np "$np" "$NGTRAIN" "$@" --dir="$dir" >"$dir.log" 2>&1 || rc=$?
  fi
  if ((rc != 0)); then
    log "run $name FAILED (exit $rc); the end of $dir.log:"
    tail -n 4 "$dir.log" >&2
    echo "failed $rc" >"$dir.key"
    return "$rc"
  fi
  echo "$key" >"$dir.key"
}
ok() { [[ -f $OUT/runs/$1/metrics.jsonl && "$(head -c 6 "$OUT/runs/$1.key" 2>/dev/null)" != failed ]]; }
nwarn() { grep -c " WARN " "$OUT/runs/$1.log" 2>/dev/null || true; }
failmsg() { grep -m1 -E "error|diverged" "$OUT/runs/$1.log" | sed 's/^.*\(INFO\|WARN\|ERROR\) //' | cut -c1-90; }

# results_header TITLE T0 LOAD0 [BULLET...]: the head of every results file: title, the command
# and its wall time, date, commit, machine, any extra bullets, the load at start and end
results_header() {
  local title=$1 t0=$2 load0=$3 b
  shift 3
  echo "# $title"
  echo
  echo "Command: \`$ARGV_ORIG\` ($MODE mode; wall time $(wall "$t0"))"
  echo
  machine_info
  for b in "$@"; do echo "- $b"; done
  echo "- load average (others' jobs share the machine): $load0 at the start, $(loadavg) at the end"
}
machine_info() {
  local blas="" f
  for f in "$OUT"/runs/*.log; do blas=$(grep -o -m1 "BLAS [^;]*" "$f") && break; done
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain --untracked-files=no -- . ':!docs/results' 2>/dev/null) ]] && echo ' (+ uncommitted changes)')"
  echo "- machine: nproc $(nproc), $(sed -n '/^model name/{s/^model name\s*: //p;q}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.0f GB", $2/1048576}' /proc/meminfo); ngtrain prints \"${blas:-?}\"; $(mpirun --version 2>/dev/null | sed -n 1p)"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# wall T0: elapsed time since T0, and how many runs were trained or reused (counted since reset_counts)
# (per process: two evidence commands may share OUT)
reset_counts() { : >"$OUT/.ran.$$"; : >"$OUT/.cached.$$"; }
wall() {
  local s=$((SECONDS - $1))
  echo "$((s / 60)) min $((s % 60)) s; $(wc -l <"$OUT/.ran.$$") runs trained, $(wc -l <"$OUT/.cached.$$") reused from the cache"
}

# ------------------------------------------------------------------ data
prep_data() {
  local d=$OUT/data
  if [[ ! -f $d/ex/train-0008.h5 ]]; then
    mkdir -p "$d/ex"
    log "example data: 8 shards (build/mkdata, same seed and utterances as data/)"
    "$BUILD/mkdata" --seed=1 --part=0 --num-utts=600 --num-shards=8 --out="$d/ex/train" >/dev/null
  fi
  if [[ ! -f $d/fm/train-0008.h5 || ! -f $d/fm/test.h5 ]]; then
    local src=/usr/share/datasets/fashion-mnist f
    [[ -f $src/train-images-idx3-ubyte.gz ]] || { log "Fashion-MNIST not found in $src (apt-get install dataset-fashion-mnist)"; exit 1; }
    mkdir -p "$d/fm/raw"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
      gunzip -c "$src/$f.gz" >"$d/fm/raw/$f"
    done
    log "Fashion-MNIST: build/idx2shards (raw 0..255 pixels, one frame per image)"
    "$BUILD/idx2shards" --images="$d/fm/raw/train-images-idx3-ubyte" --labels="$d/fm/raw/train-labels-idx1-ubyte" \
      --num-shards=8 --limit="$FM_TRAIN_LIMIT" --out="$d/fm/train" >/dev/null
    "$BUILD/idx2shards" --images="$d/fm/raw/t10k-images-idx3-ubyte" --labels="$d/fm/raw/t10k-labels-idx1-ubyte" \
      --limit="$FM_TEST_LIMIT" --out="$d/fm/test" >/dev/null
    rm -rf "$d/fm/raw"
  fi
  cp evidence/fashion-mnist.cfg "$OUT/fm.cfg"
  EX_N=$(frames_of "$d/ex/train-*.h5")
  FM_N=$(frames_of "$d/fm/train-*.h5")
}

# Arguments of a dataset (array DA) and of a method (array MA).
set_ds() {
  case $1 in
    ex) DA=(--config=data/nnet-small.cfg "--train=$OUT/data/ex/train-*.h5" --valid=data/dev.h5
            --samples-per-iter=$((EX_N / ITERS_PER_EPOCH)))
        DS_NAME="example data (data/nnet-small.cfg: 13 x 7 spliced -> 2 x relu-renorm 128 -> 48; $EX_N frames in 8 shards, valid data/dev.h5)" ;;
    # --prior-subset-size=N/2+1 works around the slow random subset load from compressed shards
    # with 784-dim frames (ngtrain bug, see docs/results/*.md): above N/2, rank 0 reads whole shards.
    fm) DA=(--config="$OUT/fm.cfg" "--train=$OUT/data/fm/train-*.h5" --valid="$OUT/data/fm/test.h5"
            --samples-per-iter=$((FM_N / ITERS_PER_EPOCH)) --prior-subset-size=$((FM_N / 2 + 1)))
        DS_NAME="Fashion-MNIST (raw 0..255 pixels; 784 -> 2 x relu-renorm 256 -> 10; $FM_N training images in 8 shards, valid = the $( ((FM_TEST_LIMIT)) && echo "first $FM_TEST_LIMIT" || echo 10000) test images)" ;;
  esac
}
set_m() {
  case $1 in
    sgd) MA=(--use-natural-gradient=false); M_NAME="plain SGD" ;;
    simple) MA=(--use-natural-gradient=true --preconditioner=simple); M_NAME="simple NG-SGD" ;;
    online) MA=(--use-natural-gradient=true --preconditioner=online); M_NAME="online NG-SGD" ;;
  esac
}
COMMON=(--num-epochs="$EPOCHS" --minibatch-size=512 --do-final-combination=false --progress=0)
lr_final() { py div "$1" 10; }

# run names: name1 DS METHOD TRANSFORM LR SEED; namej DS METHOD AVERAGING J LR
name1() { echo "$1-1p-$2-$3-lr$4-s$5"; }
namej() { if (($4 == 1)) && [[ $3 == average ]]; then name1 "$1" "$2" "${TR[$1]}" "$5" 0; else echo "$1-par-${TR[$1]}-$2-$3-J$4-lr$5"; fi; }

# one run of the one-process comparison: train1 DS METHOD LR SEED TRANSFORM -> name in R
train1() {
  local ds=$1 m=$2 lr=$3 seed=$4 tr=$5
  set_ds "$ds"; set_m "$m"
  R=$(name1 "$ds" "$m" "$tr" "$lr" "$seed")
  run "$R" 1 "${DA[@]}" "${MA[@]}" "${COMMON[@]}" --input-transform="$tr" --seed="$seed" \
    --initial-effective-lrate="$lr" --final-effective-lrate="$(lr_final "$lr")"
}

# search_lr DS METHOD: the best initial lrate (final objective, seed 0, transform TR[DS]) -> BEST[DS-METHOD];
# also GRIDDONE[DS-METHOD] = the grid indices evaluated.
declare -A BEST GRIDDONE OBJ
search_lr() {
  local ds=$1 m=$2 i best
  eval_i() { # evaluate grid point $1 (a failed run counts as -inf)
    local lr=${GRID[$1]}
    if train1 "$ds" "$m" "$lr" 0 "${TR[$ds]}"; then OBJ[$ds-$m-$1]=$(py obj "$OUT/runs/$R"); else OBJ[$ds-$m-$1]=nan; fi
    GRIDDONE[$ds-$m]+=" $1"
  }
  [[ -n ${BEST[$ds-$m]:-} ]] && return 0
  GRIDDONE[$ds-$m]=""
  i=$GRID_START; eval_i "$i"; eval_i $((i + 1))
  if py better "${OBJ[$ds-$m-$((i + 1))]}" "${OBJ[$ds-$m-$i]}"; then
    best=$((i + 1)); i=$((i + 2))
    while ((i < ${#GRID[@]})); do
      eval_i "$i"
      py better "${OBJ[$ds-$m-$i]}" "${OBJ[$ds-$m-$best]}" || break
      best=$i; i=$((i + 1))
    done
  else
    best=$i; i=$((i - 1))
    while ((i >= 0)); do
      eval_i "$i"
      py better "${OBJ[$ds-$m-$i]}" "${OBJ[$ds-$m-$best]}" || break
      best=$i; i=$((i - 1))
    done
  fi
  BEST[$ds-$m]=${GRID[$best]}
  BESTI[$ds-$m]=$best
}
declare -A BESTI

epoch_cols() { local k; for ((k = 1; k <= EPOCHS; k++)); do printf ' epoch %d |' "$k"; done; }

# ------------------------------------------------------------------ ng (§5 claim 3)
cmd_ng() {
  local t0=$SECONDS load0 f=$RES/ng.md ds m i lr seed
  load0=$(loadavg)
  reset_counts
  prep_data
  for ds in ex fm; do for m in sgd simple online; do search_lr "$ds" "$m"; done; done
  for ds in ex fm; do for m in sgd simple online; do for seed in "${SEEDS[@]}"; do
    train1 "$ds" "$m" "${BEST[$ds-$m]}" "$seed" "${TR[$ds]}" || true
  done; done; done
  {
    results_header "NG-SGD against plain SGD in one process (docs/algorithm.md §5 claim 3)" "$t0" "$load0"
    echo
    echo "Setup: one process, $EPOCHS epochs, minibatch 512, --samples-per-iter = frames/$ITERS_PER_EPOCH (an epoch is"
    echo "$ITERS_PER_EPOCH iterations), --input-transform=lda (the default) on the example data and cmvn on Fashion-MNIST"
    echo "(where lda costs about 0.1 in objective, docs/results/transform.md), final lrate = initial/10, no final"
    echo "combination (the numbers are the model after the last iteration). Learning rates: a factor-2 grid"
    echo "${GRID[*]}, searched from ${GRID[$GRID_START]} up (or down) until the"
    echo "final validation objective got worse, seed 0; the best (in bold) is bracketed unless marked"
    echo "\"grid edge\". Cells are validation objective (log-likelihood per frame, higher is better) /"
    echo "frame accuracy. Max-change: % of component updates clipped by max-change / % of steps clipped"
    echo "by the global --max-param-change, mean over iterations."
    for ds in ex fm; do
      set_ds "$ds"
      echo
      echo "## $DS_NAME"
      echo
      echo "Learning-rate search (seed 0, after $EPOCHS epochs):"
      echo
      echo "| method | initial lrate | valid obj / acc | max-change % |"
      echo "|---|---|---|---|"
      for m in sgd simple online; do
        set_m "$m"
        for i in $(tr ' ' '\n' <<<"${GRIDDONE[$ds-$m]}" | sort -n | uniq); do
          lr=${GRID[$i]}; R=$(name1 "$ds" "$m" "${TR[$ds]}" "$lr" 0)
          local b="" e=""
          if [[ $i == "${BESTI[$ds-$m]}" ]]; then b="**"; ((i == 0 || i == ${#GRID[@]} - 1)) && e=" (grid edge)"; fi
          if ok "$R"; then
            echo "| $M_NAME | $b$lr$b$e | $(py final "$OUT/runs/$R") | $(py mc "$OUT/runs/$R") |"
          else
            echo "| $M_NAME | $lr | failed: $(failmsg "$R") | |"
          fi
        done
      done
      echo
      echo "Per epoch at each method's best lrate:"
      echo
      echo "| method | lrate | seed |$(epoch_cols)"
      echo "|---|---|---|$(printf -- '---|%.0s' $(seq "$EPOCHS"))"
      for m in sgd simple online; do
        set_m "$m"
        for seed in "${SEEDS[@]}"; do
          R=$(name1 "$ds" "$m" "${TR[$ds]}" "${BEST[$ds-$m]}" "$seed")
          if ok "$R"; then
            echo "| $M_NAME | ${BEST[$ds-$m]} | $seed | $(py cells "$OUT/runs/$R" $(seq "$EPOCHS")) |"
          else
            echo "| $M_NAME | ${BEST[$ds-$m]} | $seed | failed: $(failmsg "$R") |"
          fi
        done
      done
      local rs ro
      rs=$(name1 "$ds" sgd "${TR[$ds]}" "${BEST[$ds-sgd]}" 0); ro=$(name1 "$ds" online "${TR[$ds]}" "${BEST[$ds-online]}" 0)
      if ok "$rs" && ok "$ro"; then
        local tgt
        tgt=$(py objat "$OUT/runs/$rs" "$EPOCHS")
        echo
        echo "Online NG-SGD reaches plain SGD's epoch-$EPOCHS validation objective ($tgt, seed 0) after epoch" \
             "$(py reach "$OUT/runs/$ro" "$tgt") (\"-\": not within $EPOCHS epochs)."
      fi
    done
    echo
    echo "Runs: $OUT/runs/<ds>-1p-<method>-<transform>-lr<lrate>-s<seed>{,.log} (metrics.jsonl per iteration)."
  } >"$f"
  cat "$f"
  log "ng: $(( SECONDS - t0 )) s"
}

# ------------------------------------------------------------------ parallel (§5 claims 1-2)
# the J-job run: trainj DS METHOD EFF_LR J AVERAGING -> name in R (J = 1: the one-process run)
trainj() {
  local ds=$1 m=$2 lr=$3 J=$4 av=$5
  if ((J == 1)) && [[ $av == average ]]; then train1 "$ds" "$m" "$lr" 0 "${TR[$ds]}"; return; fi
  set_ds "$ds"; set_m "$m"
  R=$(namej "$ds" "$m" "$av" "$J" "$lr")
  run "$R" $((J + 1)) "${DA[@]}" "${MA[@]}" "${COMMON[@]}" --input-transform="${TR[$ds]}" --seed=0 \
    --num-jobs-initial="$J" --num-jobs-final="$J" --averaging="$av" \
    --initial-effective-lrate="$lr" --final-effective-lrate="$(lr_final "$lr")"
}

# a cost run with the coordinator's CPU sampled: cost_run NAME NP ARGS... (samples in NAME.cpu)
cost_run() {
  local name=$1 np=$2; shift 2
  local dir=$OUT/runs/$name key
  key="np=$np ngtrain=$BIN_KEY $*"
  if [[ -f $dir/metrics.jsonl && -f $dir.cpu && "$(<"$dir.key")" == "$key" ]]; then echo x >>"$OUT/.cached.$$"; return 0; fi
  echo x >>"$OUT/.ran.$$"
  rm -rf "$dir" "$dir.key" "$dir.log" "$dir.cpu"
  log "run $name (np $np, timing: keep the machine otherwise idle)"
  mpirun -np "$np" "$NGTRAIN" "$@" --dir="$dir" >"$dir.log" 2>&1 &
  local mp=$! c r p
  declare -A rk=()
  : >"$dir.cpu"
  while kill -0 "$mp" 2>/dev/null; do   # signal 0: only asks whether mpirun still runs
    if ((${#rk[@]} < np)); then
      for c in $(pgrep -P "$mp" -x ngtrain || true); do
        [[ -n ${rk[$c]:-} ]] && continue
        r=$(tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        [[ -n $r ]] && rk[$c]=$r
      done
    fi
    for p in "${!rk[@]}"; do
      [[ -r /proc/$p/stat ]] || continue
      awk -v t="$(date +%s.%N)" -v r="${rk[$p]}" '{print t, r, $14 + $15}' "/proc/$p/stat" >>"$dir.cpu" 2>/dev/null || true
    done
    sleep 1
  done
  local rc=0
  wait "$mp" || rc=$?
  if ((rc != 0)); then log "run $name FAILED (exit $rc):"; tail -n 4 "$dir.log" >&2; return "$rc"; fi
  echo "$key" >"$dir.key"
}

cmd_parallel() {
  local t0=$SECONDS load0 f=$RES/parallel.md ds m av J lr R1 o1
  load0=$(loadavg)
  reset_counts
  prep_data
  for ds in ex fm; do for m in sgd online; do search_lr "$ds" "$m"; done; done
  for ds in ex fm; do
    for m in sgd online; do for J in "${JOBS[@]}"; do trainj "$ds" "$m" "${BEST[$ds-$m]}" "$J" average || true; done; done
    # BMUF (Chen & Huo 2016): the local learners keep the 1-job learning rate (effective lrate =
    # best/J, so lr per job = best) and the block momentum 1 - 1/J supplies the factor J.
    for m in sgd online; do for J in "${JOBS[@]:1}"; do trainj "$ds" "$m" "$(py div "${BEST[$ds-$m]}" "$J")" "$J" bmuf || true; done; done
  done
  # -np 2 with one job must give the one-process model bit for bit (so the 1-job rows reuse it)
  set_ds ex; set_m online
  local same="no"
  run "ex-par-online-average-np2-lr${BEST[ex-online]}" 2 "${DA[@]}" "${MA[@]}" "${COMMON[@]}" --input-transform="${TR[ex]}" --seed=0 \
    --num-jobs-initial=1 --num-jobs-final=1 --initial-effective-lrate="${BEST[ex-online]}" \
    --final-effective-lrate="$(lr_final "${BEST[ex-online]}")" || true
  cmp -s "$OUT/runs/ex-par-online-average-np2-lr${BEST[ex-online]}/final.h5" \
    "$OUT/runs/$(name1 ex online "${TR[ex]}" "${BEST[ex-online]}" 0)/final.h5" && same="yes"

  # ---- cost: the speech-sized network on 40-dim speech-like data
  local d=$OUT/data/sp
  if [[ ! -f $d/train-0002.h5 ]]; then
    mkdir -p "$d"
    log "speech-like data: 40 dims, 667 phones x 3 states (build/mkdata)"
    "$BUILD/mkdata" --seed=1 --feat-dim=40 --num-phones=667 --num-utts=2000 --num-shards=2 --out="$d/train" >/dev/null
  fi
  local SPN nc
  SPN=$(frames_of "$d/train-*.h5")
  nc=$(h5dump -a /num_classes "$d/train-0001.h5" | sed -n 's/^ *(0): //p')
  # data/nnet-speech.cfg says output dim=2000; mkdata makes 3 x phones classes (2001), so copy it
  sed "s/^output  *dim=[0-9]*/output dim=$nc/" data/nnet-speech.cfg >"$OUT/speech.cfg"
  printf '%s\n' "# a small 40-dim network for the direct default-settings run (evidence/run.sh)" \
    "input  dim=40 context=-5..5" "layer  type=relu-renorm dim=256" "layer  type=relu-renorm dim=256" \
    "output dim=$nc" >"$OUT/speech-small.cfg"
  local CA=(--config="$OUT/speech.cfg" "--train=$d/train-*.h5" --input-transform=none
            --do-final-combination=false --combine-frames=2000 --prior-subset-size=2000 --progress=0
            --minibatch-size=512 --samples-per-iter="$COST_S")
  local ep
  ep=$(py div "$((6 * COST_S))".5 "$SPN")   # 6 x COST_S frames in all: 6 iterations of 1 job, 3 of 2
  cost_run cost-speech-J1 2 "${CA[@]}" --num-epochs="$ep" --num-jobs-initial=1 --num-jobs-final=1
  cost_run cost-speech-J2 3 "${CA[@]}" --num-epochs="$ep" --num-jobs-initial=2 --num-jobs-final=2
  if ((DIRECT)); then   # the default --samples-per-iter=400000 measured directly: 2 iterations of 2 jobs
    ep=$(py div 1600000.5 "$SPN")
    cost_run cost-small-default-J2 3 --config="$OUT/speech-small.cfg" "--train=$d/train-*.h5" \
      --input-transform=none --do-final-combination=false --combine-frames=2000 --prior-subset-size=2000 \
      --progress=0 --num-epochs="$ep" --num-jobs-initial=2 --num-jobs-final=2
  fi

  {
    results_header "Parallel training with periodic model averaging (docs/algorithm.md §5 claims 1 and 2)" "$t0" "$load0"
    echo
    echo "Setup: as docs/results/ng.md (same data, network, $EPOCHS epochs, minibatch 512, --samples-per-iter ="
    echo "frames/$ITERS_PER_EPOCH per job, lda on the example data and cmvn on Fashion-MNIST, final lrate ="
    echo "initial/10, no final combination, seed 0). J jobs ="
    echo "\`mpirun -np J+1\` with --num-jobs-initial=J --num-jobs-final=J, so an epoch is $ITERS_PER_EPOCH/J iterations;"
    echo "each method keeps its best 1-job initial effective lrate (docs/results/ng.md) for every J, and"
    echo "each job uses J x that (§4.2). Iteration 0 keeps the best job's model instead of the mean (§4.3)."
    echo "BMUF: --averaging=bmuf, block momentum 1 - 1/J, block lr 1, Nesterov; its effective lrate is"
    echo "best/J, so each job runs at the 1-job learning rate (Chen & Huo's setting; the momentum supplies"
    echo "the factor J). The 1-job rows are the one-process runs: \`mpirun -np 2\` with one job gave a"
    echo "bit-identical final.h5 on the example data: $same."
    echo "Cells: validation objective / frame accuracy; Δ = objective after $EPOCHS epochs minus the 1-job one"
    echo "of the same optimizer; max-change: % of component updates clipped / % of steps clipped by"
    echo "--max-param-change, mean over iterations; left out: WARN lines (a job left out of the average);"
    echo "note: flagged when the objective after the last epoch is worse than after epoch 1."
    for ds in ex fm; do
      set_ds "$ds"
      echo
      echo "## $DS_NAME"
      echo
      echo "| optimizer | averaging | jobs | eff. lrate | lr per job | after epoch 1 | after epoch $EPOCHS | Δ obj | max-change % | left out | note |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|"
      for av in average bmuf; do for m in sgd online; do
        set_m "$m"
        R1=$(name1 "$ds" "$m" "${TR[$ds]}" "${BEST[$ds-$m]}" 0)
        o1=$(py obj "$OUT/runs/$R1")
        for J in "${JOBS[@]}"; do
          [[ $av == bmuf ]] && ((J == 1)) && continue
          lr=${BEST[$ds-$m]}; [[ $av == bmuf ]] && lr=$(py div "$lr" "$J")
          R=$(namej "$ds" "$m" "$av" "$J" "$lr")
          local lpj; lpj=$(awk -v a="$lr" -v j="$J" 'BEGIN{printf "%.6g", a*j}')
          if ok "$R"; then
            local oN; oN=$(py obj "$OUT/runs/$R")
            echo "| $M_NAME | $av | $J | $lr | $lpj | $(py cells "$OUT/runs/$R" 1 "$EPOCHS") | $(awk -v a="$oN" -v b="$o1" 'BEGIN{printf "%+.4f", a-b}') | $(py mc "$OUT/runs/$R") | $(nwarn "$R") | $(py flag "$OUT/runs/$R") |"
          else
            echo "| $M_NAME | $av | $J | $lr | $lpj | failed: $(failmsg "$R") | | | | | |"
          fi
        done
      done; done
    done
    echo
    echo "## Cost (speech-sized network)"
    echo
    local c1 c2 a b
    read -r -a c1 <<<"$(py cost "$OUT/runs/cost-speech-J1")"
    read -r -a c2 <<<"$(py cost "$OUT/runs/cost-speech-J2")"
    echo "Network \`$OUT/speech.cfg\` = data/nnet-speech.cfg (440 -> 4 x relu-renorm 1024 -> $nc; the output is"
    echo "$nc, not 2000, because build/mkdata makes 3 classes per phone), $(grep -m1 -o '[0-9]* parameters' "$OUT/runs/cost-speech-J2.log"),"
    echo "online NG-SGD, minibatch 512, --input-transform=none, on $SPN frames of 40-dim speech-like data"
    echo "(build/mkdata --feat-dim=40 --num-phones=667). Coordinator diagnostics on a 2000-frame training"
    echo "subset (no --valid). --samples-per-iter=$COST_S instead of the default 400000 (one iteration at the"
    echo "default takes 400000 / frames-per-s-per-worker = $(awk -v f="${c2[3]}" 'BEGIN{printf "%.0f", 400000/f}') s here); the averaging time does"
    echo "not depend on it, so the default's fraction is computed from the measured averaging time and"
    echo "throughput$( ((DIRECT)) && echo ", and measured directly with a smaller network below")."
    echo "Iteration 0 (half minibatch, best job kept) is left out of the medians."
    echo
    echo "| run | iterations (>= 1) | frames/s, all workers | frames/s per worker | iteration s (median) | avg_s (median) | coordinator wait comm_s (median) |"
    echo "|---|---|---|---|---|---|---|"
    echo "| mpirun -np 2, 1 job | ${c1[7]} | ${c1[2]} | ${c1[3]} | ${c1[6]} | ${c1[4]} | ${c1[5]} |"
    echo "| mpirun -np 3, 2 jobs | ${c2[7]} | ${c2[2]} | ${c2[3]} | ${c2[6]} | ${c2[4]} | ${c2[5]} |"
    echo
    a=$(awk -v x="${c2[4]}" -v it="${c2[6]}" 'BEGIN{printf "%.2f", 100*x/it}')
    b=$(awk -v x="${c2[4]}" -v f="${c2[3]}" 'BEGIN{printf "%.3f", 100*x/(400000/f + x)}')
    echo "- Averaging time / iteration time, 2 jobs: measured $a % at --samples-per-iter=$COST_S; at the"
    echo "  default 400000: avg_s / (400000 / frames-per-s-per-worker + avg_s) = **$b %** (goal < 1 %)."
    if ((DIRECT)); then
      local c3; read -r -a c3 <<<"$(py cost "$OUT/runs/cost-small-default-J2")"
      echo "- Measured directly at the default settings (--samples-per-iter=400000, minibatch 512, 2 jobs,"
      echo "  \`$OUT/speech-small.cfg\`: 440 -> 2 x relu-renorm 256 -> $nc, $(grep -m1 -o '[0-9]* parameters' "$OUT/runs/cost-small-default-J2.log"),"
      echo "  iteration 1): avg_s ${c3[4]} s of ${c3[6]} s = **$(awk -v x="${c3[4]}" -v it="${c3[6]}" 'BEGIN{printf "%.3f", 100*x/it}') %**."
    fi
    local w1 w2
    w1=$(py workcpu "$OUT/runs/cost-speech-J1.cpu" "$(getconf CLK_TCK)")
    w2=$(py workcpu "$OUT/runs/cost-speech-J2.cpu" "$(getconf CLK_TCK)")
    echo "- Speed-up from 1 to 2 workers on $(nproc) cores, same total frames ($((6 * COST_S))), iterations >= 1:"
    echo "  ${c1[2]} -> ${c2[2]} frames/s = **x$(awk -v a="${c1[2]}" -v b="${c2[2]}" 'BEGIN{printf "%.2f", b/a}')** (whole runs incl. start-up: $(awk -v a="$(grep -o '[0-9.]* s in all' "$OUT/runs/cost-speech-J1.log" | cut -d' ' -f1)" -v b="$(grep -o '[0-9.]* s in all' "$OUT/runs/cost-speech-J2.log" | cut -d' ' -f1)" 'BEGIN{printf "%.1f s -> %.1f s", a, b}'))."
    echo "  The workers got $w1 and $w2 CPUs in all (median of the 1-s windows; others' jobs share the"
    echo "  machine), i.e. $(awk -v f="${c1[2]}" -v w="$w1" 'BEGIN{printf "%.0f", f/w}') and $(awk -v f="${c2[2]}" -v w="$w2" 'BEGIN{printf "%.0f", f/w}') frames per worker-CPU-second; with a whole core per"
    echo "  worker that would be a speed-up of 2 x $(awk -v f1="${c1[2]}" -v w1="$w1" -v f2="${c2[2]}" -v w2="$w2" 'BEGIN{printf "%.0f / %.0f = x%.2f", f2/w2, f1/w1, 2*(f2/w2)/(f1/w1)}') (an estimate, not a measurement)."
    local cpu r
    echo "- CPU use per rank during the 2-job run (/proc/<pid>/stat utime+stime, sampled every second; rank 0"
    echo "  is the coordinator: it checkpoints, evaluates the 2000-frame subset, averages, and otherwise waits"
    echo "  in MPI_Test + nanosleep). Mean over the whole run / median of the 1-s windows:"
    for r in $(py cpu "$OUT/runs/cost-speech-J2.cpu" "$(getconf CLK_TCK)"); do
      IFS=: read -r -a cpu <<<"$r"
      echo "  rank ${cpu[0]}: ${cpu[1]} % / **${cpu[2]} %** (${cpu[3]} s sampled)"
    done
    if ((DIRECT)); then
      echo "  In the direct default-settings run: $(for r in $(py cpu "$OUT/runs/cost-small-default-J2.cpu" "$(getconf CLK_TCK)"); do IFS=: read -r -a cpu <<<"$r"; printf 'rank %s %s %% / %s %%; ' "${cpu[0]}" "${cpu[1]}" "${cpu[2]}"; done)"
    fi
    echo
    echo "Runs: $OUT/runs/<ds>-par-*, $OUT/runs/cost-* (.log, .cpu = time rank cpu-ticks samples)."
  } >"$f"
  cat "$f"
  log "parallel: $(( SECONDS - t0 )) s"
}

# ------------------------------------------------------------------ transform (§4.9)
cmd_transform() {
  local t0=$SECONDS load0 f=$RES/transform.md ds m tr
  load0=$(loadavg)
  reset_counts
  prep_data
  for ds in ex fm; do for m in sgd online; do search_lr "$ds" "$m"; done; done
  for ds in ex fm; do for m in sgd online; do for tr in none cmvn lda; do
    train1 "$ds" "$m" "${BEST[$ds-$m]}" 0 "$tr" || true
  done; done; done
  {
    results_header "Input transform: none, cmvn, lda (docs/algorithm.md §4.9)" "$t0" "$load0"
    echo
    echo "Setup: as docs/results/ng.md (one process, $EPOCHS epochs, minibatch 512, final lrate = initial/10, no final"
    echo "combination, seed 0), each optimizer at its best initial lrate from docs/results/ng.md, found with"
    echo "lda on the example data and with cmvn on Fashion-MNIST (those are favoured: the others were not"
    echo "tuned). Cells: validation objective / frame accuracy; max-change as"
    echo "in docs/results/ng.md; warnings: WARN lines in the log (retries, jobs left out); note: flagged when the"
    echo "objective after the last epoch is worse than after epoch 1."
    for ds in ex fm; do
      set_ds "$ds"
      echo
      echo "## $DS_NAME"
      echo
      echo "| optimizer | lrate | transform | after epoch 1 | after epoch $EPOCHS | max-change % | warnings | note |"
      echo "|---|---|---|---|---|---|---|---|"
      for m in sgd online; do
        set_m "$m"
        for tr in none cmvn lda; do
          R=$ds-1p-$m-$tr-lr${BEST[$ds-$m]}-s0
          if ok "$R"; then
            echo "| $M_NAME | ${BEST[$ds-$m]} | $tr | $(py cells "$OUT/runs/$R" 1 "$EPOCHS") | $(py mc "$OUT/runs/$R") | $(nwarn "$R") | $(py flag "$OUT/runs/$R") |"
          else
            echo "| $M_NAME | ${BEST[$ds-$m]} | $tr | failed: $(failmsg "$R") | | | $(nwarn "$R") | |"
          fi
        done
      done
    done
    echo
    echo "Prior-scaled output init (nnet3's presoftmax_prior_scale): not implemented, not measured."
    echo
    echo "Runs: $OUT/runs/<ds>-1p-<method>-<transform>-lr<lrate>-s0{,.log}."
  } >"$f"
  cat "$f"
  log "transform: $(( SECONDS - t0 )) s"
}

# ------------------------------------------------------------------ ramp (data coverage, §4.1-4.2)
# passes over the data per shard, "min / median / max": from the log's closing coverage line
# when the build prints one, else computed for the old fixed ownership (worker w reads shards
# w, w+W, ...; in an iteration of n jobs workers 0..n-1 each read --samples-per-iter frames).
coverage() {
  local dir=$1 W=$2 glob=$3 line
  line=$(grep -m1 -o "passes over the data per shard: .*" "$dir.log" 2>/dev/null \
         | sed 's/^passes over the data per shard: *//; s/ (\([0-9]*\) shard(s); \([0-9]*\) archive reads of \([0-9]*\) archives.*/ (\2 reads of \3 archives)/') || true
  if [[ -n $line ]]; then echo "$line"; return; fi
  local sizes=() f
  for f in $glob; do sizes+=("$(frames_of "$f")"); done
  "$PY" - "$dir/metrics.jsonl" "$W" "${sizes[@]}" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
W = int(sys.argv[2]); sizes = [int(x) for x in sys.argv[3:]]
spi = rows[0]["frames"] / rows[0]["jobs"] if rows else 0
own = {w: [s for s in range(len(sizes)) if s % W == w] for w in range(W)}
passes = []
for w in range(W):
    frames = sum(sizes[s] for s in own[w])
    iters = sum(1 for r in rows if r["jobs"] > w)
    passes += [iters * spi / frames if frames else 0.0] * len(own[w])
print("%.2f / %.2f / %.2f (fixed ownership, computed)" % (min(passes), statistics.median(passes), max(passes)))
PYEOF
}
cmd_ramp() {
  local t0=$SECONDS load0 label=${LABEL:-$(git rev-parse --short HEAD)} ds m J kind ji R lr o1
  local f=$RES/ramp-$label.md
  load0=$(loadavg)
  reset_counts
  prep_data
  # the best 1-job initial effective lrates of docs/results/ng.md (factor-2 grid, seed 0)
  declare -A LR=([ex-sgd]=0.002 [ex-online]=0.004 [fm-sgd]=0.001 [fm-online]=0.002)
  for ds in ex fm; do for m in sgd online; do for J in "${JOBS[@]}"; do for kind in const ramp; do
    ((J == 1)) && [[ $kind == ramp ]] && continue
    set_ds "$ds"; set_m "$m"; lr=${LR[$ds-$m]}; ji=$J; [[ $kind == ramp ]] && ji=1
    run "ramp-$label-$ds-$m-J$J-$kind" $((J + 1)) "${DA[@]}" "${MA[@]}" "${COMMON[@]}" --input-transform="${TR[$ds]}" \
      --seed=0 --num-jobs-initial="$ji" --num-jobs-final="$J" --initial-effective-lrate="$lr" \
      --final-effective-lrate="$(lr_final "$lr")" || true
  done; done; done; done
  {
    results_header "Data coverage under the job ramp ($label)" "$t0" "$load0" "build: $NGTRAIN ($("$NGTRAIN" --help 2>/dev/null | grep -c -- '--data-placement' | sed 's/^0$/no --data-placement option: fixed shard ownership/;s/^[1-9].*$/--data-placement=shared (default)/'))"
    echo
    echo "Setup: as docs/results/parallel.md ($EPOCHS epochs, minibatch 512, --samples-per-iter = frames/$ITERS_PER_EPOCH,"
    echo "lda on the example data, cmvn on Fashion-MNIST, final lrate = initial/10, no final combination,"
    echo "seed 0, 8 shards, \`mpirun -np J+1\`: J workers). const: --num-jobs-initial=J --num-jobs-final=J;"
    echo "ramp: --num-jobs-initial=1 --num-jobs-final=J (Kaldi's default). Cells: validation objective /"
    echo "frame accuracy; Δ = objective after $EPOCHS epochs minus the 1-job run's; passes: how often each"
    echo "shard's frames were read, min / median / max over the 8 shards (every one should be $EPOCHS)."
    for ds in ex fm; do
      set_ds "$ds"
      echo
      echo "## $DS_NAME"
      echo
      echo "| optimizer | jobs | ramp | iterations | after epoch 1 | after epoch $EPOCHS | Δ obj | passes per shard (min / median / max) |"
      echo "|---|---|---|---|---|---|---|---|"
      for m in sgd online; do
        set_m "$m"
        o1=$(py obj "$OUT/runs/ramp-$label-$ds-$m-J1-const")
        for J in "${JOBS[@]}"; do for kind in const ramp; do
          ((J == 1)) && [[ $kind == ramp ]] && continue
          R=ramp-$label-$ds-$m-J$J-$kind
          local k; k=$([[ $kind == ramp ]] && echo "1 → $J" || echo "$J")
          if ok "$R"; then
            echo "| $M_NAME | $J | $k | $(wc -l <"$OUT/runs/$R/metrics.jsonl") | $(py cells "$OUT/runs/$R" 1 "$EPOCHS") | $(awk -v a="$(py obj "$OUT/runs/$R")" -v b="$o1" 'BEGIN{printf "%+.4f", a-b}') | $(coverage "$OUT/runs/$R" "$J" "$OUT/data/$ds/train-*.h5") |"
          else
            echo "| $M_NAME | $J | $k | | failed: $(failmsg "$R") | | | |"
          fi
        done; done
      done
    done
    echo
    echo "Runs: $OUT/runs/ramp-$label-<ds>-<method>-J<jobs>-<const|ramp>{,.log}."
  } >"$f"
  cat "$f"
  log "ramp: $(( SECONDS - t0 )) s"
}

# ------------------------------------------------------------------ precision (bf16 vs fp32)
cmd_precision() {
  local t0=$SECONDS load0 f=$RES/precision.md ds m J p R lr
  load0=$(loadavg)
  reset_counts
  prep_data
  "$NGTRAIN" --help | grep -q -- '--precision' || { log "$NGTRAIN has no --precision option"; exit 1; }
  declare -A LR=([ex-sgd]=0.002 [ex-online]=0.004 [fm-sgd]=0.001 [fm-online]=0.002)
  local PJ=(1 4)
  for ds in ex fm; do for m in sgd online; do for J in "${PJ[@]}"; do for p in fp32 bf16; do
    set_ds "$ds"; set_m "$m"; lr=${LR[$ds-$m]}
    run "prec-$ds-$m-J$J-$p" $((J + 1)) "${DA[@]}" "${MA[@]}" "${COMMON[@]}" --input-transform="${TR[$ds]}" \
      --seed=0 --num-jobs-initial="$J" --num-jobs-final="$J" --precision="$p" \
      --initial-effective-lrate="$lr" --final-effective-lrate="$(lr_final "$lr")" || true
  done; done; done; done
  {
    results_header "bf16 against fp32: the same learning" "$t0" "$load0" "compute line of a bf16 run: \"$(grep -m1 -o 'compute: .*' "$OUT/runs/prec-ex-sgd-J1-bf16.log" 2>/dev/null)\""
    echo
    echo "Setup: as docs/results/parallel.md ($EPOCHS epochs, minibatch 512, --samples-per-iter = frames/$ITERS_PER_EPOCH,"
    echo "lda on the example data, cmvn on Fashion-MNIST, final lrate = initial/10, no final combination,"
    echo "seed 0, \`mpirun -np J+1\` with J jobs constant), each method at its best 1-job lrate of docs/results/ng.md."
    echo "The same command twice, --precision=fp32 and --precision=bf16 (oneDNN matmul, bf16 operands, fp32"
    echo "accumulation; master weights, update, NG statistics and averaging in fp32). Cells: validation"
    echo "objective / frame accuracy after each epoch; Δ = bf16 − fp32 objective after epoch $EPOCHS (goal: |Δ| ≤ 0.01)."
    for ds in ex fm; do
      set_ds "$ds"
      echo
      echo "## $DS_NAME"
      echo
      echo "| optimizer | jobs | precision |$(epoch_cols) Δ obj |"
      echo "|---|---|---|$(for ((k = 1; k <= EPOCHS; k++)); do printf -- '---|'; done)---|"
      for m in sgd online; do
        set_m "$m"
        for J in "${PJ[@]}"; do for p in fp32 bf16; do
          R=prec-$ds-$m-J$J-$p
          local cols="" k d=""
          if ok "$R"; then
            cols=$(py cells "$OUT/runs/$R" $(seq 1 "$EPOCHS"))
            if [[ $p == bf16 ]] && ok "prec-$ds-$m-J$J-fp32"; then
              d=$(awk -v a="$(py obj "$OUT/runs/$R")" -v b="$(py obj "$OUT/runs/prec-$ds-$m-J$J-fp32")" 'BEGIN{printf "%+.4f", a-b}')
            fi
            echo "| $M_NAME | $J | $p | $cols | $d |"
          else
            echo "| $M_NAME | $J | $p | failed: $(failmsg "$R") |"
          fi
        done; done
      done
    done
    echo
    echo "Runs: $OUT/runs/prec-<ds>-<method>-J<jobs>-<precision>{,.log}."
  } >"$f"
  cat "$f"
  log "precision: $(( SECONDS - t0 )) s"
}

case $CMD in
  ng) cmd_ng ;;
  parallel) cmd_parallel ;;
  transform) cmd_transform ;;
  ramp) cmd_ramp ;;
  precision) cmd_precision ;;
  all) T0=$SECONDS
       cmd_ng; echo; cmd_parallel; echo; cmd_transform
       log "all: $(( SECONDS - T0 )) s; results in $RES/{ng,parallel,transform}.md" ;;
esac
