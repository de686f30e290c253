#!/bin/bash
# mkcorpus.sh — install the Debian packages mkcorpus.py needs, build mkshards, then run
# mkcorpus.py at low priority; extra arguments go to mkcorpus.py.
#   bash evidence/speech/mkcorpus.sh --out=/tmp/sp --hours=0.05 --seed=1
#   nohup bash evidence/speech/mkcorpus.sh --out=/work/speech-corpus --hours=3 --seed=1 \
#         --num-shards=16 > /work/speech-corpus.log 2>&1 &
# Rerunning the same command resumes: finished speakers are cached in OUT/work/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
need=""
for p in python3-numpy python3-h5py flite festival festvox-kallpc16k \
         festvox-kdlpc16k festvox-us-slt-hts sox wamerican meson ninja-build; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  # shellcheck disable=SC2086  # a list of package names, split on purpose
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need; }
fi
if [ ! -x "$repo/build/mkshards" ]; then
  [ -d "$repo/build" ] || meson setup "$repo/build" "$repo" --buildtype=release
  ninja -C "$repo/build" mkshards
fi
exec nice -n 10 /usr/bin/python3 "$here/mkcorpus.py" --mkshards="$repo/build/mkshards" "$@"
