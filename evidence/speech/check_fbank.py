#!/usr/bin/python3
"""check_fbank.py — mkcorpus.fbank against torchaudio.compliance.kaldi.fbank (Debian's
python3-torchaudio, a re-implementation of Kaldi's compute-fbank) with dither 0."""
import os
import sys

import numpy as np
import torch
import torchaudio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkcorpus  # noqa: E402

rng = np.random.default_rng(0)
worst = 0.0
for n in (400, 401, 16000, 32123):
    x = np.round(rng.standard_normal(n) * 1000 + np.sin(np.arange(n) * 0.3) * 3000)
    a = mkcorpus.fbank(x)
    b = torchaudio.compliance.kaldi.fbank(torch.tensor(x, dtype=torch.float64)[None],
                                          num_mel_bins=40, dither=0.0, energy_floor=0.0,
                                          sample_frequency=16000).numpy()
    assert a.shape == b.shape, (a.shape, b.shape)
    worst = max(worst, float(np.abs(a - b).max()))
print("fbank vs torchaudio kaldi.fbank: max |diff| %.2e (log-mel values ~20)" % worst)
sys.exit(0 if worst < 1e-3 else 1)
