"""The rank-1 Tucker proxy ``(u, v)`` computed by the crate (not an op: no autograd)."""

import torch
from torch.utils.dlpack import to_dlpack

from ._lib import check, dltensor, lib


def tucker_proxy(cores, prev_u=None, prev_v=None):
    """``(u[H, R], v[H, R])``: the top singular pair of each head's ``sum_c cores[h, c]``,
    signed closest to ``(prev_u, prev_v)`` when given. ``cores`` is ``[H, Cn, R, R]`` on the
    CPU; the proxy is float32 (or float64 for float64 cores)."""
    cores = cores.detach()
    heads, rank = cores.shape[0], cores.shape[-1]
    u = torch.empty((heads, rank), dtype=cores.dtype)
    v = torch.empty((heads, rank), dtype=cores.dtype)
    caps = [to_dlpack(cores)]
    prev = [None, None]
    if (prev_u is None) != (prev_v is None):
        raise ValueError("give both of prev_u and prev_v, or neither")
    if prev_u is not None:
        caps += [to_dlpack(prev_u.detach()), to_dlpack(prev_v.detach())]
        prev = [dltensor(caps[1]), dltensor(caps[2])]
    outs = [to_dlpack(u), to_dlpack(v)]
    check(lib.ultramem_tucker_proxy(dltensor(caps[0]), *prev, dltensor(outs[0]), dltensor(outs[1])))
    return u, v
