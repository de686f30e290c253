#!/usr/bin/python3
"""peers.py — PyTorch peers of ngtrain on the same HDF5 shards.

Network: data/nnet-speech.cfg mirrored: 11 spliced frames (context -5..5, edge frames repeated
within an utterance, as ngtrain) -> 4 x [affine 1024, relu, normalize (Kaldi NormalizeComponent,
target RMS 1)] -> affine -> log-softmax; ngtrain's initialisation (hidden W ~ N(0, 1/I),
biases ~ N(0, 0.5^2), output layer zero). Input normalisation: global CMVN of the 40-dim
features from the training frames (default), or --norm=lda (an LDA-like full-rank transform
of the spliced 440-dim input: within-class whitened, rotated to the between-class
eigenvectors, output variance w + s_i with w = 0.001 and singular values ceiled at 5: Kaldi's
scaled LDA without dimension reduction, as ngtrain's default --input-transform=lda), or none.

Methods
  sgd, adam              one process (--threads torch threads); --precision fp32 | bf16
                         (bf16 = torch.autocast("cpu", dtype=torch.bfloat16) forward)
  ddp-adam, ddp-sgd      DistributedDataParallel, gloo, --workers processes on localhost
                         (mp.spawn), gradients all-reduced every step; per-worker minibatch
  localsgd-sgd, localsgd-adam
                         post-local SGD: DDP all-reduce for --warmup-steps, then each worker
                         steps alone and PeriodicModelAverager averages the parameters every
                         --period steps (torch.distributed.algorithms.model_averaging)

Output: one JSON line per evaluation (--evals-per-epoch per epoch, plus the start) to stdout
and --out (appended): method, precision, lr, schedule, epoch (fractional), step, wall and CPU
seconds of training (evaluation excluded; CPU = this process + children, summed over the
workers), train objective since the last line, dev objective (mean log-prob of the correct
class) and dev frame accuracy; with --test the last line adds test_obj and test_acc.

  peers.py --train='/tmp/sp/shards/train-[0-9]*.h5' --dev=/tmp/sp/shards/dev-001.h5 \
           --method=adam --lr=0.001,0.0003 --epochs=2 --out=peers.jsonl
"""
import argparse
import glob
import json
import os
import resource
import socket
import sys
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

CTX = (-5, 5)


# ------------------------------------------------------------------------------ data
def load_shards(paths):
    Xs, ys, offs, base = [], [], [], 0
    C = None
    for p in paths:
        with h5py.File(p, "r") as f:
            X = f["feats"][...]
            y = f["labels"][...]
            o = f["utt_offsets"][...]
            c = int(f.attrs["num_classes"])
            if C is not None and c != C:
                sys.exit("%s: num_classes %d, earlier shards %d" % (p, c, C))
            C = c
        Xs.append(X.astype(np.float32))
        ys.append(y.astype(np.int64))
        offs.append(o[:-1] + base)
        base += len(X)
    X = np.concatenate(Xs)
    y = np.concatenate(ys)
    off = np.concatenate(offs + [np.array([base])])
    return X, y, off, C


def splice_index(off):
    """[T, 11] frame indices: t+k clamped to its utterance [s, e-1] (edge frames repeated)."""
    T = int(off[-1])
    start = np.repeat(off[:-1], np.diff(off))
    end = np.repeat(off[1:], np.diff(off)) - 1
    t = np.arange(T)
    k = np.arange(CTX[0], CTX[1] + 1)
    return np.clip(t[:, None] + k[None, :], start[:, None], end[:, None]).astype(np.int64)


class Data:
    def __init__(self, paths):
        self.X, self.y, self.off, self.C = load_shards(paths)
        self.idx = torch.from_numpy(splice_index(self.off))
        self.Xt = torch.from_numpy(self.X)
        self.yt = torch.from_numpy(self.y)
        self.T = len(self.y)

    def batch(self, rows):
        return self.Xt[self.idx[rows]].reshape(len(rows), -1), self.yt[rows]


def input_transform(train, kind, max_frames=200000, seed=0, lda_w=0.001, lda_ceil=5.0):
    """-> (A [440, 440], b [440]) with x' = x A^T + b, or None."""
    D = train.X.shape[1] * (CTX[1] - CTX[0] + 1)
    if kind == "none":
        return None
    if kind == "cmvn":
        m = train.X.mean(axis=0).astype(np.float64)
        s = train.X.std(axis=0).astype(np.float64) + 1e-6
        m = np.tile(m, CTX[1] - CTX[0] + 1)
        s = np.tile(s, CTX[1] - CTX[0] + 1)
        A = np.diag(1 / s)
        return A, -m / s
    # lda: ngtrain's / Kaldi's scaled LDA without dimension reduction (src/lda.c):
    # M = U^T L^-1 (W = L L^T, L^-1 B L^-T = U diag(s) U^T), rows scaled by
    # sqrt((w + s)/(1 + s)) so the output variance is w + s_i, singular values ceiled at 5.
    rng = np.random.default_rng(seed)
    rows = rng.choice(train.T, size=min(train.T, max_frames), replace=False)
    x, y = train.batch(torch.from_numpy(np.sort(rows)))
    x, y = x.double().numpy(), y.numpy()
    mu = x.mean(axis=0)
    C = train.C
    cnt = np.bincount(y, minlength=C).astype(np.float64)
    sums = np.zeros((C, D))
    np.add.at(sums, y, x)
    seen = cnt > 0
    Z = np.sqrt(cnt[seen] / len(y))[:, None] * (sums[seen] / cnt[seen, None] - mu)
    B = Z.T @ Z
    T = np.cov(x.T, bias=True)
    W = T - B
    eps = 0.0
    while True:
        try:
            L = np.linalg.cholesky(W + eps * np.eye(D))
            if np.min(np.diag(L)) ** 2 >= 1e-10 * np.max(np.diag(W)):
                break
        except np.linalg.LinAlgError:
            pass
        eps = 1e-3 * max(np.trace(W), 1e-12) / D if eps == 0 else eps * 10
    Li = np.linalg.inv(L)
    sv, U = np.linalg.eigh(Li @ B @ Li.T)
    order = np.argsort(sv)[::-1]
    sv, U = np.maximum(sv[order], 0), U[:, order]
    M = U.T @ Li
    M *= np.sqrt((lda_w + sv) / (1 + sv))[:, None]
    Us, sig, Vt = np.linalg.svd(M)
    M = (Us * np.minimum(sig, lda_ceil)) @ Vt
    return M, -M @ mu


# ------------------------------------------------------------------------------ model
class Renorm(nn.Module):
    """Kaldi NormalizeComponent (target RMS 1): y = x / sqrt(max(2^-66, x.x / D))."""

    def forward(self, x):
        return x * torch.rsqrt(torch.clamp(x.pow(2).mean(dim=1, keepdim=True), min=2.0 ** -66))


class Net(nn.Module):
    def __init__(self, din, hidden, layers, C, transform):
        super().__init__()
        if transform is not None:
            A, b = transform
            self.register_buffer("A", torch.tensor(A, dtype=torch.float32))
            self.register_buffer("b", torch.tensor(b, dtype=torch.float32))
        else:
            self.A = None
        mods, d = [], din
        for _ in range(layers):
            lin = nn.Linear(d, hidden)
            nn.init.normal_(lin.weight, 0.0, 1.0 / np.sqrt(d))
            nn.init.normal_(lin.bias, 0.0, 0.5)
            mods += [lin, nn.ReLU(), Renorm()]
            d = hidden
        out = nn.Linear(d, C)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        mods.append(out)
        self.net = nn.Sequential(*mods)

    def forward(self, x):
        if self.A is not None:
            x = torch.addmm(self.b, x, self.A.t())
        return self.net(x)


def evaluate(model, data, batch=4096):
    model.eval()
    lp_sum, correct = 0.0, 0
    with torch.no_grad():
        for s in range(0, data.T, batch):
            rows = torch.arange(s, min(s + batch, data.T))
            x, y = data.batch(rows)
            lp = F.log_softmax(model(x).float(), dim=1)
            lp_sum += lp.gather(1, y[:, None]).sum().item()
            correct += (lp.argmax(dim=1) == y).sum().item()
    model.train()
    return lp_sum / data.T, correct / data.T


def cpu_seconds():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def lr_at(a, lr0, frac):
    if a.schedule == "constant":
        return lr0
    if a.schedule == "linear":
        return lr0 * (1 - (1 - a.final_lr_factor) * frac)
    return lr0 * a.final_lr_factor ** frac  # exp


# ------------------------------------------------------------------------------ training
def run(rank, world, a, lr0, port, results):
    torch.set_num_threads(a.threads)
    distributed = world > 1 or a.method.startswith(("ddp", "localsgd"))
    if distributed:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port,
                                rank=rank, world_size=world)
    train = Data(sorted(glob.glob(a.train)))
    dev = Data([a.dev]) if rank == 0 else None
    test = Data([a.test]) if rank == 0 and a.test else None
    if dev is not None and dev.C != train.C:
        sys.exit("dev num_classes %d != train %d" % (dev.C, train.C))
    torch.manual_seed(a.seed)  # same initial model on every worker
    transform = input_transform(train, a.norm, seed=a.seed)
    model = Net(train.X.shape[1] * (CTX[1] - CTX[0] + 1), a.hidden, a.layers, train.C,
                transform)
    averager = None
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model)
        if a.method.startswith("localsgd"):
            from torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook import (
                PostLocalSGDState, post_localSGD_hook)
            from torch.distributed.algorithms.model_averaging.averagers import (
                PeriodicModelAverager)
            # singleton subgroups: after the warm-up each worker's gradient stays local
            # (dist.new_subgroups needs CUDA in torch 1.13; every rank makes every group)
            sub = [dist.new_group(ranks=[r]) for r in range(world)][rank]
            state = PostLocalSGDState(process_group=None, subgroup=sub,
                                      start_localSGD_iter=a.warmup_steps)
            model.register_comm_hook(state, post_localSGD_hook)
            averager = PeriodicModelAverager(period=a.period, warmup_steps=a.warmup_steps)
    opt_name = a.method.split("-")[-1]
    if opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr0)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=a.momentum)
    B = a.minibatch
    per_epoch = train.T // (B * world)  # steps per epoch per worker
    total = per_epoch * a.epochs
    eval_every = max(1, per_epoch // a.evals_per_epoch)
    autocast = a.precision == "bf16"

    wall0, cpu0 = time.time(), cpu_seconds()
    excl_wall = excl_cpu = 0.0
    obj_sum, obj_n = 0.0, 0

    def report(step, final=False):
        nonlocal excl_wall, excl_cpu, obj_sum, obj_n
        w0, c0 = time.time(), cpu_seconds()
        wall = w0 - wall0 - excl_wall
        cpu = c0 - cpu0 - excl_cpu
        tr = obj_sum / obj_n if obj_n else None
        if distributed:
            t = torch.tensor([cpu, obj_sum, float(obj_n)], dtype=torch.float64)
            dist.all_reduce(t)
            cpu = t[0].item()
            tr = t[1].item() / t[2].item() if t[2].item() else None
        if rank == 0:
            m = model.module if distributed else model
            lp, acc = evaluate(m, dev)
            rec = {"method": a.method, "precision": a.precision, "lr": lr0,
                   "schedule": a.schedule, "epoch": round(step / per_epoch, 4), "step": step,
                   "frames": step * B * world, "workers": world, "threads": a.threads,
                   "minibatch": B, "seed": a.seed, "norm": a.norm,
                   "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                   "train_obj": None if tr is None else round(tr, 5),
                   "dev_obj": round(lp, 5), "dev_acc": round(acc, 5)}
            if a.method.startswith("localsgd"):
                rec["period"], rec["warmup_steps"] = a.period, a.warmup_steps
            if final and test is not None:
                rec["test_obj"], rec["test_acc"] = [round(v, 5) for v in evaluate(m, test)]
            line = json.dumps(rec)
            print(line, flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(line + "\n")
        if distributed:
            dist.barrier()
        excl_wall += time.time() - w0
        excl_cpu += cpu_seconds() - c0
        obj_sum, obj_n = 0.0, 0

    report(0)
    step = 0
    for ep in range(a.epochs):
        g = np.random.default_rng([a.seed, ep])
        perm = torch.from_numpy(g.permutation(train.T))
        mine = perm[rank::world]
        for i in range(per_epoch):
            rows = mine[i * B:(i + 1) * B]
            x, y = train.batch(rows)
            lr = lr_at(a, lr0, step / total)
            for pg in opt.param_groups:
                pg["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if averager is not None:
                averager.average_parameters(model.parameters())
            obj_sum -= loss.item()
            obj_n += 1
            step += 1
            if step % eval_every == 0 or step % per_epoch == 0:
                report(step, final=step == total)
    if distributed:
        dist.destroy_process_group()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--train", required=True, help="glob of training shards (quote it)")
    ap.add_argument("--dev", required=True)
    ap.add_argument("--test", default=None,
                    help="also evaluate this shard on the last line (test_obj, test_acc)")
    ap.add_argument("--method", default="adam",
                    choices=["sgd", "adam", "ddp-adam", "ddp-sgd", "localsgd-sgd",
                             "localsgd-adam"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--lr", default="0.001", help="one or a comma-separated grid")
    ap.add_argument("--schedule", default="constant", choices=["constant", "linear", "exp"])
    ap.add_argument("--final-lr-factor", type=float, default=0.1,
                    help="final lr / initial lr for linear and exp")
    ap.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--minibatch", type=int, default=256, help="frames per step per worker")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--workers", type=int, default=1, help="processes for ddp-*/localsgd-*")
    ap.add_argument("--period", type=int, default=8, help="localsgd: steps between averages")
    ap.add_argument("--warmup-steps", type=int, default=100,
                    help="localsgd: steps of all-reduce before local steps")
    ap.add_argument("--evals-per-epoch", type=int, default=4)
    ap.add_argument("--norm", default="cmvn", choices=["cmvn", "lda", "none"])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--out", default=None, help="append the JSON lines here too")
    a = ap.parse_args()
    if not glob.glob(a.train):
        sys.exit("no shard matches %s" % a.train)
    for lr0 in [float(v) for v in a.lr.split(",")]:
        if a.method.startswith(("ddp", "localsgd")):
            mp.spawn(run, args=(a.workers, a, lr0, free_port(), None), nprocs=a.workers,
                     join=True)
        else:
            if a.workers != 1:
                sys.exit("--workers is for ddp-* and localsgd-*")
            run(0, 1, a, lr0, 0, None)


if __name__ == "__main__":
    main()
