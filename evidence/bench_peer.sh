#!/usr/bin/env bash
# bench_peer — ngtrain's training step vs PyTorch (Debian's python3-torch) on the same
# network, minibatch, thread count and BLAS kernel, fp32 and bf16, measured in one run.
# PyTorch bf16 is torch.autocast("cpu", dtype=torch.bfloat16) with plain SGD; ngtrain's
# bf16 is --precision=bf16 (oneDNN matmul). Goals: bf16 ngtrain with online NG
# >= 1.2 x PyTorch autocast-bf16 plain SGD; fp32 ngtrain with NG >= 1.1 x PyTorch fp32. The NG
# rate is the amortised one (one Fisher-update step in four, as in training).
# Usage: bench_peer.sh BUILD_DIR [threads...]   (meson passes BUILD_DIR; threads default
# "1 2" on a machine with >= 2 cores). Skips (exit 77) without torch.
set -euo pipefail
B=$1
shift
S=$(cd "$(dirname "$0")/.." && pwd)
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "bench_peer: python3-torch is not installed (apt-get install python3-torch); skipping"
  exit 77
fi
TLIST=("$@")
if ((${#TLIST[@]} == 0)); then
  if (($(nproc) >= 2)); then TLIST=(1 2); else TLIST=(1); fi
fi
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for T in "${TLIST[@]}"; do
  export OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T
  echo "== threads $T =="
  ours=$("$B/bench_step" "" 12 all "$T")
  echo "$ours"
  peer=$(/usr/bin/python3 "$S/evidence/peer_torch.py" 12 "$T")
  echo "$peer"
  for P in fp32 bf16; do
    for N in 256 512; do
      a=$(awk -v p=$P -v n=$N '$1==p && $2=="minibatch" && $3==n":" {f=1} f && /plain step/ {print $5; exit}' <<<"$ours")
      g=$(awk -v p=$P -v n=$N '$1==p && $2=="minibatch" && $3==n":" {f=1} f && /NG amortised/ {print $5; exit}' <<<"$ours")
      p=$(awk -v p="$P" -v n="$N" '$1=="peer" && $2==p && $3==n {print $4}' <<<"$peer")
      if [[ -z $a || -z $p ]]; then echo "$P minibatch $N: not measured (precision unavailable)"; continue; fi
      awk -v P="$P" -v T="$T" -v n="$N" -v a="$a" -v g="$g" -v p="$p" 'BEGIN{printf "%s threads %d minibatch %d: ngtrain plain %.0f, ngtrain NG %.0f (amortised), PyTorch plain %.0f frames/s; ngtrain/PyTorch %.2f (plain), %.2f (NG)\n", P, T, n, a, g, p, a/p, g/p}'
    done
  done
done
