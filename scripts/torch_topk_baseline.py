#!/usr/bin/env python3
"""PyTorch eager baseline for the Tucker product-key selection (issue 5's 5x target).

The same selection as `tucker_topk` (spec Part I), written the way the official UltraMemV2 code
writes it: per-rank score matmuls, the rank-1 proxy, two `torch.topk`, the exact K1 x K1 grid per
core, a final `torch.topk`. It runs on the GPU check machine (PyTorch, no Rust) next to the
criterion bench `tucker_topk/cuda/*`, at the same shapes (H = 1, R = Cn = 2, K1 = m), and prints
one line per case:

    torch_tucker_topk <shape> T=<tokens> median_us=<..> min_us=<..>

Timing: CUDA events around each call after a warm-up, median of `--iters` calls; the inputs are
made once, so only the selection is timed, exactly as in the criterion bench.

    python3 scripts/torch_topk_baseline.py [--iters 50]                 # on the GPU
    python3 scripts/torch_topk_baseline.py --device cpu --max-tokens 64  # smoke test
"""
import argparse
import statistics
import sys

SHAPES = [("227m_1_2b", 360, 192, 32), ("1b_7b", 528, 512, 128)]
TOKENS = [1, 64, 4096]


def select(q, keys, cores, u, v, k1, m):
    """q[T,2,R,Dk], keys[2,R,n,Dk], cores[Cn,R,R], u[R], v[R] -> (idx[T,m], score[T,m,Cn])."""
    import torch

    n = keys.shape[2]
    # Per-rank sub-key scores S[T, side, R, n]: one batched matmul per side, as in the paper code.
    s_row = torch.einsum("trd,rnd->trn", q[:, 0], keys[0])
    s_col = torch.einsum("trd,rnd->trn", q[:, 1], keys[1])
    a_row = torch.einsum("r,trn->tn", u, s_row)
    a_col = torch.einsum("r,trn->tn", v, s_col)
    _, i1 = torch.topk(a_row, k1, dim=-1)
    _, i2 = torch.topk(a_col, k1, dim=-1)
    c_row = torch.gather(s_row, 2, i1[:, None, :].expand(-1, s_row.shape[1], -1))  # [T,R,K1]
    c_col = torch.gather(s_col, 2, i2[:, None, :].expand(-1, s_col.shape[1], -1))
    # G_c[t, i, j] = c_row[t,:,i]^T C_c c_col[t,:,j]
    grids = torch.einsum("tri,crs,tsj->tcij", c_row, cores, c_col)  # [T,Cn,K1,K1]
    total = grids.sum(dim=1).flatten(1)  # [T, K1*K1]
    best, flat = torch.topk(total, m, dim=-1)
    bi, bj = flat // k1, flat % k1
    idx = torch.gather(i1, 1, bi) * n + torch.gather(i2, 1, bj)
    per_core = torch.gather(grids.flatten(2), 2, flat[:, None, :].expand(-1, grids.shape[1], -1))
    return idx, per_core.transpose(1, 2), best


def check(idx, per_core, best, n):
    """Cheap sanity: distinct in-range indices, sorted totals equal to the per-core sums."""
    import torch

    assert int(idx.max()) < n * n and int(idx.min()) >= 0
    assert all(len(set(row.tolist())) == len(row) for row in idx[:8])
    assert bool((best[:, :-1] >= best[:, 1:]).all())
    assert torch.allclose(per_core.sum(-1), best, rtol=1e-5, atol=1e-4)


def timed(fn, on_cuda, *args):
    """Microseconds of one call: CUDA events on the GPU, a wall clock on the CPU."""
    import time

    import torch

    if not on_cuda:
        t0 = time.perf_counter()
        fn(*args)
        return (time.perf_counter() - t0) * 1e6
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    start.record()
    fn(*args)
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) * 1000.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument(
        "--device", default="cuda", help="cuda (the baseline) or cpu (a smoke test of the script)"
    )
    parser.add_argument("--max-tokens", type=int, default=max(TOKENS))
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_tucker_topk: PyTorch not installed; baseline NOT run", file=sys.stderr)
        return 1
    on_cuda = args.device == "cuda"
    if on_cuda and not torch.cuda.is_available():
        print("torch_tucker_topk: no CUDA device; baseline NOT run", file=sys.stderr)
        return 1
    dev = torch.device(args.device)
    card = torch.cuda.get_device_name(0) if on_cuda else "cpu"
    print(f"torch {torch.__version__} on {card}")
    gen = torch.Generator(device=dev).manual_seed(3)
    for label, n, dk, m in SHAPES:
        for t in [t for t in TOKENS if t <= args.max_tokens]:
            q = torch.randn(t, 2, 2, dk, device=dev, generator=gen)
            keys = torch.randn(2, 2, n, dk, device=dev, generator=gen)
            cores = torch.randn(2, 2, 2, device=dev, generator=gen)
            u = torch.randn(2, device=dev, generator=gen)
            v = torch.randn(2, device=dev, generator=gen)
            with torch.no_grad():
                idx, per_core, best = select(q, keys, cores, u, v, m, m)
                check(idx, per_core, best, n)
                for _ in range(5):
                    select(q, keys, cores, u, v, m, m)
                times = [timed(select, on_cuda, q, keys, cores, u, v, m, m) for _ in range(args.iters)]
            print(
                f"torch_tucker_topk {label} T={t} "
                f"median_us={statistics.median(times):.1f} min_us={min(times):.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
