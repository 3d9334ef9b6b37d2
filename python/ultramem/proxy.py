"""The rank-1 Tucker proxy ``(u, v)`` computed by the crate (not an op: no autograd)."""

import torch

from ._lib import lib
from .torch_ops import _call


def tucker_proxy(cores, prev_u=None, prev_v=None):
    """``(u[H, R], v[H, R])``: the top singular pair of each head's ``sum_c cores[h, c]``,
    signed closest to ``(prev_u, prev_v)`` when given. ``cores`` is ``[H, Cn, R, R]`` on the
    CPU; the proxy is float32 (or float64 for float64 cores)."""
    cores = cores.detach()
    heads, rank = cores.shape[0], cores.shape[-1]
    u = torch.empty((heads, rank), dtype=cores.dtype)
    v = torch.empty((heads, rank), dtype=cores.dtype)
    if (prev_u is None) != (prev_v is None):
        raise ValueError("give both of prev_u and prev_v, or neither")
    if prev_u is not None:
        prev_u, prev_v = prev_u.detach(), prev_v.detach()
    _call(lib.ultramem_tucker_proxy, cores, prev_u, prev_v, u, v)
    return u, v
