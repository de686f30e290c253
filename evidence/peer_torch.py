#!/usr/bin/env python3
"""PyTorch peer for bench_step: the same speech-shaped network (440 -> 4 x relu-renorm 1024
-> 2000, log-softmax + cross-entropy summed over the minibatch), one plain SGD step
(forward + backward + update), fp32 and under torch.autocast("cpu", dtype=torch.bfloat16)
(oneDNN bf16 matmuls, fp32 master weights). Prints one line per minibatch size and
precision: 'peer fp32|bf16 N FRAMES_PER_S'.
Usage: peer_torch.py [repeats] [threads]. One thread: thread CPU time; more: wall clock
(best repeat either way, as bench_step)."""
import sys, time
import torch

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 12
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
torch.set_num_threads(threads)
torch.manual_seed(0)
clock = time.thread_time if threads == 1 else time.perf_counter

class Renorm(torch.nn.Module):
    def forward(self, x):  # Kaldi NormalizeComponent, target RMS 1
        return x * torch.rsqrt(torch.clamp((x * x).mean(dim=1, keepdim=True), min=2.0 ** -66))

def net():
    layers, d = [], 440
    for _ in range(4):
        layers += [torch.nn.Linear(d, 1024), torch.nn.ReLU(), Renorm()]
        d = 1024
    layers += [torch.nn.Linear(d, 2000), torch.nn.LogSoftmax(dim=1)]
    return torch.nn.Sequential(*layers)

for prec in ("fp32", "bf16"):
    for N in (256, 512):
        m = net()
        opt = torch.optim.SGD(m.parameters(), lr=1e-4)
        x = torch.randn(N, 440)
        y = torch.randint(0, 2000, (N,))
        times = []
        for k in range(reps + 3):
            t0 = clock()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=(prec == "bf16")):
                out = m(x)
            loss = torch.nn.functional.nll_loss(out.float(), y, reduction="sum")
            loss.backward()
            opt.step()
            if k >= 3:
                times.append(clock() - t0)
        print(f"peer {prec} {N} {N / min(times):.0f}", flush=True)
