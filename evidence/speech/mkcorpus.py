#!/usr/bin/python3
"""mkcorpus.py — a speech-like corpus made from what Debian ships.

Text-to-speech engines that report phone timings (flite -psdur, festival utt.save.segs)
speak sentences from a deterministic word-list generator in many "speakers" (voice, duration
stretch, vocal-tract-like resampling, pitch shift, spectral tilt, gain); noise at several SNRs
(white / pink / babble of other utterances) and synthetic reverberation are added; 40-dim
log-mel filterbanks are computed in numpy with Kaldi's framing; features are mean-normalised
per speaker; frames are labelled with context-dependent phone states (3 states per phone,
triphone states backed off by count to left-biphone and monophone states); train / dev / test
have disjoint speakers AND disjoint sentences; the arrays go through the project's mkshards
into HDF5 shards.

  python3 evidence/speech/mkcorpus.py --out=/tmp/sp --hours=0.05 --seed=1
  -> /tmp/sp/shards/train-001.h5 .. , dev-001.h5, test-001.h5, stats.json, stats.txt

Everything is a function of --seed (and the sizes): the same seed gives identical shards.
Per-speaker work is cached under OUT/work/ (resumable; progress = files there).
"""
import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

SR = 16000
FRAME_LEN = 400   # 25 ms
FRAME_SHIFT = 160  # 10 ms
NFFT = 512
NUM_MEL = 40
SPLITS = ("train", "dev", "test")
SPLIT_CODE = {"train": 0, "dev": 1, "test": 2, "babble": 3}

# (engine, voice) pairs; all speak the CMU/radio US-English phone set
VOICES = [
    ("flite", "kal"), ("flite", "kal16"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
    ("festival", "voice_kal_diphone"), ("festival", "voice_ked_diphone"),
    ("festival", "voice_cmu_us_slt_arctic_hts"),
]

FUNCTION_WORDS = (
    "the a an of to in on at by for with from into over under after before and or but "
    "is was are were will would can could should may might must has have had do does did "
    "not no this that these those he she it we they you i his her its our their my your "
    "very more most some any many few all each every one two three four five six seven "
    "eight nine ten first last next near far up down out off again then there here when "
    "where why how what which who whom while because if so than too also only just still"
).split()


# ------------------------------------------------------------------------------ text
def load_vocab(seed, size):
    """Content words: /usr/share/dict/words (wamerican), lowercase a-z, 3..10 letters;
    a seed-fixed subset of `size` words with a Zipf-like frequency by rank."""
    path = "/usr/share/dict/words"
    words = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for w in f:
            w = w.strip()
            if re.fullmatch(r"[a-z]{3,10}", w):
                words.append(w)
    words = sorted(set(words) - set(FUNCTION_WORDS))
    rng = np.random.default_rng([seed, 7777])
    idx = rng.choice(len(words), size=min(size, len(words)), replace=False)
    return [words[i] for i in idx]  # random order = random Zipf rank


def make_sentence(seed, pool, i, vocab, zipf_p):
    """Sentence i of pool `pool`: 5..14 words, function words with p=0.35, otherwise a
    content word drawn Zipf-like from the vocabulary."""
    rng = np.random.default_rng([seed, 1000 + pool, i])
    n = int(rng.integers(5, 15))
    out = []
    for _ in range(n):
        if rng.random() < 0.35:
            out.append(FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))])
        else:
            out.append(vocab[int(rng.choice(len(vocab), p=zipf_p))])
    return " ".join(out)


def sentence_pools(seed, counts, vocab):
    """Disjoint sentence lists per split (a sentence string never in two splits)."""
    ranks = np.arange(1, len(vocab) + 1, dtype=np.float64)
    p = 1.0 / ranks ** 0.8
    p /= p.sum()
    seen, pools = set(), {}
    for split in ("test", "dev", "train", "babble"):  # held-out first: train avoids them
        out, i = [], 0
        while len(out) < counts[split]:
            s = make_sentence(seed, SPLIT_CODE[split], i, vocab, p)
            i += 1
            if s in seen:
                continue
            seen.add(s)
            out.append(s)
        pools[split] = out
    return pools


# ------------------------------------------------------------------------------ speakers
def speaker_params(seed, split, k):
    rng = np.random.default_rng([seed, 50 + SPLIT_CODE[split], k])
    # voices spread evenly over speakers (a seed-fixed rotation), then per-speaker variation
    off = int(np.random.default_rng([seed, 51]).integers(len(VOICES)))
    eng, voice = VOICES[(k + off + 3 * SPLIT_CODE[split]) % len(VOICES)]
    return {
        "split": split, "index": k, "spk": "%s-s%04d" % (split, k),
        "engine": eng, "voice": voice,
        "stretch": float(rng.uniform(0.85, 1.25)),     # duration stretch in the engine
        "alpha": float(rng.uniform(0.88, 1.14)),       # resampling: formants x alpha, time / alpha
        "cents": float(np.clip(rng.normal(0, 180), -400, 400)),  # pitch shift, duration kept
        "tilt": float(rng.uniform(-0.5, 0.5)),         # first-order spectral tilt
        "gain_db": float(rng.uniform(-6, 6)),
    }


# ------------------------------------------------------------------------------ audio
def read_wav(path):
    with wave.open(path, "rb") as w:
        n, sr, ch, sw = w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(n)
    assert sw == 2, path
    x = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return x, sr


def synth_flite(voice, stretch, text, tmp):
    wav = os.path.join(tmp, "f.wav")
    out = subprocess.run(["flite", "-voice", voice, "--setf", "duration_stretch=%.4f" % stretch,
                          "-psdur", "-t", text, "-o", wav],
                         check=True, capture_output=True, text=True).stdout
    segs = []
    for tok in out.split():
        ph, _, t = tok.rpartition(":")
        segs.append((ph, float(t)))
    return wav, segs


def synth_festival_batch(voice, stretch, texts, tmp):
    """One festival process for all of a speaker's sentences."""
    scm = [f"({voice})", f"(Parameter.set 'Duration_Stretch {stretch:.4f})"]
    for j, t in enumerate(texts):
        t = t.replace('"', "")
        scm.append(f'(set! u (Utterance Text "{t}"))(utt.synth u)'
                   f'(utt.save.wave u "{tmp}/u{j}.wav" \'riff)(utt.save.segs u "{tmp}/u{j}.segs")')
    with open(os.path.join(tmp, "s.scm"), "w") as f:
        f.write("\n".join(scm) + "\n")
    subprocess.run(["festival", "-b", os.path.join(tmp, "s.scm")], check=True,
                   capture_output=True)
    res = []
    for j in range(len(texts)):
        segs = []
        with open(f"{tmp}/u{j}.segs") as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and p[0] != "#":
                    segs.append((p[2], float(p[0])))
        res.append((f"{tmp}/u{j}.wav", segs))
    return res


def sox_voice(wav_in, alpha, cents, tmp):
    """Vocal-tract-like resampling (sox speed: formants and pitch x alpha, time / alpha),
    then a pitch shift that keeps the duration; output 16 kHz."""
    out = os.path.join(tmp, "v.wav")
    subprocess.run(["sox", "-D", wav_in, "-r", str(SR), "-b", "16", out,
                    "speed", "%.5f" % alpha, "pitch", "%.1f" % cents, "rate", "-h", str(SR)],
                   check=True, capture_output=True)
    x, sr = read_wav(out)
    assert sr == SR
    return x


def pink_noise(rng, n):
    w = rng.standard_normal(n)
    X = np.fft.rfft(w)
    f = np.arange(len(X), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(X / np.sqrt(f), n)
    return y / (y.std() + 1e-12)


def reverb(rng, x):
    rt60 = rng.uniform(0.15, 0.6)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    h = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # -60 dB at rt60
    h[: int(0.002 * SR)] *= 0.0
    h[0] = 1.0  # direct path
    h /= np.sqrt(np.sum(h ** 2))
    y = np.fft.irfft(np.fft.rfft(x, len(x) + n) * np.fft.rfft(h, len(x) + n))[: len(x)]
    return y, rt60


def corrupt(rng, x, babble):
    """-> x', description. SNR in {clean, 20, 15, 10, 5} dB; noise white / pink / babble;
    reverberation with p=0.3."""
    desc = {}
    if rng.random() < 0.3:
        x, rt = reverb(rng, x)
        desc["rt60"] = round(float(rt), 3)
    snr = [None, 20, 15, 10, 5][int(rng.choice(5, p=[0.2, 0.2, 0.2, 0.2, 0.2]))]
    if snr is not None:
        kind = ["white", "pink", "babble"][int(rng.integers(3))]
        n = len(x)
        if kind == "white":
            v = rng.standard_normal(n)
        elif kind == "pink":
            v = pink_noise(rng, n)
        else:
            v = np.zeros(n)
            for _ in range(3):
                b = babble[int(rng.integers(len(babble)))]
                if len(b) < n:
                    b = np.tile(b, n // len(b) + 1)
                o = int(rng.integers(len(b) - n + 1))
                v += b[o:o + n] / (b.std() + 1e-9)
        ps = np.mean(x ** 2) + 1e-9
        pn = np.mean(v ** 2) + 1e-12
        x = x + v * np.sqrt(ps / (pn * 10 ** (snr / 10)))
        desc["noise"] = kind
        desc["snr"] = snr
    return x, desc


# ------------------------------------------------------------------------------ fbank
def _mel(f):
    return 1127.0 * np.log(1.0 + f / 700.0)


def mel_banks():
    """Kaldi MelBanks: 40 triangular bins equally spaced in mel from 20 Hz to Nyquist."""
    low, high = 20.0, SR / 2
    mlow, mhigh = _mel(low), _mel(high)
    delta = (mhigh - mlow) / (NUM_MEL + 1)
    fft_mel = _mel(np.arange(NFFT // 2) * SR / NFFT)
    B = np.zeros((NUM_MEL, NFFT // 2 + 1))
    for b in range(NUM_MEL):
        l, c, r = mlow + b * delta, mlow + (b + 1) * delta, mlow + (b + 2) * delta
        up = (fft_mel - l) / (c - l)
        down = (r - fft_mel) / (r - c)
        w = np.maximum(0.0, np.minimum(up, down))
        w[(fft_mel <= l) | (fft_mel >= r)] = 0.0
        B[b, : NFFT // 2] = w
    return B


_BANKS = None


def fbank(x):
    """Kaldi compute-fbank defaults but dither=0: snip-edges, remove DC per frame,
    pre-emphasis 0.97, povey window, 512-point power spectrum, 40 mel bins, log floored at
    FLT_EPSILON. x in int16 units."""
    global _BANKS
    if _BANKS is None:
        _BANKS = mel_banks()
    if len(x) < FRAME_LEN:
        return np.zeros((0, NUM_MEL), np.float32)
    T = 1 + (len(x) - FRAME_LEN) // FRAME_SHIFT
    idx = np.arange(FRAME_LEN)[None, :] + FRAME_SHIFT * np.arange(T)[:, None]
    fr = x[idx].astype(np.float64)
    fr -= fr.mean(axis=1, keepdims=True)
    pre = fr.copy()
    pre[:, 1:] -= 0.97 * fr[:, :-1]
    pre[:, 0] -= 0.97 * fr[:, 0]
    n = np.arange(FRAME_LEN)
    win = (0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LEN - 1))) ** 0.85
    spec = np.abs(np.fft.rfft(pre * win, NFFT)) ** 2
    e = spec @ _BANKS.T
    return np.log(np.maximum(e, np.finfo(np.float32).eps)).astype(np.float32)


def frame_phones(segs, scale, T):
    """Per frame (phone index into segs, state 0..2) from phone end times (seconds, to be
    multiplied by `scale`). Frame t is centred at (160 t + 200)/16000 s. Phones covering no
    frame centre are skipped; each phone's frames are split in 3 equal states."""
    ends = np.array([t for _, t in segs]) * scale
    centres = (FRAME_SHIFT * np.arange(T) + FRAME_LEN / 2) / SR
    seg = np.searchsorted(ends, centres, side="right")
    seg = np.minimum(seg, len(segs) - 1)
    state = np.zeros(T, np.int64)
    t = 0
    while t < T:
        u = t
        while u < T and seg[u] == seg[t]:
            u += 1
        L = u - t
        state[t:u] = np.minimum(2, (3 * np.arange(L)) // L)
        t = u
    return seg, state


# ------------------------------------------------------------------------------ one speaker
def do_speaker(job):
    seed, sp, texts, workdir, babble_path = job
    out_path = os.path.join(workdir, sp["spk"] + ".npz")
    if os.path.exists(out_path):
        return out_path, 0.0
    t0 = time.time()
    babble = None
    if babble_path:
        d = np.load(babble_path)
        babble = [d["x"][d["off"][i]:d["off"][i + 1]] for i in range(len(d["off"]) - 1)]
    rng = np.random.default_rng([seed, 60 + SPLIT_CODE[sp["split"]], sp["index"]])
    tmp = tempfile.mkdtemp(prefix="mkcorpus-")
    try:
        if sp["engine"] == "festival":
            synth = synth_festival_batch(sp["voice"], sp["stretch"], texts, tmp)
        feats, labs, ids, descs = [], [], [], []
        for j, text in enumerate(texts):
            if sp["engine"] == "flite":
                wav, segs = synth_flite(sp["voice"], sp["stretch"], text, tmp)
            else:
                wav, segs = synth[j]
            x = sox_voice(wav, sp["alpha"], sp["cents"], tmp)
            # speaker colouring: tilt + gain
            y = x.copy()
            y[1:] += sp["tilt"] * x[:-1]
            y *= 10 ** (sp["gain_db"] / 20)
            if babble is not None:
                y, desc = corrupt(rng, y, babble)
            else:
                desc = {}
            F = fbank(y)
            if len(F) < 10:
                continue
            seg, state = frame_phones(segs, 1.0 / sp["alpha"], len(F))
            phones = [p for p, _ in segs]
            feats.append(F)
            labs.append(("|".join(phones), seg.astype(np.int32), state.astype(np.int8)))
            uid = "%s-u%03d" % (sp["spk"], j)
            ids.append(uid)
            descs.append(json.dumps({"utt": uid, "text": text, **desc}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lens = np.array([len(F) for F in feats], np.int64)
    X = np.concatenate(feats)
    X -= X.mean(axis=0, keepdims=True)  # per-speaker mean normalisation
    tmp_out = out_path + ".tmp.npz"
    np.savez(tmp_out, X=X.astype(np.float32), lens=lens,
             phones=np.array([l[0] for l in labs]),
             seg=np.concatenate([l[1] for l in labs]), state=np.concatenate([l[2] for l in labs]),
             ids=np.array(ids), desc=np.array(descs), params=json.dumps(sp))
    os.replace(tmp_out, out_path)
    return out_path, time.time() - t0


def make_babble(seed, texts, path):
    """Babble source: utterances of babble-only speakers (flite voices), 16 kHz."""
    if os.path.exists(path):
        return
    xs = []
    tmp = tempfile.mkdtemp(prefix="mkcorpus-b-")
    try:
        for j, t in enumerate(texts):
            sp = speaker_params(seed, "babble", j)
            voice = ["kal16", "awb", "rms", "slt"][j % 4]
            wav, _ = synth_flite(voice, sp["stretch"], t, tmp)
            xs.append(sox_voice(wav, sp["alpha"], sp["cents"], tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off = np.cumsum([0] + [len(x) for x in xs])
    np.savez(path + ".tmp.npz", x=np.concatenate(xs).astype(np.float32), off=off)
    os.replace(path + ".tmp.npz", path)


# ------------------------------------------------------------------------------ labels
def context_keys(spk_files):
    """-> per split: list of per-frame keys (left, phone, right, state) as strings arrays."""
    out = []
    for f in spk_files:
        d = np.load(f)
        lens, seg, state = d["lens"], d["seg"], d["state"]
        o = 0
        L, P, R = [], [], []
        for u, ph in enumerate(d["phones"]):
            ph = str(ph).split("|")
            s = seg[o:o + lens[u]]
            # context = neighbouring phones in the engine's segment list
            pad = ["sil"] + ph + ["sil"]
            pad = ["sil" if p in ("pau", "h#", "sil", "ssil") else p for p in pad]
            P.extend(pad[i + 1] for i in s)
            L.extend(pad[i] for i in s)
            R.extend(pad[i + 2] for i in s)
            o += lens[u]
        out.append((np.array(L), np.array(P), np.array(R), state.astype(np.int64)))
    L = np.concatenate([a[0] for a in out])
    P = np.concatenate([a[1] for a in out])
    R = np.concatenate([a[2] for a in out])
    S = np.concatenate([a[3] for a in out])
    # silence is context-independent (its neighbours don't change it much)
    sil = P == "sil"
    L = np.where(sil, "*", L)
    R = np.where(sil, "*", R)
    tri = np.char.add(np.char.add(np.char.add(np.char.add(L, "-"), P), "+"), R)
    tri = np.char.add(np.char.add(tri, "/"), S.astype(str))
    bi = np.char.add(np.char.add(np.char.add(L, "-"), P), np.char.add("/", S.astype(str)))
    mono = np.char.add(P, np.char.add("/", S.astype(str)))
    return tri, bi, mono


def build_classes(tri, bi, mono, min_count):
    """Triphone states with >= min_count frames; the rest back off to left-biphone states
    whose remaining frames are >= min_count; the rest to monophone states (always kept)."""
    ut, ct = np.unique(tri, return_counts=True)
    keep_tri = set(ut[ct >= min_count].tolist())
    rest = ~np.isin(tri, list(keep_tri)) if keep_tri else np.ones(len(tri), bool)
    ub, cb = np.unique(bi[rest], return_counts=True)
    keep_bi = set(ub[cb >= min_count].tolist())
    keep_mono = set(np.unique(mono).tolist())
    return keep_tri, keep_bi, keep_mono


def class_table(keep_tri, keep_bi, keep_mono):
    names = sorted(keep_mono) + sorted(keep_bi) + sorted(keep_tri)
    return {n: i for i, n in enumerate(names)}, names


def map_labels(tri, bi, mono, table, fallback):
    y = np.empty(len(tri), np.int32)
    lvl = np.empty(len(tri), np.int8)
    for i, (t, b, m) in enumerate(zip(tri.tolist(), bi.tolist(), mono.tolist())):
        if t in table:
            y[i], lvl[i] = table[t], 3
        elif b in table:
            y[i], lvl[i] = table[b], 2
        else:
            y[i], lvl[i] = table.get(m, fallback), 1
    return y, lvl


# ------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hours", type=float, default=3.0, help="training speech (approximate)")
    ap.add_argument("--dev-fraction", type=float, default=0.06)
    ap.add_argument("--test-fraction", type=float, default=0.06)
    ap.add_argument("--utts-per-speaker", type=int, default=24)
    ap.add_argument("--min-speakers", type=int, default=4, help="per held-out split")
    ap.add_argument("--target-classes", type=int, default=2000,
                    help="largest class count (also the shards' num_classes, to match "
                    "data/nnet-speech.cfg's output dim=2000)")
    ap.add_argument("--min-class-frames", type=int, default=20,
                    help="lower bound of the back-off count threshold")
    ap.add_argument("--num-shards", type=int, default=0, help="0 = ~1 shard per 20 min")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--mkshards", default=None, help="path of mkshards (default build/mkshards)")
    ap.add_argument("--compress", action="store_true")
    ap.add_argument("--utt-seconds", type=float, default=4.4,
                    help="planning estimate of the mean utterance length")
    a = ap.parse_args()

    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    work = os.path.join(a.out, "work")
    os.makedirs(work, exist_ok=True)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    mkshards = a.mkshards or os.path.join(repo, "build", "mkshards")

    # plan: utterances and speakers per split
    n_train = max(4, int(round(a.hours * 3600 / a.utt_seconds)))
    upsk = max(2, min(a.utts_per_speaker, n_train // 8))
    plan = {}
    for split, frac in (("train", 1.0), ("dev", a.dev_fraction), ("test", a.test_fraction)):
        n = n_train if split == "train" else max(a.min_speakers * upsk,
                                                 int(round(n_train * frac)))
        nspk = max(1 if split == "train" else a.min_speakers, int(math.ceil(n / upsk)))
        plan[split] = (nspk, upsk)
    n_babble = 24
    vocab = load_vocab(a.seed, 6000)
    pools = sentence_pools(a.seed, {**{s: plan[s][0] * plan[s][1] for s in SPLITS},
                                    "babble": n_babble}, vocab)
    print("plan: " + ", ".join("%s %d speakers x %d utts" % (s, *plan[s]) for s in SPLITS),
          flush=True)

    babble_path = os.path.join(work, "babble.npz")
    make_babble(a.seed, pools["babble"], babble_path)

    jobs = []
    for split in SPLITS:
        nspk, u = plan[split]
        for k in range(nspk):
            sp = speaker_params(a.seed, split, k)
            jobs.append((a.seed, sp, pools[split][k * u:(k + 1) * u], work, babble_path))
    done = sum(os.path.exists(os.path.join(work, j[1]["spk"] + ".npz")) for j in jobs)
    print("speakers: %d (%d already done in %s)" % (len(jobs), done, work), flush=True)
    files = {s: [] for s in SPLITS}
    t0 = time.time()
    spk_secs = 0.0
    n_new = 0
    with mp.Pool(a.jobs) as pool:
        for i, (path, secs) in enumerate(pool.imap(do_speaker, jobs)):
            files[path.split("/")[-1].split("-")[0]].append(path)
            if secs > 0:
                n_new += 1
                spk_secs += secs
            el = time.time() - t0
            if n_new:
                eta = el / n_new * (len(jobs) - i - 1)
            else:
                eta = 0
            print("  speaker %d/%d  %s  %.1f s  elapsed %.0f s  eta %.0f s"
                  % (i + 1, len(jobs), os.path.basename(path), secs, el, eta), flush=True)
    t_gen = time.time() - t0
    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu_gen = sum(r.ru_utime + r.ru_stime for r in ru)  # this process + workers + TTS/sox

    # labels: classes from training counts
    keys = {s: context_keys(files[s]) for s in SPLITS}
    tri, bi, mono = keys["train"]
    lo, hi = max(1, a.min_class_frames), max(a.min_class_frames, len(tri))
    # smallest threshold >= min-class-frames giving <= target classes (fewer with higher)
    while lo < hi:
        mid = (lo + hi) // 2
        c = sum(len(s) for s in build_classes(tri, bi, mono, mid))
        if c <= a.target_classes:
            hi = mid
        else:
            lo = mid + 1
    thr = lo
    kt, kb, km = build_classes(tri, bi, mono, thr)
    table, names = class_table(kt, kb, km)
    C = len(names)
    num_classes = max(C, a.target_classes)
    fallback = table.get("sil/1", 0)
    labels, levels = {}, {}
    for s in SPLITS:
        labels[s], levels[s] = map_labels(*keys[s], table, fallback)

    # arrays -> mkshards
    shard_dir = os.path.join(a.out, "shards")
    os.makedirs(shard_dir, exist_ok=True)
    stats = {"seed": a.seed, "hours_requested": a.hours, "classes_used": C,
             "num_classes": num_classes, "backoff_threshold_frames": thr,
             "classes_tri": len(kt), "classes_bi": len(kb), "classes_mono": len(km),
             "phones": sorted(set(n.split("/")[0].split("-")[-1].split("+")[0] for n in names)),
             "generation_seconds": round(t_gen, 1), "jobs": a.jobs}
    train_counts = np.bincount(labels["train"], minlength=num_classes)
    major = int(np.argmax(train_counts))
    for s in SPLITS:
        Xs, ids, descs = [], [], []
        for f in files[s]:
            d = np.load(f)
            Xs.append(d["X"])
            ids += [str(x) for x in d["ids"]]
            descs += [str(x) for x in d["desc"]]
            lens = d["lens"]
            stats.setdefault("_lens_" + s, []).extend(lens.tolist())
        X = np.concatenate(Xs)
        lens = np.array(stats.pop("_lens_" + s), np.int64)
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        y = labels[s]
        assert len(y) == len(X) == off[-1]
        np.save(os.path.join(a.out, s + "_feats.npy"), X)
        np.save(os.path.join(a.out, s + "_labels.npy"), y)
        np.save(os.path.join(a.out, s + "_offsets.npy"), off)
        with open(os.path.join(a.out, s + "_utts.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        with open(os.path.join(a.out, s + "_utts.jsonl"), "w") as f:
            f.write("\n".join(descs) + "\n")
        nshards = 1 if s != "train" else (a.num_shards or max(2, int(round(a.hours * 3))))
        cmd = [mkshards, "--npy-feats=" + os.path.join(a.out, s + "_feats.npy"),
               "--npy-labels=" + os.path.join(a.out, s + "_labels.npy"),
               "--npy-utt-offsets=" + os.path.join(a.out, s + "_offsets.npy"),
               "--num-classes=%d" % num_classes, "--num-shards=%d" % nshards,
               "--seed=%d" % a.seed, "--out=" + os.path.join(shard_dir, s)]
        if a.compress:
            cmd.append("--compress")
        if s == "train":
            cmd.append("--write-priors=" + os.path.join(shard_dir, "priors.txt"))
        for g in os.listdir(shard_dir):
            if g.startswith(s + "-"):
                os.remove(os.path.join(shard_dir, g))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("mkshards failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
        cnt = np.bincount(y, minlength=num_classes)
        spk = sorted(set(i.rsplit("-u", 1)[0] for i in ids))
        st = {"frames": int(len(X)), "hours": round(len(X) / 360000, 4),
              "utterances": int(len(ids)), "speakers": len(spk),
              "mean_utt_seconds": round(float(lens.mean()) / 100, 2),
              "classes_with_frames": int((cnt > 0).sum()),
              "majority_class_baseline": round(float(cnt[major]) / len(y), 4),
              # objective of predicting the (add-one) training priors for every frame
              "prior_baseline_logprob": round(float(np.mean(np.log(
                  (train_counts[y] + 1.0) / (train_counts.sum() + C)))), 4),
              "own_majority_class": round(float(cnt.max()) / len(y), 4),
              "label_level_fraction": {k: round(float((levels[s] == v).mean()), 4)
                                       for k, v in (("triphone", 3), ("biphone", 2),
                                                    ("monophone", 1))},
              "shards": sorted(g for g in os.listdir(shard_dir) if g.startswith(s + "-"))}
        if s == "train":
            q = np.quantile(cnt[:C], [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
            st["frames_per_class_quantiles_0_5_25_50_75_95_100"] = [int(v) for v in q]
            st["engines"] = {}
            for f in files[s]:
                p = json.loads(str(np.load(f)["params"]))
                k = p["engine"] + ":" + p["voice"]
                st["engines"][k] = st["engines"].get(k, 0) + 1
        stats[s] = st
    # disjointness checks
    texts = {s: set(json.loads(l)["text"] for l in open(os.path.join(a.out, s + "_utts.jsonl")))
             for s in SPLITS}
    stats["sentence_overlap"] = {"train-dev": len(texts["train"] & texts["dev"]),
                                 "train-test": len(texts["train"] & texts["test"]),
                                 "dev-test": len(texts["dev"] & texts["test"])}
    gen_speech_h = sum(stats[s]["hours"] for s in SPLITS)
    stats["speech_hours_all_splits"] = round(gen_speech_h, 4)
    if t_gen > 1 and gen_speech_h > 0:
        stats["generation_seconds_per_speech_hour"] = round(t_gen / gen_speech_h, 1)
        stats["generation_cpu_seconds"] = round(cpu_gen, 1)
        stats["generation_cpu_seconds_per_speech_hour"] = round(cpu_gen / gen_speech_h, 1)
    stats["total_seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(a.out, "classes.txt"), "w") as f:
        f.write("\n".join("%d %s %d" % (i, n, train_counts[i]) for i, n in enumerate(names))
                + "\n")
    with open(os.path.join(a.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    lines = ["corpus %s  seed %d  classes %d used / %d (threshold %d frames: %d tri, %d bi, "
             "%d mono)" % (a.out, a.seed, C, num_classes, thr, len(kt), len(kb), len(km))]
    for s in SPLITS:
        st = stats[s]
        lines.append("%-5s %8d frames %7.3f h %5d utts %4d speakers  majority-class %.2f%%  "
                     "prior logprob %.3f  tri/bi/mono %.2f/%.2f/%.2f" % (
                         s, st["frames"], st["hours"], st["utterances"], st["speakers"],
                         100 * st["majority_class_baseline"], st["prior_baseline_logprob"],
                         *st["label_level_fraction"].values()))
    lines.append("train frames per class quantiles (0,5,25,50,75,95,100%%): %s"
                 % stats["train"]["frames_per_class_quantiles_0_5_25_50_75_95_100"])
    lines.append("sentence overlap between splits: %s" % stats["sentence_overlap"])
    lines.append("generation %.0f s wall, %.0f s CPU for %.3f h of speech (all splits) with %d "
                 "jobs: %s s wall, %s s CPU per speech hour (speakers cached in OUT/work are not "
                 "counted); total %.0f s" % (
                     t_gen, cpu_gen, gen_speech_h, a.jobs,
                     stats.get("generation_seconds_per_speech_hour"),
                     stats.get("generation_cpu_seconds_per_speech_hour"),
                     stats["total_seconds"]))
    txt = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "stats.txt"), "w") as f:
        f.write(txt)
    print(txt, end="")


if __name__ == "__main__":
    main()
