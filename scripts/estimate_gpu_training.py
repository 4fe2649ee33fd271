"""Estimate the study's training time on a GPU (not a test): a PyTorch replica of the networks.

TensorFlow does not run on the lent GPU machines (its wheel cannot be carried there), so this
script times a training step of PyTorch replicas with the same layers, shapes and arithmetic
as the study's networks at N = 64: PtychoPINN's ``diffraction_to_obj`` (n_filters_scale 2,
gridsize 2, probe_big) followed by this project's physics (group consensus by bilinear
resampling matrices, probe, centred FFT, Poisson NLL), and the baseline (width 32, depth 3,
MAE loss). Weights and data are random; only the time per sample matters. The figures estimate
the TensorFlow code's time within the framework's overheads (docs/training-study.md).

    python scripts/estimate_gpu_training.py --device cuda --batch-sizes 16 64
    python scripts/estimate_gpu_training.py --device cpu --threads 2 --batch-sizes 16
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F


def conv(cin, cout, act=True):
    layers = [nn.Conv2d(cin, cout, 3, padding=1)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PtychoPINNReplica(nn.Module):
    """PtychoPINN's encoder and two decoders at N = 64 (filters 64-128-256, 128-64, border 64)."""

    def __init__(self, n=64, channels=4, scale=2):
        super().__init__()
        f = [32 * scale, 64 * scale, 128 * scale]
        self.n, self.c = n, channels
        blocks, cin = [], channels
        for filters in f:
            blocks += [conv(cin, filters), conv(filters, filters), nn.MaxPool2d(2)]
            cin = filters
        self.encoder = nn.Sequential(*blocks)
        self.decoders = nn.ModuleList([self._decoder(cin, scale) for _ in range(2)])

    def _decoder(self, cin, scale):
        base = nn.Sequential(conv(cin, 64 * scale), conv(64 * scale, 64 * scale), nn.Upsample(scale_factor=2),
                             conv(64 * scale, 32 * scale), conv(32 * scale, 32 * scale), nn.Upsample(scale_factor=2))
        inner = nn.Conv2d(32 * scale - 4, self.c, 3, padding=1)
        border = nn.Sequential(conv(4, 2048 // self.n * scale), conv(2048 // self.n * scale, 2048 // self.n * scale),
                               nn.Upsample(scale_factor=2), nn.Conv2d(2048 // self.n * scale, self.c, 3, padding=1))
        return nn.ModuleDict({"base": base, "inner": inner, "border": border})

    def forward(self, x):
        code = self.encoder(x)
        outs = []
        mask = torch.ones(self.n, self.n, device=x.device)
        q = self.n // 4
        mask[q:-q, q:-q] = 0
        for k, dec in enumerate(self.decoders):
            y = dec["base"](code)
            inner = dec["inner"](y[:, :-4])
            inner = torch.sigmoid(inner) if k == 0 else torch.pi * torch.tanh(inner)
            inner = F.pad(inner, (q, q, q, q))
            outs.append(inner + F.silu(dec["border"](y[:, -4:])) * mask)
        return outs


class BaselineReplica(nn.Module):
    """This project's baseline: 3 conv-pool blocks (32-64-128), two mirrored decoders."""

    def __init__(self, width=32, depth=3):
        super().__init__()
        blocks, cin = [], 1
        for i in range(depth):
            blocks += [conv(cin, width * 2**i), conv(width * 2**i, width * 2**i), nn.MaxPool2d(2)]
            cin = width * 2**i
        self.encoder = nn.Sequential(*blocks)

        def decoder():
            layers, c = [], cin
            for i in reversed(range(depth)):
                layers += [conv(c, width * 2**i), conv(width * 2**i, width * 2**i), nn.Upsample(scale_factor=2)]
                c = width * 2**i
            layers.append(nn.Conv2d(c, 1, 3, padding=1))
            return nn.Sequential(*layers)

        self.amp, self.phase = decoder(), decoder()

    def forward(self, x):
        code = self.encoder(x)
        return torch.sigmoid(self.amp(code)), torch.pi * torch.tanh(self.phase(code))


def resample(out_len, in_len, start):
    i = torch.arange(out_len, device=start.device, dtype=torch.float32)[None, :, None]
    j = torch.arange(in_len, device=start.device, dtype=torch.float32)[None, None, :]
    return F.relu(1 - (start[:, None, None] + i - j).abs())


def physics_loss(amp, phase, offsets, probe, counts, pad):
    """Consensus (place, average, cut) + probe + centred FFT + Poisson NLL, as models/physics.py."""
    b, c, n, _ = amp.shape
    z = torch.polar(amp, phase).reshape(-1, n, n)
    off = offsets.reshape(-1, 2)
    region = n + 2 * pad
    start = -(off + pad)
    rows, cols = resample(region, n, start[:, 1]).to(z.dtype), resample(region, n, start[:, 0]).to(z.dtype)
    placed = rows @ z @ cols.transpose(1, 2)
    weight = (rows.real.sum(2)[:, :, None] * cols.real.sum(2)[:, None, :]).reshape(b, c, region, region)
    merged = placed.reshape(b, c, region, region).sum(1) / weight.sum(1).clamp_min(1e-6)
    merged = merged[:, None].expand(b, c, region, region).reshape(-1, region, region)
    rows, cols = resample(n, region, off[:, 1] + pad).to(z.dtype), resample(n, region, off[:, 0] + pad).to(z.dtype)
    cut = rows @ merged @ cols.transpose(1, 2)
    psi = torch.fft.fftshift(torch.fft.fft2(cut * probe, norm="ortho"), dim=(-2, -1))
    lam = psi.real**2 + psi.imag**2
    return (lam - counts.reshape(-1, n, n) * torch.log(lam + 1e-6)).mean()


def time_step(step, batch, repeats):
    for _ in range(3):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / (repeats * batch)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True  # TensorFlow's default on these GPUs
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device(args.device)
    n, c = 64, 4
    probe = torch.polar(torch.rand(n, n, device=device), torch.rand(n, n, device=device))
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch {torch.__version__}")
    for batch in args.batch_sizes:
        for name, step in make_steps(batch, device, probe, n, c):
            seconds = time_step(step, batch, args.repeats)
            print(f"{name:48s} batch {batch:3d}: {1e3 * seconds:.3f} ms per sample")


def make_steps(batch, device, probe, n, c):
    """One training step of each replica on random data of ``batch`` samples."""
    pinn = PtychoPINNReplica(n, c).to(device).to(memory_format=torch.channels_last)
    base = BaselineReplica().to(device).to(memory_format=torch.channels_last)
    opt_p, opt_b = torch.optim.Adam(pinn.parameters(), 5e-4), torch.optim.Adam(base.parameters(), 1e-3)
    x = torch.rand(batch, c, n, n, device=device).to(memory_format=torch.channels_last)
    xb = torch.rand(batch, 1, n, n, device=device).to(memory_format=torch.channels_last)
    offsets = torch.rand(batch, c, 2, device=device) * 4 - 2
    counts = torch.rand(batch, c, n, n, device=device) * 10

    def pinn_step():
        opt_p.zero_grad(set_to_none=True)
        amp, phase = pinn(x)
        physics_loss(amp, phase, offsets, probe, counts, 16).backward()
        opt_p.step()

    def base_step():
        opt_b.zero_grad(set_to_none=True)
        amp, phase = base(xb)
        ((amp - xb).abs().mean() + (phase - xb).abs().mean()).backward()
        opt_b.step()

    return (("PtychoPINN architecture, gridsize 2, + physics", pinn_step), ("baseline width 32", base_step))


if __name__ == "__main__":
    main()
