"""``UltraMemV2``: the UltraMemV2 memory layer as a ``torch.nn.Module`` built from
``torch.ops.ultramem.*`` (the same math as the crate's ``UltraMemV2Layer``).

Dense parts (query and pre-value projections, RMSNorms, output projection) are plain torch;
the sparse parts (Tucker top-k, index map, PEER values) are ultramem's ops with their own
backward. Per-rank queries, a plain table of ``n²`` rows behind a fixed shuffle, identity
activation: the paper's configuration. Call :meth:`refresh_proxy` after each optimiser step
(the crate's rule: the top singular pair of each head's summed cores, sign-continuous).
"""

import math

import torch
from torch import nn

from .proxy import tucker_proxy


def _rmsnorm(x, gamma, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gamma


class UltraMemV2(nn.Module):
    """One UltraMemV2 layer: ``x[..., D] -> o[..., D]``.

    Shapes: ``D = d_model``; ``H`` heads, each with ``R`` ranks, ``Cn`` cores, ``n`` sub-keys of
    ``Dk``; ``m`` chosen slots per head from a table of ``N = n²`` rows with ``Dp``-wide down and
    ``Dv``-wide up projections. Parameters are float32 unless ``dtype`` says otherwise (float64
    for gradcheck).
    """

    def __init__(
        self,
        d_model,
        dk,
        n,
        m,
        dp,
        dv,
        *,
        heads=1,
        rank=2,
        cores=2,
        k1=0,
        eps=1e-5,
        seed=0,
        dtype=torch.float32,
    ):
        super().__init__()
        if dv % cores:
            raise ValueError(f"dv = {dv} is not divisible by cores = {cores}")
        self.d_model, self.dk, self.n, self.m = d_model, dk, n, m
        self.dp, self.dv, self.heads, self.rank = dp, dv, heads, rank
        self.n_cores, self.k1, self.eps = cores, k1, eps
        rows = n * n
        g = torch.Generator().manual_seed(seed)

        def normal(*shape, std):
            return nn.Parameter(torch.randn(*shape, generator=g, dtype=dtype) * std)

        self.w_q = normal(heads * 2 * rank * dk, d_model, std=1 / math.sqrt(d_model))
        self.gamma_q = nn.Parameter(torch.ones(dk, dtype=dtype))
        self.keys = normal(heads, 2, rank, n, dk, std=1.0)
        self.gamma_k = nn.Parameter(torch.ones(dk, dtype=dtype))
        # Cores near the identity so the proxy starts well defined.
        eye = torch.eye(rank, dtype=dtype).expand(heads, cores, rank, rank)
        self.cores = nn.Parameter(eye + 0.1 * torch.randn(heads, cores, rank, rank, generator=g, dtype=dtype))
        self.w_pre = normal(dp, d_model, std=1 / math.sqrt(d_model))
        self.down = normal(rows, dp, std=1 / math.sqrt(dp))
        self.up = normal(rows, dv, std=1 / math.sqrt(heads * m))
        self.w_out = normal(d_model, dv, std=1 / math.sqrt(dv))
        self.register_buffer("shuffle", torch.randperm(rows, generator=g).to(torch.int32))
        self.register_buffer("u", torch.zeros(heads, rank, dtype=dtype))
        self.register_buffer("v", torch.zeros(heads, rank, dtype=dtype))
        self.refresh_proxy(keep_sign=False)

    @torch.no_grad()
    def refresh_proxy(self, keep_sign=True):
        """Recomputes ``(u, v)`` from the cores (host work, once per optimiser step)."""
        prev = (self.u.cpu(), self.v.cpu()) if keep_sign else (None, None)
        u, v = tucker_proxy(self.cores.detach().cpu(), *prev)
        self.u.copy_(u)
        self.v.copy_(v)

    def forward(self, x):
        lead = x.shape[:-1]
        x = x.reshape(-1, self.d_model)
        t = x.shape[0]
        h, r, dk, m, cn = self.heads, self.rank, self.dk, self.m, self.n_cores
        q = _rmsnorm((x @ self.w_q.t()).reshape(t, h, 2, r, dk), self.gamma_q, self.eps)
        khat = _rmsnorm(self.keys, self.gamma_k, self.eps)
        score, idx = torch.ops.ultramem.tucker_topk(
            q.contiguous(), khat.contiguous(), self.cores, self.u, self.v, m, self.k1
        )
        rows = self.n * self.n
        value_rows = torch.ops.ultramem.index_map(idx.reshape(t, h * m), self.shuffle, rows, 0, rows)
        z = x @ self.w_pre.t()
        y = torch.ops.ultramem.peer_ffn(
            value_rows, score.reshape(t, h * m, cn), z.contiguous(), self.down, self.up, 0
        )
        return (y @ self.w_out.t()).reshape(*lead, self.d_model)
