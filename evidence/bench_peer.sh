#!/usr/bin/env bash
# bench_peer — ngtrain's training step vs PyTorch (Debian's python3-torch) on the same
# network, minibatch and BLAS kernel, one thread each, measured in one run.
# Usage: bash evidence/bench_peer.sh BUILD_DIR (`meson test -C build --benchmark peer` passes
# it). Skips (exit 77) without torch.
set -euo pipefail
B=$1
S=$(cd "$(dirname "$0")/.." && pwd)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "bench_peer: python3-torch is not installed (apt-get install python3-torch); skipping"
  exit 77
fi
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
ours=$("$B/bench_step" "" 12)
echo "$ours"
peer=$(/usr/bin/python3 "$S/evidence/peer_torch.py" 12)
echo "$peer"
for N in 256 512; do
  a=$(awk -v n=$N '$1=="minibatch" && $2==n":" {f=1} f && /plain step/ {print $5; exit}' <<<"$ours")
  g=$(awk -v n=$N '$1=="minibatch" && $2==n":" {f=1} f && /online NG step/ {print $6; exit}' <<<"$ours")
  p=$(awk -v n=$N '$1=="peer" && $2==n {print $3}' <<<"$peer")
  awk -v n=$N -v a="$a" -v g="$g" -v p="$p" 'BEGIN{printf "minibatch %d: ngtrain plain %.0f, ngtrain NG %.0f, PyTorch plain %.0f frames/s; ngtrain/PyTorch %.2f (plain), %.2f (NG)\n", n, a, g, p, a/p, g/p}'
done
