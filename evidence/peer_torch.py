#!/usr/bin/env python3
"""PyTorch peer for bench_step: the same speech-shaped network (440 -> 4 x relu-renorm 1024
-> 2000, log-softmax + cross-entropy summed over the minibatch), one plain SGD step
(forward + backward + update) on one thread. Prints frames/s per minibatch size, one line
each: 'peer N FRAMES_PER_S'."""
import sys, time
import torch

torch.set_num_threads(1)
torch.manual_seed(0)

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

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 12
for N in (256, 512):
    m = net()
    opt = torch.optim.SGD(m.parameters(), lr=1e-4)
    x = torch.randn(N, 440)
    y = torch.randint(0, 2000, (N,))
    times = []
    for k in range(reps + 3):
        t0 = time.thread_time()  # CPU time of this thread: one intra-op thread runs here
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.nll_loss(m(x), y, reduction="sum")
        loss.backward()
        opt.step()
        if k >= 3:
            times.append(time.thread_time() - t0)
    print(f"peer {N} {N / min(times):.0f}")  # best repeat, as bench_step
