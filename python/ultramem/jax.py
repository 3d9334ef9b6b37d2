"""ultramem's forward ops on JAX arrays (eager, CPU arrays).

Inputs cross to the C ABI through each array's ``__dlpack__`` (no copy); outputs are numpy
arrays the ABI writes into, returned as JAX arrays. Not traceable under ``jax.jit``: these are
eager calls (a ``jax.pure_callback`` around them would be the way into a jitted function).
"""

import jax
import jax.numpy as jnp
import numpy as np

from ._lib import check, dltensor, lib

__all__ = [
    "weighted_gather",
    "peer_ffn",
    "additive_topk",
    "tucker_topk",
    "index_map",
    "score_fn",
]


def _call(fn, inputs, scalars, outputs):
    caps = [None if x is None else x.__dlpack__() for x in inputs]
    outs = [o.__dlpack__() for o in outputs]
    args = [None if c is None else dltensor(c) for c in caps] + list(scalars)
    args += [dltensor(c) for c in outs]
    check(fn(*args, None))
    return tuple(jnp.asarray(o) for o in outputs)


def _float_dtype(*arrays):
    return np.result_type(*(np.dtype(a.dtype) for a in arrays))


def weighted_gather(rows, weights, table):
    """``out[T, Dv]``: see ``torch.ops.ultramem.weighted_gather``."""
    out = np.empty((rows.shape[0], table.shape[-1]), dtype=_float_dtype(weights, table))
    return _call(lib.ultramem_weighted_gather_forward, [rows, weights, table], [], [out])[0]


def peer_ffn(rows, scores, z, down, up, activation=0):
    """``out[T, Dv]``: see ``torch.ops.ultramem.peer_ffn``."""
    out = np.empty((rows.shape[0], up.shape[-1]), dtype=_float_dtype(scores, z, down, up))
    return _call(
        lib.ultramem_peer_ffn_forward, [rows, scores, z, down, up], [activation], [out]
    )[0]


def _index_dtype(largest):
    """Index outputs are int32 when every possible value (at most ``largest``) is below 2^31,
    int64 otherwise (spec I.6.1), as in ``torch.ops.ultramem``. JAX without ``jax_enable_x64``
    would silently truncate an int64 result to int32, so that case raises instead."""
    if largest < 2**31:
        return np.int32
    if not jax.config.jax_enable_x64:
        raise OverflowError(
            f"index values up to {largest} need int64 results; enable jax_enable_x64"
        )
    return np.int64


def additive_topk(q, keys, k, k1=0):
    """``(score[T, H, k], idx[T, H, k])``, in ``jax.lax.top_k``'s order; ``idx`` is int32
    when ``n² ≤ 2^31``, else int64."""
    shape = (q.shape[0], q.shape[1], k)
    idx = np.empty(shape, dtype=_index_dtype(keys.shape[2] ** 2 - 1))
    score = np.empty(shape, dtype=_float_dtype(q, keys))
    return _call(lib.ultramem_additive_topk_forward, [q, keys], [k, k1], [idx, score])[::-1]


def tucker_topk(q, keys, cores, u, v, m, k1=0):
    """``(score[T, H, m, Cn], idx[T, H, m])``; ``idx`` is int32 when ``n² ≤ 2^31``, else
    int64."""
    idx = np.empty((q.shape[0], q.shape[1], m), dtype=_index_dtype(keys.shape[3] ** 2 - 1))
    score = np.empty((q.shape[0], q.shape[1], m, cores.shape[1]), dtype=_float_dtype(q, keys, cores))
    return _call(
        lib.ultramem_tucker_topk_forward, [q, keys, cores, u, v], [m, k1], [idx, score]
    )[::-1]


def index_map(idx, shuffle, rows_per_layer, offset, total_rows):
    """Value rows, the shape of ``idx``: int64 for int64 ``idx`` or ``total_rows > 2^31``, else
    int32."""
    wide = np.dtype(idx.dtype) == np.int64
    out = np.empty(idx.shape, dtype=np.int64 if wide else _index_dtype(total_rows - 1))
    return _call(
        lib.ultramem_index_map_forward,
        [idx, shuffle],
        [rows_per_layer, offset, total_rows],
        [out],
    )[0]


def score_fn(score, func):
    """The score function (0 raw, 1 softmax, 2 relu, 3 sigmoid), the shape of ``score``."""
    out = np.empty(score.shape, dtype=np.dtype(score.dtype))
    return _call(lib.ultramem_score_fn_forward, [score], [func], [out])[0]
