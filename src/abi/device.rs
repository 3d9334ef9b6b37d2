//! The C ABI's GPU path, generic over the backend: checked tensor descriptions ([`Meta`]) and
//! device buffers in, the op's kernels run, results copied into the caller's output buffers.
//!
//! The C entry points run it on CUDA over the caller's memory (`cuda_backend`'s
//! `with_foreign`); the differential tests run it in the PTX interpreter against the ABI's CPU
//! path. Kernels take f32 for every small operand and f32/f16/bf16 tables, and write f32
//! values and u32 indices, so a GPU call takes exactly those (float64 is the CPU path's).
//! Backward passes run [`BackwardMode::Deterministic`]: bitwise reproducible, like the CPU.

use super::dlpack::Elem;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::peer_ffn::PeerBuffers;
use crate::gpu::product_key_topk::{
    additive_backward_buffers, additive_forward_buffers, tucker_backward_buffers,
    tucker_forward_buffers, TuckerBuffers,
};
use crate::gpu::weighted_gather::GatherBuffers;
use crate::gpu::{self, Gpu};
use crate::ops::expect_shape;
use crate::ops::BackwardMode;
use crate::{
    Activation, AdditiveTopkDims, IndexMapConfig, IndexMapDims, PeerFfnDims, ScoreFn, ScoreFnDims,
    TuckerTopkDims, WeightedGatherDims,
};

const MODE: BackwardMode = BackwardMode::Deterministic;

/// A checked description of one tensor of a GPU call: what the op needs besides its memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The op, for messages.
    pub op: &'static str,
    /// The argument, for messages.
    pub arg: &'static str,
    /// The sizes.
    pub shape: Vec<usize>,
    /// The element type.
    pub elem: Elem,
}

impl Meta {
    /// Bytes of the tensor.
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.elem.size()
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            op: self.op,
            backend: crate::Backend::Cuda,
            reason: format!("`{}` has dtype {:?}; on a GPU {what}", self.arg, self.elem),
        }
    }

    /// Errors unless the tensor holds int32/uint32 indices.
    fn indices(&self) -> Result<&Self> {
        match self.elem {
            Elem::I32 | Elem::U32 => Ok(self),
            _ => Err(self.unsupported("indices are int32 or uint32")),
        }
    }

    /// Errors unless the tensor is float32 (every small operand and every output on a GPU).
    fn f32(&self) -> Result<&Self> {
        match self.elem {
            Elem::F32 => Ok(self),
            _ => Err(self.unsupported("this operand is float32 (float64 runs on the CPU path)")),
        }
    }

    /// The dtype of a table the kernels read (f32, f16 or bf16).
    fn table(&self) -> Result<DType> {
        match self.elem {
            Elem::F32 => Ok(DType::F32),
            Elem::F16 => Ok(DType::F16),
            Elem::BF16 => Ok(DType::BF16),
            _ => Err(self.unsupported("tables are float32, float16 or bfloat16")),
        }
    }

    /// Errors unless the shape is exactly `want` (outputs).
    pub(crate) fn exactly(&self, want: &[usize]) -> Result<&Self> {
        if self.shape == want {
            Ok(self)
        } else {
            Err(Error::ShapeMismatch {
                op: self.op,
                arg: self.arg,
                expected: format!("{want:?}"),
                got: self.shape.clone(),
            })
        }
    }
}

/// Errors unless the PEER tables `down` and `up` share one dtype (on either path).
pub(crate) fn same_tables(down: &Meta, up: &Meta) -> Result<()> {
    if down.elem == up.elem {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        op: up.op,
        arg: up.arg,
        reason: format!(
            "dtype {:?} but `{}` has {:?}; the tables share one dtype",
            up.elem, down.arg, down.elem
        ),
    })
}

/// Copies a result into the caller's output (same byte length, checked).
fn copy_out<G: Gpu>(gpu: &G, result: &G::Buffer, out: &mut G::Buffer, meta: &Meta) -> Result<()> {
    let bytes = meta.bytes();
    if bytes > 0 {
        gpu.copy(result, 0, out, 0, bytes)?;
    }
    Ok(())
}

/// Weighted gather forward: metas `[rows, weights, table, out]`, inputs `[rows, weights, table]`.
///
/// # Errors
/// Those of the CPU path, dtypes the kernels do not take, the kernels' errors.
pub fn weighted_gather_forward<G: Gpu>(
    gpu: &G,
    [rows, weights, table, out]: [&Meta; 4],
    [r, w, t]: [&G::Buffer; 3],
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let d = WeightedGatherDims::from_shapes(&rows.shape, &weights.shape, &table.shape)?;
    out.exactly(&[d.tokens, d.dv])?.f32()?;
    rows.indices()?;
    weights.f32()?;
    let b = GatherBuffers {
        rows: r,
        weights: w,
        table: t,
    };
    let y = gpu::weighted_gather::forward(gpu, &d, table.table()?, &b)?;
    copy_out(gpu, &y, out_buf, out)
}

/// Weighted gather backward: metas `[rows, weights, table, dout, dweights, dtable]`, inputs
/// `[rows, weights, table, dout]`, outputs `[dweights, dtable]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn weighted_gather_backward<G: Gpu>(
    gpu: &G,
    [rows, weights, table, dout, dweights, dtable]: [&Meta; 6],
    [r, w, t, g]: [&G::Buffer; 4],
    [dw_buf, dt_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let d = WeightedGatherDims::from_shapes(&rows.shape, &weights.shape, &table.shape)?;
    dout.exactly(&[d.tokens, d.dv])?.f32()?;
    dweights.exactly(&weights.shape)?.f32()?;
    dtable.exactly(&table.shape)?.f32()?;
    rows.indices()?;
    weights.f32()?;
    let b = GatherBuffers {
        rows: r,
        weights: w,
        table: t,
    };
    let (dw, dt) = gpu::weighted_gather::backward(gpu, &d, table.table()?, MODE, &b, g)?;
    copy_out(gpu, &dw, dw_buf, dweights)?;
    copy_out(gpu, &dt, dt_buf, dtable)
}

fn peer_dims(m: [&Meta; 5]) -> Result<(PeerFfnDims, DType)> {
    let [rows, scores, z, down, up] = m;
    let d = PeerFfnDims::from_shapes(&rows.shape, &scores.shape, &z.shape, &down.shape, &up.shape)?;
    rows.indices()?;
    scores.f32()?;
    z.f32()?;
    let dtype = down.table()?;
    same_tables(down, up)?;
    Ok((d, dtype))
}

/// PEER FFN forward: metas `[rows, scores, z, down, up, out]`, inputs `[rows, scores, z, down,
/// up]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn peer_ffn_forward<G: Gpu>(
    gpu: &G,
    [rows, scores, z, down, up, out]: [&Meta; 6],
    act: Activation,
    [r, s, zb, dn, u]: [&G::Buffer; 5],
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let (d, dtype) = peer_dims([rows, scores, z, down, up])?;
    out.exactly(&[d.tokens, d.dv])?.f32()?;
    let b = PeerBuffers {
        rows: r,
        scores: s,
        z: zb,
        down: dn,
        up: u,
    };
    let y = gpu::peer_ffn::forward(gpu, &d, dtype, act, &b)?;
    copy_out(gpu, &y, out_buf, out)
}

/// PEER FFN backward: metas `[rows, scores, z, down, up, dout, dz, dscores, ddown, dup]`,
/// inputs `[rows, scores, z, down, up, dout]`, outputs `[dz, dscores, ddown, dup]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn peer_ffn_backward<G: Gpu>(
    gpu: &G,
    m: [&Meta; 10],
    act: Activation,
    [r, s, zb, dn, u, g]: [&G::Buffer; 6],
    outs: [&mut G::Buffer; 4],
) -> Result<()> {
    let [rows, scores, z, down, up, dout, dz, dscores, ddown, dup] = m;
    let (d, dtype) = peer_dims([rows, scores, z, down, up])?;
    dout.exactly(&[d.tokens, d.dv])?.f32()?;
    dz.exactly(&z.shape)?.f32()?;
    dscores.exactly(&scores.shape)?.f32()?;
    ddown.exactly(&down.shape)?.f32()?;
    dup.exactly(&up.shape)?.f32()?;
    let b = PeerBuffers {
        rows: r,
        scores: s,
        z: zb,
        down: dn,
        up: u,
    };
    let grads = gpu::peer_ffn::backward(gpu, &d, dtype, act, MODE, &b, g)?;
    let [dz_buf, ds_buf, ddown_buf, dup_buf] = outs;
    copy_out(gpu, &grads.dz, dz_buf, dz)?;
    copy_out(gpu, &grads.dscores, ds_buf, dscores)?;
    copy_out(gpu, &grads.ddown, ddown_buf, ddown)?;
    copy_out(gpu, &grads.dup, dup_buf, dup)
}

/// Additive top-k forward: metas `[q, keys, idx, score]`, inputs `[q, keys]`, outputs
/// `[idx, score]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn additive_topk_forward<G: Gpu>(
    gpu: &G,
    [q, keys, idx, score]: [&Meta; 4],
    k: usize,
    k1: Option<usize>,
    [qb, kb]: [&G::Buffer; 2],
    [idx_buf, score_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let d = AdditiveTopkDims::from_shapes(&q.shape, &keys.shape, k, k1)?;
    let shape = [d.tokens, d.heads, d.k];
    idx.exactly(&shape)?.indices()?;
    score.exactly(&shape)?.f32()?;
    q.f32()?;
    let (i, s) = additive_forward_buffers(gpu, &d, keys.table()?, qb, kb)?;
    copy_out(gpu, &i, idx_buf, idx)?;
    copy_out(gpu, &s, score_buf, score)
}

/// Additive top-k backward: metas `[q, keys, idx, dscore, dq, dkeys]`, inputs
/// `[q, keys, idx, dscore]`, outputs `[dq, dkeys]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn additive_topk_backward<G: Gpu>(
    gpu: &G,
    [q, keys, idx, dscore, dq, dkeys]: [&Meta; 6],
    [qb, kb, ib, gb]: [&G::Buffer; 4],
    [dq_buf, dk_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let k = idx.shape.get(2).copied().unwrap_or(0);
    let d = AdditiveTopkDims::from_shapes(&q.shape, &keys.shape, k, None)?;
    let shape = [d.tokens, d.heads, d.k];
    idx.exactly(&shape)?.indices()?;
    dscore.exactly(&shape)?.f32()?;
    dq.exactly(&q.shape)?.f32()?;
    dkeys.exactly(&keys.shape)?.f32()?;
    q.f32()?;
    let (gq, gk) = additive_backward_buffers(gpu, &d, keys.table()?, MODE, qb, kb, ib, gb)?;
    copy_out(gpu, &gq, dq_buf, dq)?;
    copy_out(gpu, &gk, dk_buf, dkeys)
}

fn tucker_dims(m: [&Meta; 5], top: usize, k1: Option<usize>) -> Result<TuckerTopkDims> {
    let [q, keys, cores, u, v] = m;
    let shapes = [&q.shape[..], &keys.shape, &cores.shape, &u.shape, &v.shape];
    let d = TuckerTopkDims::from_shapes(shapes, top, k1)?;
    for t in [q, cores, u, v] {
        t.f32()?;
    }
    Ok(d)
}

/// Tucker top-k forward: metas `[q, keys, cores, u, v, idx, score]`, inputs
/// `[q, keys, cores, u, v]`, outputs `[idx, score]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn tucker_topk_forward<G: Gpu>(
    gpu: &G,
    m: [&Meta; 7],
    top: usize,
    k1: Option<usize>,
    [qb, kb, cb, ub, vb]: [&G::Buffer; 5],
    [idx_buf, score_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let [q, keys, cores, u, v, idx, score] = m;
    let d = tucker_dims([q, keys, cores, u, v], top, k1)?;
    idx.exactly(&[d.tokens, d.heads, d.m])?.indices()?;
    score.exactly(&[d.tokens, d.heads, d.m, d.cores])?.f32()?;
    let b = TuckerBuffers {
        q: qb,
        keys: kb,
        cores: cb,
        u: ub,
        v: vb,
    };
    let (i, s) = tucker_forward_buffers(gpu, &d, keys.table()?, &b)?;
    copy_out(gpu, &i, idx_buf, idx)?;
    copy_out(gpu, &s, score_buf, score)
}

/// Tucker top-k backward: metas `[q, keys, cores, u, v, idx, dscore, dq, dkeys, dcores]`,
/// inputs `[q, keys, cores, u, v, idx, dscore]`, outputs `[dq, dkeys, dcores]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn tucker_topk_backward<G: Gpu>(
    gpu: &G,
    m: [&Meta; 10],
    [qb, kb, cb, ub, vb, ib, gb]: [&G::Buffer; 7],
    [dq_buf, dk_buf, dc_buf]: [&mut G::Buffer; 3],
) -> Result<()> {
    let [q, keys, cores, u, v, idx, dscore, dq, dkeys, dcores] = m;
    let top = idx.shape.get(2).copied().unwrap_or(0);
    let d = tucker_dims([q, keys, cores, u, v], top, None)?;
    idx.exactly(&[d.tokens, d.heads, d.m])?.indices()?;
    dscore.exactly(&[d.tokens, d.heads, d.m, d.cores])?.f32()?;
    dq.exactly(&q.shape)?.f32()?;
    dkeys.exactly(&keys.shape)?.f32()?;
    dcores.exactly(&cores.shape)?.f32()?;
    let b = TuckerBuffers {
        q: qb,
        keys: kb,
        cores: cb,
        u: ub,
        v: vb,
    };
    let (gq, gk, gc) = tucker_backward_buffers(gpu, &d, keys.table()?, MODE, &b, ib, gb)?;
    copy_out(gpu, &gq, dq_buf, dq)?;
    copy_out(gpu, &gk, dk_buf, dkeys)?;
    copy_out(gpu, &gc, dc_buf, dcores)
}

/// Index map: metas `[idx, shuffle (optional), out]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn index_map_forward<G: Gpu>(
    gpu: &G,
    [idx, out]: [&Meta; 2],
    shuffle: Option<(&Meta, &G::Buffer)>,
    map: IndexMapConfig,
    ib: &G::Buffer,
    out_buf: &mut G::Buffer,
) -> Result<()> {
    idx.indices()?;
    out.exactly(&idx.shape)?.indices()?;
    if let Some((s, _)) = shuffle {
        expect_shape(s.op, "shuffle", &s.shape, &[("V", None)])?;
        s.indices()?;
    }
    let d = IndexMapDims {
        len: idx.shape.iter().product(),
        shuffle_len: shuffle.map(|(s, _)| s.shape[0]),
        map,
    };
    d.check()?;
    let rows = gpu::index_map::forward(gpu, &d, ib, shuffle.map(|(_, b)| b))?;
    copy_out(gpu, &rows, out_buf, out)
}

/// Score function forward (`dout = None`, metas `[score, out]`) or backward (`dout` given,
/// metas `[score, dscore]`).
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn score_fn_run<G: Gpu>(
    gpu: &G,
    [score, out]: [&Meta; 2],
    func: ScoreFn,
    sb: &G::Buffer,
    dout: Option<(&Meta, &G::Buffer)>,
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let d = ScoreFnDims::from_shape(&score.shape)?;
    score.f32()?;
    out.exactly(&score.shape)?.f32()?;
    let y = match dout {
        None => gpu::score_fn::forward(gpu, &d, func, sb)?,
        Some((g, gb)) => {
            g.exactly(&score.shape)?.f32()?;
            gpu::score_fn::backward(gpu, &d, func, sb, gb)?
        }
    };
    copy_out(gpu, &y, out_buf, out)
}
