#!/usr/bin/python3
"""report.py — tables and time-to-accuracy plots from the runs of grid.sh.

  /usr/bin/python3 evidence/speech/report.py --runs=/work/speech-runs \
      --svg=docs/results/speech-tta > TABLES

Reads RUNS/{grid,epochs,workers,defaults,scaling,seeds}/: ngtrain --dirs (metrics.jsonl, log.txt with
/usr/bin/time -v, test.txt from nneval) and peers.py JSON lines (NAME.jsonl). Prints markdown
tables; writes SVG-cpu.svg and SVG-wall.svg (dev accuracy against core-seconds and wall
seconds, log axis).

Time axes. Peers (peers.py) count training only: data loading and evaluation are excluded;
CPU is summed over all processes. ngtrain: wall = metrics `elapsed_s` (from process start, so
start-up — reading the shards' index, LDA, priors — is *included*) minus the evaluations that
were on the training path (one process: every earlier `valid_s`; with a coordinator rank the
evaluation overlaps the workers and nothing is subtracted); CPU = the running sum of `cpu_s`
(every rank, every thread) minus every earlier `valid_cpu_s`. The final point (after the final
combination) uses the run's total from /usr/bin/time (user + system of all processes) minus
all evaluations, with the final model's dev figure from the log's last line, or from RUN/dev.txt (nneval on
the whole dev set) where the run validated on a subset (--valid-frames).
"""
import argparse
import glob
import json
import math
import os
import re


def peer_run(path, label):
    pts, last = [], None
    for line in open(path):
        r = json.loads(line)
        pts.append({"cpu": r["cpu_s"], "wall": r["wall_s"], "epoch": r["epoch"],
                    "acc": r["dev_acc"], "obj": r["dev_obj"]})
        last = r
    return {"name": label, "pts": pts, "test_acc": last.get("test_acc"),
            "test_obj": last.get("test_obj"), "workers": last["workers"], "lr": last["lr"],
            "sched": last["schedule"]}


def ngtrain_run(d, label):
    lines = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
    log = open(os.path.join(d, "log.txt")).read()
    single = "[rank 0]" not in log
    pts, cpu, vs, vc = [], 0.0, 0.0, 0.0
    for r in lines:
        cpu += r["cpu_s"]
        pts.append({"cpu": cpu - vc, "wall": r["elapsed_s"] - (vs if single else 0.0),
                    "epoch": r["epoch"], "acc": r["valid_accuracy"],
                    "obj": r["valid_objective"]})
        vs += r["valid_s"]
        vc += r["valid_cpu_s"]
    m = re.search(r"wrote \S+final.h5: validation objective (\S+), frame accuracy (\S+)%.*?"
                  r"([0-9.]+) s in all", log)
    u = re.search(r"User time \(seconds\): ([0-9.]+)", log)
    s = re.search(r"System time \(seconds\): ([0-9.]+)", log)
    startup = lines[0]["elapsed_s"] - lines[0]["seconds"] if lines else 0.0
    if m and u and s:
        pts.append({"cpu": float(u.group(1)) + float(s.group(1)) - vc,
                    "wall": float(m.group(3)) - (vs if single else 0.0),
                    "epoch": lines[-1]["epoch"], "acc": float(m.group(2)) / 100,
                    "obj": float(m.group(1)), "final": True})
    dp = os.path.join(d, "dev.txt")  # nneval on the whole dev set (runs validated on a subset)
    if pts and pts[-1].get("final") and os.path.exists(dp):
        v = re.search(r"objective (\S+?),? .*?accuracy (\S+?)%", open(dp).read())
        if v:
            pts[-1]["obj"], pts[-1]["acc"] = float(v.group(1)), float(v.group(2)) / 100
    t = None
    tp = os.path.join(d, "test.txt")
    if os.path.exists(tp):
        t = re.search(r"objective (\S+?),? .*?accuracy (\S+?)%", open(tp).read())
    return {"name": label, "pts": pts, "test_acc": float(t.group(2)) / 100 if t else None,
            "test_obj": float(t.group(1)) if t else None, "workers": lines[-1]["jobs"],
            "startup": startup, "single": single}


NOT_RUN = []


def load(runs, phase):
    """finished runs of a phase; placeholders (a peer's empty .jsonl, an ngtrain dir with
    test.txt but no metrics) are runs dropped for time: listed in NOT_RUN"""
    out = {}
    for d in sorted(glob.glob(os.path.join(runs, phase, "*"))):
        name = os.path.basename(d)
        if os.path.isdir(d) and os.path.exists(os.path.join(d, "test.txt")):
            if os.path.exists(os.path.join(d, "metrics.jsonl")):
                out[name] = ngtrain_run(d, name)
            else:
                NOT_RUN.append(phase + "/" + name)
        elif d.endswith(".jsonl"):
            if os.path.getsize(d):
                out[name[:-6]] = peer_run(d, name[:-6])
            else:
                NOT_RUN.append(phase + "/" + name[:-6])
    return out


def final(s):
    return s["pts"][-1]


def at_epoch(s, e):
    """dev accuracy of the last point at or before epoch e (+ rounding)"""
    p = [q for q in s["pts"] if q["epoch"] <= e + 1e-3]
    return p[-1] if p else None


def first_reach(s, acc):
    return next((q for q in s["pts"] if q["acc"] >= acc), None)


def pct(v):
    return "—" if v is None else "%.2f %%" % (100 * v)


def grid_table(g):
    print("| run | dev acc | dev obj | test acc | core-s | wall s | ngtrain start-up s |")
    print("|---|---|---|---|---|---|---|")
    for k, s in sorted(g.items(), key=lambda kv: -final(kv[1])["acc"]):
        f = final(s)
        print("| %s | **%s** | %.3f | %s | %.0f | %.0f | %s |" % (
            k, pct(f["acc"]), f["obj"], pct(s["test_acc"]), f["cpu"], f["wall"],
            "%.1f" % s["startup"] if "startup" in s else "—"))


def best(g, prefix):
    c = {k: s for k, s in g.items() if k.startswith(prefix)}
    return max(c.items(), key=lambda kv: final(kv[1])["acc"]) if c else (None, None)


def epochs_table(e):
    print("| run | dev acc after 1 / 2 / 3 epochs | final dev acc | dev obj | test acc | core-s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for k, s in sorted(e.items()):
        f = final(s)
        ep = " / ".join(pct(at_epoch(s, i)["acc"]) if at_epoch(s, i) else "—" for i in (1, 2, 3))
        print("| %s | %s | **%s** | %.3f | %s | %.0f | %.0f |" % (
            k, ep, pct(f["acc"]), f["obj"], pct(s["test_acc"]), f["cpu"], f["wall"]))


def workers_table(w, one):
    print("| method | workers | dev acc | change from 1 worker | test acc | core-s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for k, s in sorted(w.items(), key=lambda kv: (re.sub(r"-w\d+$", "", kv[0]),
                                                  int(re.search(r"w(\d+)$", kv[0]).group(1)))):
        base = re.sub(r"-w\d+$", "", k)
        b = w.get(base + "-w1") or one.get(base)
        f = final(s)
        d = "%+.2f" % (100 * (f["acc"] - final(b)["acc"])) if b else "—"
        print("| %s | %s | %s | %s | %s | %.0f | %.0f |" % (
            base, re.search(r"w(\d+)$", k).group(1), pct(f["acc"]), d, pct(s["test_acc"]),
            f["cpu"], f["wall"]))


def scaling_table(sc, w, e):
    """NG-SGD variants at W workers against the jobs-fixed run at W and one worker, same epochs"""
    print("| run | epochs | dev acc | change from workers/ng-wW (jobs fixed at W) | change from "
          "1 worker (same epochs) | test acc | core-s |")
    print("|---|---|---|---|---|---|---|")
    for k, s in sorted(sc.items(), key=lambda kv: (int(re.match(r"ng-w(\d+)", kv[0]).group(1)),
                                                   kv[0])):
        f = final(s)
        ep = round(f["epoch"])
        one = w.get("ng-w1") if ep == 1 else e.get("ng-lr0.001-e%d" % ep)
        fixed = w.get(re.match(r"ng-w\d+", k).group(0))
        d8 = "%+.2f" % (100 * (f["acc"] - final(fixed)["acc"])) if fixed and ep == 1 else "—"
        d1 = "%+.2f (%s)" % (100 * (f["acc"] - final(one)["acc"]), pct(final(one)["acc"])) \
            if one else "—"
        print("| %s | %d | %s | %s | %s | %s | %.0f |" % (
            k, ep, pct(f["acc"]), d8, d1, pct(s["test_acc"]), f["cpu"]))


def seeds_table(sd, g, e):
    """runs with another seed (NAME-sN in seeds/ and epochs/) next to the seed-1 run NAME"""
    print("| run | seed | dev acc | seed 1 dev acc | test acc | seed 1 test acc | core-s |")
    print("|---|---|---|---|---|---|---|")
    for k, s in sorted(sd.items()):
        m = re.match(r"(.*)-s(\d+)$", k)
        if not m:
            continue
        one = g.get(m.group(1)) or e.get(m.group(1))
        print("| %s | %s | %s | %s | %s | %s | %.0f |" % (
            m.group(1), m.group(2), pct(final(s)["acc"]), pct(final(one)["acc"]) if one else "—",
            pct(s["test_acc"]), pct(one["test_acc"]) if one else "—", final(s)["cpu"]))


def svg(series, x, path, title):
    W, H, L, R, T, B = 960, 540, 70, 360, 30, 50
    pts = [p for s in series for p in s["pts"] if p[x] >= 1]  # not the untrained start
    x0 = math.log10(min(p[x] for p in pts))
    x1 = math.log10(max(p[x] for p in pts)) + 1e-9
    y1 = max(p["acc"] for p in pts) * 1.05
    sx = lambda v: L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)
    sy = lambda v: H - B - v / y1 * (H - T - B)
    cols = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aa8800", "#00a0a0", "#a00060"]
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'font-family="sans-serif" font-size="11">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="18" font-size="13">%s</text>' % (L, title)]
    for e in range(int(math.floor(x0)), int(math.ceil(x1)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if x0 <= math.log10(v) <= x1:
                o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                         '<text x="%.1f" y="%d" text-anchor="middle">%g</text>'
                         % (sx(v), T, sx(v), H - B, sx(v), H - B + 15, v))
    for i in range(6):
        v = y1 * i / 5
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                 '<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>'
                 % (L, sy(v), W - R, sy(v), L - 5, sy(v) + 4, 100 * v))
    o.append('<text x="%d" y="%d" text-anchor="middle">%s (log scale)</text>'
             % ((L + W - R) // 2, H - 10, "core-seconds" if x == "cpu" else "wall seconds"))
    o.append('<text x="15" y="%d" transform="rotate(-90 15 %d)" text-anchor="middle">dev frame '
             'accuracy</text>' % ((T + H - B) // 2, (T + H - B) // 2))
    for i, s in enumerate(series):
        c = cols[i % len(cols)]
        p = [q for q in s["pts"] if q[x] >= 1]
        dash = ' stroke-dasharray="5,3"' if s["name"].startswith("pt") else ""
        o.append('<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>'
                 % (c, dash, " ".join("%.1f,%.1f" % (sx(q[x]), sy(q["acc"])) for q in p)))
        o.append('<text x="%d" y="%d" fill="%s">%s</text>'
                 % (W - R + 8, T + 14 * (i + 1), c, s["name"]))
    o.append("</svg>")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(o) + "\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="/work/speech-runs")
    ap.add_argument("--svg", default=None, help="prefix: writes PREFIX-cpu.svg, PREFIX-wall.svg")
    ap.add_argument("--plot", default="", help="comma-separated run names to plot (default all)")
    a = ap.parse_args()
    g, e, w, dflt, sc, sd = (load(a.runs, p)
                             for p in ("grid", "epochs", "workers", "defaults", "scaling", "seeds"))
    # other seeds (NAME-sN) are reported in their own table, not among the seed-1 grids
    sd.update({k: v for k, v in e.items() if re.search(r"-s\d+$", k)})
    e = {k: v for k, v in e.items() if not re.search(r"-s\d+$", k)}
    print("## Learning-rate grid: 1 epoch, 1 worker\n")
    grid_table(g)
    picks = {p: best(g, p) for p in ("ng-", "ngadam-", "ngsgd-", "pt-adam-", "pt-sgd-")}
    if NOT_RUN:
        print("\nNot run (dropped for time): " + ", ".join(NOT_RUN))
    print("\nBest per method: " + ", ".join("%s → %s (%s)" % (p, k, pct(final(s)["acc"]))
                                            for p, (k, s) in picks.items() if k))
    if dflt:
        print("\n## ngtrain with its defaults (no learning-rate options)\n")
        grid_table(dflt)
    if e:
        print("\n## Longer runs: 3 epochs, 1 worker\n")
        epochs_table(e)
    if w:
        one = {}
        for p, (k, s) in picks.items():
            if k:
                one[{"ng-": "ng", "ngadam-": "ngadam", "ngsgd-": "ngsgd",
                     "pt-adam-": "pt-ddp-adam", "pt-sgd-": "pt-sgd"}[p]] = s
        if "pt-ddp-adam" in one:
            one["pt-localsgd-adam"] = one["pt-ddp-adam"]
        print("\n## Workers: 1 epoch, parameter averaging (ngtrain), DDP and post-local SGD (PyTorch)\n")
        workers_table(w, one)
    if sc:
        print("\n## NG-SGD with more workers: variants (scaling phase)\n")
        scaling_table(sc, w, e)
    if sd:
        print("\n## Second seed\n")
        seeds_table(sd, g, e)
    allr = dict(g)
    allr.update(e)
    targets = []  # (label, accuracy): the best peer at 1 epoch, the best peer, the best ngtrain
    p1 = {k: s for k, s in g.items() if k.startswith("pt")}
    pall = {k: s for k, s in allr.items() if k.startswith("pt")}
    nall = {k: s for k, s in allr.items() if not k.startswith("pt")}
    for lab, c in (("the best 1-epoch peer", p1), ("the best peer", pall),
                   ("the best ngtrain run", nall)):
        if c:
            k, s = max(c.items(), key=lambda kv: final(kv[1])["acc"])
            if all(abs(final(s)["acc"] - t[2]) > 1e-9 for t in targets):
                targets.append((lab, k, final(s)["acc"]))
    for lab, tk, target in targets:
        print("\n## Time to %s's accuracy (%s: %s)\n" % (lab, tk, pct(target)))
        pk, ps = max(pall.items(), key=lambda kv: -first_reach(kv[1], target)["cpu"]
                     if first_reach(kv[1], target) else float("-inf"))
        pc = first_reach(ps, target)["cpu"] if first_reach(ps, target) else float("nan")
        print("| run | reaches %s at core-s | wall s | epoch | fastest peer (%s) core-s ÷ this |"
              % (pct(target), pk))
        print("|---|---|---|---|---|")
        for k, s in sorted(list(allr.items()) + [("workers/" + k, v) for k, v in w.items()]):
            h = first_reach(s, target)
            if h:
                print("| %s | %.0f | %.0f | %.2f | %s |" % (
                    k, h["cpu"], h["wall"], h["epoch"],
                    "%.2f" % (pc / h["cpu"]) if pc == pc else "— (no peer reaches it)"))
    if a.svg:
        pool = {**allr, **w, **sc}
        want = a.plot.split(",") if a.plot else sorted(pool)
        sel = [pool[k] for k in want if k in pool]
        svg(sel, "cpu", a.svg + "-cpu.svg", "Speech corpus (3 h): dev accuracy vs core-seconds")
        svg(sel, "wall", a.svg + "-wall.svg", "Speech corpus (3 h): dev accuracy vs wall seconds")


if __name__ == "__main__":
    main()
