"""``torch.ops.ultramem.*``: the crate's ops as PyTorch custom operators.

Registered with ``torch.library`` (``define`` + ``impl``: the cheaper route per call than the
``custom_op`` decorator), with fake kernels for ``torch.compile`` and autograd formulas that
call the backward ops. Tensors reach the C ABI through DLPack with no copy; outputs are
allocated by torch. Top-k ops return ``(score, idx)`` in ``torch.topk``'s order. Inputs must
be contiguous; indices are int32 or int64 (on CUDA, int64 is narrowed on the device, each
value checked); a bad tensor raises :class:`ultramem.UltramemError` with the crate's message.

Output dtypes: a forward's float output has the promoted dtype of its float inputs (so float64
in gives float64 out, computed in f64: what ``torch.autograd.gradcheck`` needs); each gradient
has its input's dtype widened to at least float32; index outputs are int32 when every possible
value is below 2^31 (``n² ≤ 2^31`` for top-k, ``N_tot ≤ 2^31`` for the index map) and int64
otherwise, or when the index map's input is int64.

CUDA tensors run the crate's PTX kernels on torch's current stream, over torch's memory (no
copy of the inputs; results are copied into the torch-allocated outputs). There, small operands
and outputs are float32 and tables float32/float16/bfloat16; each call waits for its kernels to
report bad indices, so it cannot be captured in a CUDA graph yet.
"""

import functools

import torch
from torch.utils.dlpack import to_dlpack

from ._lib import check, dltensor, lib

__all__ = ["ACTIVATIONS", "SCORE_FNS"]

#: PEER activation codes of the ABI.
ACTIVATIONS = {"identity": 0, "relu": 1, "gelu": 2, "silu": 3}
#: Score-function codes of the ABI.
SCORE_FNS = {"raw": 0, "softmax": 1, "relu": 2, "sigmoid": 3}

_lib = torch.library.Library("ultramem", "DEF")
_lib.define("weighted_gather(Tensor rows, Tensor weights, Tensor table) -> Tensor")
_lib.define(
    "weighted_gather_backward(Tensor rows, Tensor weights, Tensor table, Tensor dout)"
    " -> (Tensor, Tensor)"
)
_lib.define(
    "peer_ffn(Tensor rows, Tensor scores, Tensor z, Tensor down, Tensor up, int activation=0)"
    " -> Tensor"
)
_lib.define(
    "peer_ffn_backward(Tensor rows, Tensor scores, Tensor z, Tensor down, Tensor up,"
    " int activation, Tensor dout) -> (Tensor, Tensor, Tensor, Tensor)"
)
_lib.define(
    "additive_topk(Tensor q, Tensor keys, int k, int k1=0) -> (Tensor score, Tensor idx)"
)
_lib.define(
    "additive_topk_backward(Tensor q, Tensor keys, Tensor idx, Tensor dscore)"
    " -> (Tensor, Tensor)"
)
_lib.define(
    "tucker_topk(Tensor q, Tensor keys, Tensor cores, Tensor u, Tensor v, int m, int k1=0)"
    " -> (Tensor score, Tensor idx)"
)
_lib.define(
    "tucker_topk_backward(Tensor q, Tensor keys, Tensor cores, Tensor u, Tensor v, Tensor idx,"
    " Tensor dscore) -> (Tensor, Tensor, Tensor)"
)
_lib.define(
    "index_map(Tensor idx, Tensor? shuffle, int rows_per_layer, int offset, int total_rows)"
    " -> Tensor"
)
_lib.define("score_fn(Tensor score, int func) -> Tensor")
_lib.define("score_fn_backward(Tensor score, int func, Tensor dout) -> Tensor")


def _promote(*tensors):
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors))


def _grad_like(t):
    # Gradients are at least float32 (what the GPU kernels write; autograd casts a half
    # parameter's gradient back to its dtype).
    return torch.empty(t.shape, dtype=torch.promote_types(t.dtype, torch.float32), device=t.device)


def _stream(t):
    # The CUDA stream the ABI orders its work after (and torch's later work after it).
    if t.is_cuda:
        return torch.cuda.current_stream(t.device).cuda_stream
    return None


def _call(fn, *args):
    """Calls the ABI function ``fn`` with ``args`` in its order: each tensor passed as the
    ``DLTensor*`` of its DLPack capsule (kept alive until the call returns), ``None`` as a null
    pointer, anything else as it is."""
    keep = []
    ptrs = []
    for a in args:
        if isinstance(a, torch.Tensor):
            keep.append(to_dlpack(a))
            ptrs.append(dltensor(keep[-1]))
        else:
            ptrs.append(a)
    check(fn(*ptrs))


# --- weighted gather -------------------------------------------------------------------------


def _weighted_gather(rows, weights, table):
    # Written out rather than through _call: this is the op whose per-call overhead is measured
    # (benches/python_overhead.py), and every Python-level step here costs ~0.3-1 us.
    shape = (rows.shape[0], table.shape[-1]) if rows.dim() == 2 and table.dim() == 2 else (0,)
    out = torch.empty(
        shape, dtype=torch.promote_types(weights.dtype, table.dtype), device=weights.device
    )
    r, w, t, o = to_dlpack(rows), to_dlpack(weights), to_dlpack(table), to_dlpack(out)
    check(
        lib.ultramem_weighted_gather_forward(
            dltensor(r), dltensor(w), dltensor(t), dltensor(o), _stream(table)
        )
    )
    return out


def _weighted_gather_backward(rows, weights, table, dout):
    dw = _grad_like(weights)
    dt = _grad_like(table)
    _call(lib.ultramem_weighted_gather_backward, rows, weights, table, dout, dw, dt, _stream(table))
    return dw, dt


# --- PEER FFN ------------------------------------------------------------------------------


def _peer_out_shape(rows, up):
    return (rows.shape[0], up.shape[-1]) if rows.dim() == 2 and up.dim() == 2 else (0,)


def _peer_ffn(rows, scores, z, down, up, activation=0):
    out = torch.empty(
        _peer_out_shape(rows, up), dtype=_promote(scores, z, down, up), device=z.device
    )
    _call(lib.ultramem_peer_ffn_forward, rows, scores, z, down, up, activation, out, _stream(z))
    return out


def _peer_ffn_backward(rows, scores, z, down, up, activation, dout):
    dz, dscores, ddown, dup = (_grad_like(t) for t in (z, scores, down, up))
    _call(
        lib.ultramem_peer_ffn_backward,
        *(rows, scores, z, down, up, activation, dout),
        *(dz, dscores, ddown, dup, _stream(z)),
    )
    return dz, dscores, ddown, dup


# --- product-key top-k ---------------------------------------------------------------------


def _index_dtype(largest):
    """Index outputs are int32 when every possible value (at most ``largest``) is below 2^31,
    int64 otherwise (spec I.6.1; on CUDA the kernels' u32 results are widened on the device)."""
    return torch.int32 if largest < 2**31 else torch.int64


def _n_squared(keys, side_dim):
    return keys.shape[side_dim] ** 2 if keys.dim() > side_dim else 0


def _additive_topk(q, keys, k, k1=0):
    shape = (*q.shape[:2], k) if q.dim() == 3 else (0,)
    idx = torch.empty(shape, dtype=_index_dtype(_n_squared(keys, 2) - 1), device=q.device)
    score = torch.empty(shape, dtype=_promote(q, keys), device=q.device)
    _call(lib.ultramem_additive_topk_forward, q, keys, k, k1, idx, score, _stream(q))
    return score, idx


def _additive_topk_backward(q, keys, idx, dscore):
    dq = _grad_like(q)
    dkeys = _grad_like(keys)
    _call(lib.ultramem_additive_topk_backward, q, keys, idx, dscore, dq, dkeys, _stream(q))
    return dq, dkeys


def _tucker_shapes(q, cores, m):
    if q.dim() != 5 or cores.dim() != 4:
        return (0,), (0,)
    return (*q.shape[:2], m), (*q.shape[:2], m, cores.shape[1])


def _tucker_topk(q, keys, cores, u, v, m, k1=0):
    ishape, sshape = _tucker_shapes(q, cores, m)
    idx = torch.empty(ishape, dtype=_index_dtype(_n_squared(keys, 3) - 1), device=q.device)
    score = torch.empty(sshape, dtype=_promote(q, keys, cores), device=q.device)
    _call(lib.ultramem_tucker_topk_forward, q, keys, cores, u, v, m, k1, idx, score, _stream(q))
    return score, idx


def _tucker_topk_backward(q, keys, cores, u, v, idx, dscore):
    grads = tuple(_grad_like(t) for t in (q, keys, cores))
    _call(lib.ultramem_tucker_topk_backward, q, keys, cores, u, v, idx, dscore, *grads, _stream(q))
    return grads


# --- index map and score functions ---------------------------------------------------------


def _map_dtype(idx, total_rows):
    """``rho`` is below ``total_rows``; int64 input asks for int64 output."""
    return torch.int64 if idx.dtype == torch.int64 else _index_dtype(total_rows - 1)


def _index_map(idx, shuffle, rows_per_layer, offset, total_rows):
    out = torch.empty(idx.shape, dtype=_map_dtype(idx, total_rows), device=idx.device)
    _call(
        lib.ultramem_index_map_forward,
        *(idx, shuffle, rows_per_layer, offset, total_rows, out, _stream(idx)),
    )
    return out


def _score_fn(score, func):
    out = torch.empty_like(score, memory_format=torch.contiguous_format)
    _call(lib.ultramem_score_fn_forward, score, func, out, _stream(score))
    return out


def _score_fn_backward(score, func, dout):
    ds = torch.empty_like(score, memory_format=torch.contiguous_format)
    _call(lib.ultramem_score_fn_backward, score, func, dout, ds, _stream(score))
    return ds


_IMPLS = {
    "weighted_gather": _weighted_gather,
    "weighted_gather_backward": _weighted_gather_backward,
    "peer_ffn": _peer_ffn,
    "peer_ffn_backward": _peer_ffn_backward,
    "additive_topk": _additive_topk,
    "additive_topk_backward": _additive_topk_backward,
    "tucker_topk": _tucker_topk,
    "tucker_topk_backward": _tucker_topk_backward,
    "index_map": _index_map,
    "score_fn": _score_fn,
    "score_fn_backward": _score_fn_backward,
}
for _name, _fn in _IMPLS.items():
    _lib.impl(_name, _fn, "CPU")
    _lib.impl(_name, _fn, "CUDA")


# --- fake kernels (shapes and dtypes only) for torch.compile and meta tensors ----------------


@torch.library.register_fake("ultramem::weighted_gather")
def _(rows, weights, table):
    return weights.new_empty((rows.shape[0], table.shape[1]), dtype=_promote(weights, table))


@torch.library.register_fake("ultramem::weighted_gather_backward")
def _(rows, weights, table, dout):
    return _grad_like(weights), _grad_like(table)


@torch.library.register_fake("ultramem::peer_ffn")
def _(rows, scores, z, down, up, activation=0):
    return z.new_empty((rows.shape[0], up.shape[1]), dtype=_promote(scores, z, down, up))


@torch.library.register_fake("ultramem::peer_ffn_backward")
def _(rows, scores, z, down, up, activation, dout):
    return tuple(_grad_like(t) for t in (z, scores, down, up))


@torch.library.register_fake("ultramem::additive_topk")
def _(q, keys, k, k1=0):
    shape = (q.shape[0], q.shape[1], k)
    idx = q.new_empty(shape, dtype=_index_dtype(_n_squared(keys, 2) - 1))
    return q.new_empty(shape, dtype=_promote(q, keys)), idx


@torch.library.register_fake("ultramem::additive_topk_backward")
def _(q, keys, idx, dscore):
    return _grad_like(q), _grad_like(keys)


@torch.library.register_fake("ultramem::tucker_topk")
def _(q, keys, cores, u, v, m, k1=0):
    ishape, sshape = (q.shape[0], q.shape[1], m), (q.shape[0], q.shape[1], m, cores.shape[1])
    score = q.new_empty(sshape, dtype=_promote(q, keys, cores))
    return score, q.new_empty(ishape, dtype=_index_dtype(_n_squared(keys, 3) - 1))


@torch.library.register_fake("ultramem::tucker_topk_backward")
def _(q, keys, cores, u, v, idx, dscore):
    return _grad_like(q), _grad_like(keys), _grad_like(cores)


@torch.library.register_fake("ultramem::index_map")
def _(idx, shuffle, rows_per_layer, offset, total_rows):
    return torch.empty(idx.shape, dtype=_map_dtype(idx, total_rows), device=idx.device)


@torch.library.register_fake("ultramem::score_fn")
def _(score, func):
    return torch.empty_like(score)


@torch.library.register_fake("ultramem::score_fn_backward")
def _(score, func, dout):
    return torch.empty_like(score)


# --- autograd ------------------------------------------------------------------------------


def _dense(g, like):
    # Autograd may hand an expanded or absent gradient; the ABI takes contiguous tensors.
    return torch.zeros_like(like) if g is None else g.contiguous()


def _gather_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _gather_backward(ctx, grad):
    rows, weights, table = ctx.saved_tensors
    dw, dt = torch.ops.ultramem.weighted_gather_backward(rows, weights, table, grad.contiguous())
    return None, dw, dt


def _peer_setup(ctx, inputs, output):
    *tensors, activation = inputs
    ctx.activation = activation
    ctx.save_for_backward(*tensors)


def _peer_backward(ctx, grad):
    rows, scores, z, down, up = ctx.saved_tensors
    dz, ds, ddown, dup = torch.ops.ultramem.peer_ffn_backward(
        rows, scores, z, down, up, ctx.activation, grad.contiguous()
    )
    return None, ds, dz, ddown, dup, None


def _additive_setup(ctx, inputs, output):
    q, keys, _k, _k1 = inputs
    ctx.save_for_backward(q, keys, output[1], output[0])


def _additive_backward(ctx, gscore, _gidx):
    q, keys, idx, score = ctx.saved_tensors
    dq, dkeys = torch.ops.ultramem.additive_topk_backward(q, keys, idx, _dense(gscore, score))
    return dq, dkeys, None, None


def _tucker_setup(ctx, inputs, output):
    q, keys, cores, u, v, _m, _k1 = inputs
    ctx.save_for_backward(q, keys, cores, u, v, output[1], output[0])


def _tucker_backward(ctx, gscore, _gidx):
    q, keys, cores, u, v, idx, score = ctx.saved_tensors
    dq, dkeys, dcores = torch.ops.ultramem.tucker_topk_backward(
        q, keys, cores, u, v, idx, _dense(gscore, score)
    )
    # The proxy (u, v) only chose the candidates: no gradient (as in the paper's code).
    return dq, dkeys, dcores, None, None, None, None


def _score_setup(ctx, inputs, output):
    score, func = inputs
    ctx.func = func
    ctx.save_for_backward(score)


def _score_backward(ctx, grad):
    (score,) = ctx.saved_tensors
    return torch.ops.ultramem.score_fn_backward(score, ctx.func, grad.contiguous()), None


torch.library.register_autograd(
    "ultramem::weighted_gather", _gather_backward, setup_context=_gather_setup
)
torch.library.register_autograd("ultramem::peer_ffn", _peer_backward, setup_context=_peer_setup)
torch.library.register_autograd(
    "ultramem::additive_topk", _additive_backward, setup_context=_additive_setup
)
torch.library.register_autograd(
    "ultramem::tucker_topk", _tucker_backward, setup_context=_tucker_setup
)
torch.library.register_autograd("ultramem::score_fn", _score_backward, setup_context=_score_setup)
