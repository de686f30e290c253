#!/usr/bin/python3
"""curves.py — time-to-accuracy table and SVG from peers.py JSON lines and ngtrain run dirs.

  curves.py --peers=a.jsonl,b.jsonl --ngtrain=exp/speech-J1,exp/speech-J2 \
            --target-acc=0.30 --x=wall --svg=tta.svg > <table>.md

Series: one per peers.py configuration (method, precision, lr, schedule, norm, workers,
minibatch, threads, seed; consecutive lines with epoch 0 start a new run), one per ngtrain
--dir (its metrics.jsonl: cumulative `seconds` per iteration = wall; ngtrain logs no CPU
seconds, so --x=cpu leaves ngtrain out). Table (markdown, stdout): best dev accuracy and
objective, when (x seconds, epochs) each series first reaches --target-acc.
SVG: dev accuracy against x seconds (log axis), one polyline per series.
"""
import argparse
import json
import math
import os
import sys


def peer_series(path):
    runs, cur = [], {}  # lines of concurrent runs may interleave: group by configuration
    for line in open(path):
        r = json.loads(line)
        k = "%s %s lr=%g %s %s W=%d B=%d T=%d s=%d" % (
            r["method"], r["precision"], r["lr"], r["schedule"], r["norm"], r["workers"],
            r["minibatch"], r["threads"], r["seed"])
        if r["step"] == 0 or k not in cur:
            cur[k] = {"name": k, "pts": []}
            runs.append(cur[k])
        cur[k]["pts"].append({"wall": r["wall_s"], "cpu": r["cpu_s"], "epoch": r["epoch"],
                           "acc": r["dev_acc"], "obj": r["dev_obj"]})
    return runs


def ngtrain_series(d):
    pts, wall = [], 0.0
    for line in open(os.path.join(d, "metrics.jsonl")):
        r = json.loads(line)
        if "valid_accuracy" not in r:
            continue
        wall += r.get("seconds", 0.0)
        pts.append({"wall": wall, "cpu": None, "epoch": r["epoch"],
                    "acc": r["valid_accuracy"], "obj": r["valid_objective"]})
    return {"name": "ngtrain " + os.path.basename(os.path.normpath(d)), "pts": pts}


def svg(series, x, path, target):
    W, H, L, R, T, B = 900, 520, 70, 330, 20, 50
    pts = [p for s in series for p in s["pts"] if p[x] and p[x] > 0]
    if not pts:
        return
    x0 = math.log10(min(p[x] for p in pts))
    x1 = math.log10(max(p[x] for p in pts)) + 1e-9
    y1 = max(p["acc"] for p in pts) * 1.05 or 1.0
    sx = lambda v: L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)
    sy = lambda v: H - B - v / y1 * (H - T - B)
    cols = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="11">' % (W, H), '<rect width="100%" height="100%" fill="white"/>']
    for e in range(int(math.floor(x0)), int(math.ceil(x1)) + 1):
        v = 10 ** e
        if x0 <= e <= x1:
            o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                     '<text x="%.1f" y="%d" text-anchor="middle">%g</text>'
                     % (sx(v), T, sx(v), H - B, sx(v), H - B + 15, v))
    for i in range(6):
        v = y1 * i / 5
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                 '<text x="%d" y="%.1f" text-anchor="end">%.1f%%</text>'
                 % (L, sy(v), W - R, sy(v), L - 5, sy(v) + 4, 100 * v))
    if target:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black" '
                 'stroke-dasharray="4,3"/>' % (L, sy(target), W - R, sy(target)))
    o.append('<text x="%d" y="%d" text-anchor="middle">%s seconds (log)</text>'
             % ((L + W - R) // 2, H - 10, x))
    o.append('<text x="15" y="%d" transform="rotate(-90 15 %d)" text-anchor="middle">dev frame '
             'accuracy</text>' % ((T + H - B) // 2, (T + H - B) // 2))
    for i, s in enumerate(series):
        c = cols[i % len(cols)]
        p = [q for q in s["pts"] if q[x] and q[x] > 0]
        if not p:
            continue
        o.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>'
                 % (c, " ".join("%.1f,%.1f" % (sx(q[x]), sy(q["acc"])) for q in p)))
        o.append('<text x="%d" y="%d" fill="%s">%s</text>' % (W - R + 8, T + 14 * (i + 1), c,
                                                                s["name"]))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default="", help="comma-separated peers.py JSONL files")
    ap.add_argument("--ngtrain", default="", help="comma-separated ngtrain --dir folders")
    ap.add_argument("--target-acc", type=float, default=0.0)
    ap.add_argument("--x", default="wall", choices=["wall", "cpu"])
    ap.add_argument("--svg", default=None)
    a = ap.parse_args()
    series = []
    for p in filter(None, a.peers.split(",")):
        series += peer_series(p)
    for d in filter(None, a.ngtrain.split(",")):
        series.append(ngtrain_series(d))
    if a.x == "cpu":
        series = [s for s in series if all(p["cpu"] is not None for p in s["pts"])]
    if not series:
        sys.exit("no series")
    print("| series | best dev acc | best dev obj | epochs | %s s to %.1f%% | epoch then |"
          % (a.x, 100 * a.target_acc))
    print("|---|---|---|---|---|---|")
    for s in series:
        p = s["pts"]
        hit = next((q for q in p if q["acc"] >= a.target_acc), None) if a.target_acc else None
        print("| %s | %.2f%% | %.3f | %g | %s | %s |" % (
            s["name"], 100 * max(q["acc"] for q in p), max(q["obj"] for q in p),
            p[-1]["epoch"], "%.0f" % hit[a.x] if hit else "—",
            "%g" % hit["epoch"] if hit else "—"))
    if a.svg:
        svg(series, a.x, a.svg, a.target_acc)


if __name__ == "__main__":
    main()
