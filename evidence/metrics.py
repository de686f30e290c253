#!/usr/bin/env python3
"""metrics.py — the numbers evidence/run.sh puts in its tables, from ngtrain's DIR/metrics.jsonl
(one JSON object per iteration) and from run.sh's CPU samples. One subcommand per call:

  python3 evidence/metrics.py obj DIR          final validation objective (nan if none)
  python3 evidence/metrics.py cells DIR 1 4    "obj / acc" after epochs 1 and 4
  ... (the others are listed below, one per branch)
"""
import json, math, statistics, sys

def rows(d):
    with open(d + "/metrics.jsonl") as f:
        return [json.loads(l) for l in f if l.strip()]

def at_epoch(rs, k):
    return min(rs, key=lambda r: abs(r["epoch"] - k))

def cell(r, k=None):
    o, a = r["valid_objective"], r["valid_accuracy"]
    if not math.isfinite(o): return "NaN"
    s = "%.4f / %.2f%%" % (o, 100 * a)
    if k is not None and abs(r["epoch"] - k) > 0.01: s += " (ep %.2f)" % r["epoch"]
    return s

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "obj":            # final validation objective (nan if none)
    rs = rows(args[0]); print(rs[-1]["valid_objective"] if rs else "nan")
elif cmd == "cells":        # cells DIR k1 k2 ... : "obj / acc" at epochs k
    rs = rows(args[0]); print(" | ".join(cell(at_epoch(rs, float(k)), float(k)) for k in args[1:]))
elif cmd == "final":        # final DIR : "obj / acc"
    rs = rows(args[0]); print(cell(rs[-1]))
elif cmd == "objat":        # objat DIR k : objective at epoch k
    rs = rows(args[0]); print("%.4f" % at_epoch(rs, float(args[1]))["valid_objective"])
elif cmd == "flag":         # flag DIR : a note when the run got worse after epoch 1 (diverging)
    rs = rows(args[0]); o1 = at_epoch(rs, 1)["valid_objective"]; oN = rs[-1]["valid_objective"]
    print("**worse than after epoch 1**" if not (oN >= o1 - 1e-4) else "")
elif cmd == "mc":           # mean over iterations of the per-component and global max-change %
    rs = rows(args[0]); n = len(rs)
    print("%.1f / %.1f" % (sum(r["max_change_pct"] for r in rs) / n,
                           sum(r["max_param_change_pct"] for r in rs) / n))
elif cmd == "better":       # better A B : exit 0 if objective A > B (nan = -inf)
    a, b = (float(x) for x in args)
    a = -math.inf if math.isnan(a) else a; b = -math.inf if math.isnan(b) else b
    sys.exit(0 if a > b else 1)
elif cmd == "div":          # div X N
    print("%.12g" % (float(args[0]) / float(args[1])))
elif cmd == "reach":        # reach DIR OBJ : first whole epoch whose objective >= OBJ
    rs = rows(args[0]); t = float(args[1]); n = round(rs[-1]["epoch"])
    for k in range(1, n + 1):
        if at_epoch(rs, k)["valid_objective"] >= t: print(k); break
    else: print("-")
elif cmd == "cost":         # cost DIR : throughput and averaging time over iterations >= 1
    rs = rows(args[0]); r1 = [r for r in rs if r["iter"] >= 1] or rs
    fr = sum(r["frames"] for r in r1); sec = sum(r["seconds"] for r in r1)
    jobs = r1[0]["jobs"]
    wfps = statistics.median(r["frames"] / jobs / r["compute_s"] for r in r1 if r["compute_s"] > 0)
    avg = statistics.median(r["avg_s"] for r in r1)
    comm = statistics.median(r["comm_s"] for r in r1)
    it = statistics.median(r["seconds"] for r in r1)
    print("%d %.4f %.1f %.1f %.4f %.4f %.3f %d" % (fr, sec, fr / sec, wfps, avg, comm, it, len(r1)))
elif cmd == "cpu":          # cpu SAMPLES TCK : per-rank CPU % (mean over the run, median 1-s window)
    tck = float(args[1]); per = {}
    for l in open(args[0]):
        t, rank, ticks = l.split(); per.setdefault(int(rank), []).append((float(t), float(ticks)))
    out = []
    for rank in sorted(per):
        s = per[rank]
        if len(s) < 3: continue
        mean = 100 * (s[-1][1] - s[0][1]) / tck / (s[-1][0] - s[0][0])
        win = [100 * (b[1] - a[1]) / tck / (b[0] - a[0]) for a, b in zip(s, s[1:]) if b[0] > a[0]]
        out.append("%d:%.1f:%.1f:%.0f" % (rank, mean, statistics.median(win), s[-1][0] - s[0][0]))
    print(" ".join(out))
elif cmd == "workcpu":      # workcpu SAMPLES TCK : sum over ranks >= 1 of the median 1-s CPU share
    tck = float(args[1]); per = {}
    for l in open(args[0]):
        t, rank, ticks = l.split(); per.setdefault(int(rank), []).append((float(t), float(ticks)))
    tot = 0.0
    for rank, s in per.items():
        if rank == 0 or len(s) < 3: continue
        tot += statistics.median((b[1] - a[1]) / tck / (b[0] - a[0]) for a, b in zip(s, s[1:]) if b[0] > a[0])
    print("%.3f" % tot)
else:
    sys.exit("metrics.py: unknown command %r (see the list in this file)" % cmd)
