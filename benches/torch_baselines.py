#!/usr/bin/env python3
"""PyTorch eager baselines for the crate's GPU targets, run on the GPU check machine (PyTorch, no
Rust) next to the criterion benches, at the same shapes, on the same card.

- `topk`: the Tucker product-key selection (`tucker_topk`, spec Part I) written the way the
  official UltraMemV2 code writes it: per-rank score matmuls, the rank-1 proxy, two `torch.topk`,
  the exact K1 x K1 grid per core, a final `torch.topk` (H = 1, R = Cn = 2, K1 = m). Compare with
  the criterion group `tucker_topk/cuda`.
- `layer`: the whole UltraMemV2 layer (projections, RMSNorms, the same selection, PEER values
  with per-core scores, W_out), forward and forward + backward by autograd, bf16 tables, f32
  everything else. Compare with `ultramem_v2_layer/cuda` and the `memory_vs_moe` sweep.
- `moe`: OLMoE-1B/7B's routed experts (64 × SwiGLU F 1024, top-8, bf16), forward, written as
  eager PyTorch MoE code does it (sort by expert, one matmul chain per touched expert, index_add).
  Compare with `moe_ffn/cuda` and the sweep's `moe` rows.
- `embedding_bag`: `torch.nn.functional.embedding_bag` (sum, per-sample weights) forward and
  forward + backward over a 528² x 768 bf16 table with 128 bags per token, the value read of the
  memory layer. Compare with `weighted_gather/cuda`.

One line per case:

    torch_<what> <shape> T=<tokens> median_us=<..> min_us=<..>

Timing: CUDA events around each call after a warm-up, median of `--iters` calls; inputs are
made once, so only the op is timed, as in the criterion benches.

    python3 benches/torch_baselines.py [topk|layer|moe|embedding_bag|all] [--iters 50]  # GPU
    python3 benches/torch_baselines.py all --device cpu --max-tokens 64 --small  # smoke test
"""
import argparse
import statistics
import sys

SHAPES = [("227m_1_2b", 360, 192, 32), ("1b_7b", 528, 512, 128)]
TOKENS = [1, 64, 4096]
SWEEP = [1, 2, 4, 8, 16, 64, 256, 1024, 4096]


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


def rmsnorm(x, gamma, eps=1e-5):
    import torch

    return gamma * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class Layer:
    """The UltraMemV2 layer's parameters (H = 1, R = Cn = 2, per-rank queries, no shuffle)."""

    def __init__(self, dev, gen, d, dk, n, m, dp, dv):
        import torch

        def param(*shape, std=1.0, dtype=torch.float32):
            t = torch.randn(*shape, device=dev, generator=gen) * std
            return t.to(dtype).requires_grad_()

        self.n, self.m, self.dk, self.dv = n, m, dk, dv
        self.w_q = param(4 * dk, d, std=dk**-0.5)
        self.gamma_q = param(dk)
        self.keys = param(2, 2, n, dk, std=dk**-0.5)
        self.gamma_k = param(dk)
        self.cores = param(2, 2, 2)
        self.u = torch.randn(2, device=dev, generator=gen)
        self.v = torch.randn(2, device=dev, generator=gen)
        self.w_pre = param(dp, d, std=d**-0.5)
        self.down = param(n * n, dp, std=0.02, dtype=torch.bfloat16)
        self.up = param(n * n, dv, std=0.02, dtype=torch.bfloat16)
        self.w_out = param(d, dv, std=dv**-0.5)

    def forward(self, x):
        import torch

        t = x.shape[0]
        q = rmsnorm((x @ self.w_q.T).view(t, 2, 2, self.dk), self.gamma_q)
        khat = rmsnorm(self.keys, self.gamma_k)
        with torch.no_grad():
            idx, _, _ = select(q, khat, self.cores, self.u, self.v, self.m, self.m)
        i, j = idx // self.n, idx % self.n
        # Differentiable per-core scores of the chosen slots: S[side, r, slot] . C_c
        s_row = torch.einsum("trd,rtkd->trk", q[:, 0], khat[0][:, i])
        s_col = torch.einsum("trd,rtkd->trk", q[:, 1], khat[1][:, j])
        scores = torch.einsum("trk,crs,tsk->tkc", s_row, self.cores, s_col)  # [T, m, Cn]
        z = x @ self.w_pre.T
        alpha = torch.einsum("tkp,tp->tk", self.down[idx].float(), z)
        w = scores * alpha[..., None]
        values = self.up[idx].float().view(t, self.m, 2, self.dv // 2)
        y = torch.einsum("tkc,tkcv->tcv", w, values).reshape(t, self.dv)
        return y @ self.w_out.T


def run_layer(torch, dev, on_cuda, args, gen):
    shapes = [("227m_1_2b", 768, 192, 360, 32, 192, 192), ("1b_7b", 2048, 512, 528, 128, 384, 768)]
    if args.small:
        shapes = [("1b_7b_scaled_8x", 256, 64, 66, 16, 48, 96)]
    for label, d, dk, n, m, dp, dv in shapes:
        layer = Layer(dev, gen, d, dk, n, m, dp, dv)
        for t in [t for t in TOKENS if t <= args.max_tokens]:
            x = torch.randn(t, d, device=dev, generator=gen)
            dout = torch.randn(t, d, device=dev, generator=gen)

            def forward():
                with torch.no_grad():
                    return layer.forward(x)

            def forward_backward():
                layer.forward(x).backward(dout)

            for name, fn in [("forward", forward), ("forward_backward", forward_backward)]:
                for _ in range(3):
                    fn()
                times = [timed(fn, on_cuda) for _ in range(args.iters)]
                print(
                    f"torch_layer_{name} {label} T={t} "
                    f"median_us={statistics.median(times):.1f} min_us={min(times):.1f}"
                )


def report(what, label, t, times):
    print(
        f"torch_{what} {label} T={t} "
        f"median_us={statistics.median(times):.1f} min_us={min(times):.1f}"
    )


def run_moe(torch, dev, on_cuda, args, gen):
    d, f, e, k = (256, 128, 64, 8) if args.small else (2048, 1024, 64, 8)
    label = "olmoe_scaled_8x" if args.small else "olmoe_1b_7b"
    w1 = (torch.randn(e, f, d, device=dev, generator=gen) * 0.02).bfloat16()
    w3 = (torch.randn(e, f, d, device=dev, generator=gen) * 0.02).bfloat16()
    w2 = (torch.randn(e, d, f, device=dev, generator=gen) * 0.02).bfloat16()
    for t in [t for t in SWEEP if t <= args.max_tokens]:
        x = torch.randn(t, d, device=dev, generator=gen).bfloat16()
        experts = torch.randint(0, e, (t, k), device=dev, generator=gen)
        gates = torch.full((t, k), 1.0 / k, device=dev, dtype=torch.bfloat16)

        def forward():
            with torch.no_grad():
                out = torch.zeros(t, d, device=dev, dtype=torch.bfloat16)
                flat = experts.flatten()
                order = torch.argsort(flat, stable=True)
                counts = torch.bincount(flat, minlength=e).tolist()
                start = 0
                for ex, c in enumerate(counts):
                    if c == 0:
                        continue
                    ent = order[start : start + c]
                    start += c
                    tok = ent // k
                    xe = x[tok]
                    h = torch.nn.functional.silu(xe @ w1[ex].T) * (xe @ w3[ex].T)
                    y = (h @ w2[ex].T) * gates.flatten()[ent, None]
                    out.index_add_(0, tok, y)
                return out

        forward()
        times = [timed(forward, on_cuda) for _ in range(args.iters)]
        report("moe_forward", label, t, times)


def run_embedding_bag(torch, dev, on_cuda, args, gen):
    n, dv, bags = (66 * 66, 96, 16) if args.small else (528 * 528, 768, 128)
    label = "scaled_8x" if args.small else "528sq_x768_bf16"
    table = (torch.randn(n, dv, device=dev, generator=gen) * 0.02).bfloat16().requires_grad_()
    for t in [t for t in SWEEP if t <= args.max_tokens]:
        rows = torch.randint(0, n, (t, bags), device=dev, generator=gen)
        w = torch.rand(t, bags, device=dev, generator=gen).bfloat16()

        def forward():
            with torch.no_grad():
                return torch.nn.functional.embedding_bag(
                    rows, table, per_sample_weights=w, mode="sum"
                )

        def forward_backward():
            table.grad = None
            out = torch.nn.functional.embedding_bag(rows, table, per_sample_weights=w, mode="sum")
            out.float().sum().backward()

        for name, fn in [("forward", forward), ("forward_backward", forward_backward)]:
            fn()
            times = [timed(fn, on_cuda) for _ in range(args.iters)]
            report(f"embedding_bag_{name}", label, t, times)


def run_topk(torch, dev, on_cuda, args, gen):
    shapes = SHAPES[:1] if args.small else SHAPES
    for label, n, dk, m in shapes:
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "what", nargs="?", default="all", choices=["topk", "layer", "moe", "embedding_bag", "all"]
    )
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument(
        "--device", default="cuda", help="cuda (the baseline) or cpu (a smoke test of the script)"
    )
    parser.add_argument("--max-tokens", type=int, default=max(TOKENS))
    parser.add_argument("--small", action="store_true", help="small shapes only (smoke test)")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_baselines: PyTorch not installed; baselines NOT run", file=sys.stderr)
        return 1
    on_cuda = args.device == "cuda"
    if on_cuda and not torch.cuda.is_available():
        print("torch_baselines: no CUDA device; baselines NOT run", file=sys.stderr)
        return 1
    dev = torch.device(args.device)
    card = torch.cuda.get_device_name(0) if on_cuda else "cpu"
    print(f"torch {torch.__version__} on {card}")
    gen = torch.Generator(device=dev).manual_seed(3)
    if args.what in ("topk", "all"):
        run_topk(torch, dev, on_cuda, args, gen)
    if args.what in ("layer", "all"):
        run_layer(torch, dev, on_cuda, args, gen)
    if args.what in ("moe", "all"):
        run_moe(torch, dev, on_cuda, args, gen)
    if args.what in ("embedding_bag", "all"):
        run_embedding_bag(torch, dev, on_cuda, args, gen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
