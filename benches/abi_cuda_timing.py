"""torch.ops.ultramem.weighted_gather on CUDA against torch.nn.functional.embedding_bag (sum
with per-sample weights: the same math for one core) at the same shapes, forward, on one card.

    ULTRAMEM_LIB=.../libultramem.so PYTHONPATH=python python3 benches/abi_cuda_timing.py

Prints microseconds per call (CUDA events, median of 50 after 10 warm-up calls) and the
bandwidth of the model's bytes: the T*M value rows read, the indices and weights read, the
output written. Our call also waits for its kernels' status (bad-index reporting), which
embedding_bag does not: that host round trip is part of our time.
"""

import statistics
import sys

import torch
import torch.nn.functional as F

import ultramem  # noqa: F401  (registers torch.ops.ultramem)


def time_us(fn, reps=50, warm=10):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times)


def main():
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 1
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    print(f"{'N':>9} {'Dv':>4} {'T':>5} {'M':>3} {'dtype':>9} | {'ours us':>9} {'GB/s':>7} | {'embedding_bag us':>16} {'GB/s':>7} | max |diff|")
    for n, dv, t, m, dtype in [
        (1 << 20, 128, 1, 32, torch.float32),
        (1 << 20, 128, 64, 32, torch.float32),
        (1 << 20, 128, 4096, 32, torch.float32),
        (1 << 20, 256, 4096, 32, torch.bfloat16),
    ]:
        g = torch.Generator(device=dev).manual_seed(0)
        table = torch.randn(n, dv, device=dev, generator=g).to(dtype)
        rows = torch.randint(0, n, (t, m), device=dev, generator=g, dtype=torch.int32)
        w = torch.randn(t, m, 1, device=dev, generator=g)
        flat = rows.reshape(-1).long()
        offsets = torch.arange(0, t * m, m, device=dev)
        psw = w.reshape(-1).to(dtype)
        ours = lambda: torch.ops.ultramem.weighted_gather(rows, w, table)  # noqa: E731
        bag = lambda: F.embedding_bag(flat, table, offsets, mode="sum", per_sample_weights=psw)  # noqa: E731
        diff = (ours() - bag().float()).abs().max().item()
        bytes_moved = t * m * dv * table.element_size() + t * m * 8 + t * dv * 4
        a, b = time_us(ours), time_us(bag)
        print(f"{n:>9} {dv:>4} {t:>5} {m:>3} {str(dtype)[6:]:>9} | {a:9.1f} {bytes_moved / a / 1e3:7.1f} | {b:16.1f} {bytes_moved / b / 1e3:7.1f} | {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
