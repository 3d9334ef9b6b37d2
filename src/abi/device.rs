//! The C ABI's GPU path, generic over the backend: checked tensor descriptions ([`View`]) and
//! device buffers in, the op's kernels run, results copied into the caller's output buffers.
//! Sizes and output shapes are checked by the same functions as the host path's
//! (`shapes.rs`); this file adds the dtypes the kernels take.
//!
//! The C entry points run it on CUDA over the caller's memory (`cuda_backend`'s
//! `with_foreign`); the differential tests run it in the PTX interpreter against the ABI's CPU
//! path. Kernels take f32 for every small operand and f32/f16/bf16 tables, and read and write
//! u32 indices: int32/uint32 index tensors are handed over as they are, int64 ones narrowed
//! (inputs) or widened (outputs) on the device (`gpu::index_cast`); float64 is the CPU path's.
//! A negative int32 index, which the kernels see as `>= 2^31`, is reported as the caller wrote it.
//! Backward passes run [`BackwardMode::Deterministic`]: bitwise reproducible, like the CPU.

use super::shapes;
use super::view::{Elem, View};
use crate::dims::BackwardMode;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::peer_ffn::PeerBuffers;
use crate::gpu::product_key_topk::{
    additive_backward_buffers, additive_forward_buffers, tucker_backward_buffers,
    tucker_forward_buffers, TuckerBuffers,
};
use crate::gpu::weighted_gather::GatherBuffers;
use crate::gpu::{self, Gpu};
use crate::{Activation, IndexMapConfig, ScoreFn};

const MODE: BackwardMode = BackwardMode::Deterministic;

/// Copies a result into the caller's output (same byte length, checked).
fn copy_out<G: Gpu>(gpu: &G, result: &G::Buffer, out: &mut G::Buffer, view: &View) -> Result<()> {
    let bytes = view.bytes();
    if bytes > 0 {
        gpu.copy(result, 0, out, 0, bytes)?;
    }
    Ok(())
}

/// The u32 copy the kernels read of an `int64` index input (each value checked below `bound`,
/// at most `2^32`), or `None` for int32/uint32 input, which the kernels read in place.
fn narrowed<G: Gpu>(gpu: &G, v: &View, buf: &G::Buffer, bound: u64) -> Result<Option<G::Buffer>> {
    match v.elem {
        Elem::I64 => gpu::index_cast::narrow(gpu, v.op, v.arg, buf, v.numel(), bound).map(Some),
        _ => Ok(None),
    }
}

/// Writes a u32 index result into the caller's output: copied (int32/uint32, whose values the
/// caller's `gpu_indices` bound made fit) or widened (int64).
fn index_out<G: Gpu>(gpu: &G, result: &G::Buffer, out: &mut G::Buffer, view: &View) -> Result<()> {
    match view.elem {
        Elem::I64 => gpu::index_cast::widen(gpu, view.op, view.arg, result, view.numel(), out),
        _ => copy_out(gpu, result, out, view),
    }
}

/// An error as the caller sees it: an int32 index the kernels read as `>= 2^31` (as u32) was
/// negative, and is reported with the value the caller wrote.
fn as_written(mut e: Error, indices: &[&View]) -> Error {
    fn fix(e: &mut Error, indices: &[&View]) {
        match e {
            Error::IndexOutOfRange { arg, index, .. } => {
                let signed = indices.iter().any(|v| v.arg == *arg && v.elem == Elem::I32);
                if let (true, Ok(word)) = (signed, u32::try_from(*index)) {
                    *index = i64::from(word as i32);
                }
            }
            Error::Several { errors } => errors.iter_mut().for_each(|e| fix(e, indices)),
            _ => {}
        }
    }
    fix(&mut e, indices);
    e
}

/// Weighted gather forward: views `[rows, weights, table, out]`, inputs `[rows, weights, table]`.
///
/// # Errors
/// Those of the CPU path, dtypes the kernels do not take, the kernels' errors.
pub fn weighted_gather_forward<G: Gpu>(
    gpu: &G,
    [rows, weights, table, out]: [&View; 4],
    [r, w, t]: [&G::Buffer; 3],
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let d = shapes::weighted_gather_forward([rows, weights, table, out])?;
    out.gpu_f32()?;
    rows.gpu_indices(d.table_rows as u64)?;
    weights.gpu_f32()?;
    let narrow = narrowed(gpu, rows, r, d.table_rows as u64)?;
    let b = GatherBuffers {
        rows: narrow.as_ref().unwrap_or(r),
        weights: w,
        table: t,
    };
    let y = gpu::weighted_gather::forward(gpu, &d, table.gpu_table()?, &b)
        .map_err(|e| as_written(e, &[rows]))?;
    copy_out(gpu, &y, out_buf, out)
}

/// Weighted gather backward: views `[rows, weights, table, dout, dweights, dtable]`, inputs
/// `[rows, weights, table, dout]`, outputs `[dweights, dtable]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn weighted_gather_backward<G: Gpu>(
    gpu: &G,
    [rows, weights, table, dout, dweights, dtable]: [&View; 6],
    [r, w, t, g]: [&G::Buffer; 4],
    [dw_buf, dt_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let d = shapes::weighted_gather_backward([rows, weights, table, dout, dweights, dtable])?;
    for v in [dout, dweights, dtable, weights] {
        v.gpu_f32()?;
    }
    rows.gpu_indices(d.table_rows as u64)?;
    let narrow = narrowed(gpu, rows, r, d.table_rows as u64)?;
    let b = GatherBuffers {
        rows: narrow.as_ref().unwrap_or(r),
        weights: w,
        table: t,
    };
    let (dw, dt) = gpu::weighted_gather::backward(gpu, &d, table.gpu_table()?, MODE, &b, g)
        .map_err(|e| as_written(e, &[rows]))?;
    copy_out(gpu, &dw, dw_buf, dweights)?;
    copy_out(gpu, &dt, dt_buf, dtable)
}

/// The dtypes the PEER kernels take: int32/uint32/int64 rows, f32 scores and `z`, a table
/// dtype.
fn peer_dtypes([rows, scores, z, down]: [&View; 4], table_rows: usize) -> Result<DType> {
    rows.gpu_indices(table_rows as u64)?;
    scores.gpu_f32()?;
    z.gpu_f32()?;
    down.gpu_table()
}

/// PEER FFN forward: views `[rows, scores, z, down, up, out]`, inputs `[rows, scores, z, down,
/// up]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn peer_ffn_forward<G: Gpu>(
    gpu: &G,
    [rows, scores, z, down, up, out]: [&View; 6],
    act: Activation,
    [r, s, zb, dn, u]: [&G::Buffer; 5],
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let d = shapes::peer_ffn_forward([rows, scores, z, down, up, out])?;
    let dtype = peer_dtypes([rows, scores, z, down], d.table_rows)?;
    out.gpu_f32()?;
    let narrow = narrowed(gpu, rows, r, d.table_rows as u64)?;
    let b = PeerBuffers {
        rows: narrow.as_ref().unwrap_or(r),
        scores: s,
        z: zb,
        down: dn,
        up: u,
    };
    let y = gpu::peer_ffn::forward(gpu, &d, dtype, act, &b).map_err(|e| as_written(e, &[rows]))?;
    copy_out(gpu, &y, out_buf, out)
}

/// PEER FFN backward: views `[rows, scores, z, down, up, dout, dz, dscores, ddown, dup]`,
/// inputs `[rows, scores, z, down, up, dout]`, outputs `[dz, dscores, ddown, dup]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn peer_ffn_backward<G: Gpu>(
    gpu: &G,
    m: [&View; 10],
    act: Activation,
    [r, s, zb, dn, u, g]: [&G::Buffer; 6],
    outs: [&mut G::Buffer; 4],
) -> Result<()> {
    let d = shapes::peer_ffn_backward(m)?;
    let [rows, scores, z, down, _, dout, dz, dscores, ddown, dup] = m;
    let dtype = peer_dtypes([rows, scores, z, down], d.table_rows)?;
    for v in [dout, dz, dscores, ddown, dup] {
        v.gpu_f32()?;
    }
    let narrow = narrowed(gpu, rows, r, d.table_rows as u64)?;
    let b = PeerBuffers {
        rows: narrow.as_ref().unwrap_or(r),
        scores: s,
        z: zb,
        down: dn,
        up: u,
    };
    let grads = gpu::peer_ffn::backward(gpu, &d, dtype, act, MODE, &b, g)
        .map_err(|e| as_written(e, &[rows]))?;
    let [dz_buf, ds_buf, ddown_buf, dup_buf] = outs;
    copy_out(gpu, &grads.dz, dz_buf, dz)?;
    copy_out(gpu, &grads.dscores, ds_buf, dscores)?;
    copy_out(gpu, &grads.ddown, ddown_buf, ddown)?;
    copy_out(gpu, &grads.dup, dup_buf, dup)
}

/// Additive top-k forward: views `[q, keys, idx, score]`, inputs `[q, keys]`, outputs
/// `[idx, score]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn additive_topk_forward<G: Gpu>(
    gpu: &G,
    [q, keys, idx, score]: [&View; 4],
    k: usize,
    k1: Option<usize>,
    [qb, kb]: [&G::Buffer; 2],
    [idx_buf, score_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let d = shapes::additive_topk_forward([q, keys, idx, score], k, k1)?;
    idx.gpu_indices((d.n as u64).pow(2))?;
    score.gpu_f32()?;
    q.gpu_f32()?;
    let (i, s) = additive_forward_buffers(gpu, &d, keys.gpu_table()?, qb, kb)?;
    index_out(gpu, &i, idx_buf, idx)?;
    copy_out(gpu, &s, score_buf, score)
}

/// Additive top-k backward: views `[q, keys, idx, dscore, dq, dkeys]`, inputs
/// `[q, keys, idx, dscore]`, outputs `[dq, dkeys]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn additive_topk_backward<G: Gpu>(
    gpu: &G,
    [q, keys, idx, dscore, dq, dkeys]: [&View; 6],
    [qb, kb, ib, gb]: [&G::Buffer; 4],
    [dq_buf, dk_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let d = shapes::additive_topk_backward([q, keys, idx, dscore, dq, dkeys])?;
    idx.gpu_indices((d.n as u64).pow(2))?;
    for v in [dscore, dq, dkeys, q] {
        v.gpu_f32()?;
    }
    let narrow = narrowed(gpu, idx, ib, (d.n as u64).pow(2))?;
    let ib = narrow.as_ref().unwrap_or(ib);
    let (gq, gk) = additive_backward_buffers(gpu, &d, keys.gpu_table()?, MODE, qb, kb, ib, gb)
        .map_err(|e| as_written(e, &[idx]))?;
    copy_out(gpu, &gq, dq_buf, dq)?;
    copy_out(gpu, &gk, dk_buf, dkeys)
}

/// The small Tucker operands the kernels take in f32.
fn tucker_f32([q, cores, u, v]: [&View; 4]) -> Result<()> {
    for t in [q, cores, u, v] {
        t.gpu_f32()?;
    }
    Ok(())
}

/// Tucker top-k forward: views `[q, keys, cores, u, v, idx, score]`, inputs
/// `[q, keys, cores, u, v]`, outputs `[idx, score]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn tucker_topk_forward<G: Gpu>(
    gpu: &G,
    m: [&View; 7],
    top: usize,
    k1: Option<usize>,
    [qb, kb, cb, ub, vb]: [&G::Buffer; 5],
    [idx_buf, score_buf]: [&mut G::Buffer; 2],
) -> Result<()> {
    let d = shapes::tucker_topk_forward(m, top, k1)?;
    let [q, keys, cores, u, v, idx, score] = m;
    tucker_f32([q, cores, u, v])?;
    idx.gpu_indices((d.n as u64).pow(2))?;
    score.gpu_f32()?;
    let b = TuckerBuffers {
        q: qb,
        keys: kb,
        cores: cb,
        u: ub,
        v: vb,
    };
    let (i, s) = tucker_forward_buffers(gpu, &d, keys.gpu_table()?, &b)?;
    index_out(gpu, &i, idx_buf, idx)?;
    copy_out(gpu, &s, score_buf, score)
}

/// Tucker top-k backward: views `[q, keys, cores, u, v, idx, dscore, dq, dkeys, dcores]`,
/// inputs `[q, keys, cores, u, v, idx, dscore]`, outputs `[dq, dkeys, dcores]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn tucker_topk_backward<G: Gpu>(
    gpu: &G,
    m: [&View; 10],
    [qb, kb, cb, ub, vb, ib, gb]: [&G::Buffer; 7],
    [dq_buf, dk_buf, dc_buf]: [&mut G::Buffer; 3],
) -> Result<()> {
    let d = shapes::tucker_topk_backward(m)?;
    let [q, keys, cores, u, v, idx, dscore, dq, dkeys, dcores] = m;
    tucker_f32([q, cores, u, v])?;
    idx.gpu_indices((d.n as u64).pow(2))?;
    for t in [dscore, dq, dkeys, dcores] {
        t.gpu_f32()?;
    }
    let b = TuckerBuffers {
        q: qb,
        keys: kb,
        cores: cb,
        u: ub,
        v: vb,
    };
    let narrow = narrowed(gpu, idx, ib, (d.n as u64).pow(2))?;
    let ib = narrow.as_ref().unwrap_or(ib);
    let (gq, gk, gc) = tucker_backward_buffers(gpu, &d, keys.gpu_table()?, MODE, &b, ib, gb)
        .map_err(|e| as_written(e, &[idx]))?;
    copy_out(gpu, &gq, dq_buf, dq)?;
    copy_out(gpu, &gk, dk_buf, dkeys)?;
    copy_out(gpu, &gc, dc_buf, dcores)
}

/// Index map: views `[idx, shuffle (optional), out]`.
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn index_map_forward<G: Gpu>(
    gpu: &G,
    [idx, out]: [&View; 2],
    shuffle: Option<(&View, &G::Buffer)>,
    map: IndexMapConfig,
    ib: &G::Buffer,
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let d = shapes::index_map_forward([idx, out], shuffle.map(|(s, _)| s), map)?;
    // int32 ν and shuffle entries are bounded (and their negative values caught) in the kernel,
    // int64 ones when narrowed (the host path's bounds); the output must hold every row up to
    // N_tot.
    idx.gpu_indices(0)?;
    if let Some((s, _)) = shuffle {
        s.gpu_indices(0)?;
    }
    out.gpu_indices(d.map.total_rows)?;
    let signed = gpu::index_map::SignedIndices {
        idx: idx.elem == Elem::I32,
        shuffle: shuffle.is_some_and(|(s, _)| s.elem == Elem::I32),
    };
    let narrow_idx = narrowed(gpu, idx, ib, d.shuffle_len.map_or(1 << 32, |s| s as u64))?;
    let narrow_shuffle = match shuffle {
        Some((s, b)) => narrowed(gpu, s, b, 1 << 32)?,
        None => None,
    };
    let table = shuffle.map(|(_, b)| narrow_shuffle.as_ref().unwrap_or(b));
    let ib = narrow_idx.as_ref().unwrap_or(ib);
    let rows = gpu::index_map::forward(gpu, &d, ib, table, signed)?;
    index_out(gpu, &rows, out_buf, out)
}

/// Score function forward (`dout = None`, views `[score, out]`) or backward (`dout` given,
/// views `[score, dscore]`).
///
/// # Errors
/// As [`weighted_gather_forward`].
pub fn score_fn_run<G: Gpu>(
    gpu: &G,
    [score, out]: [&View; 2],
    func: ScoreFn,
    sb: &G::Buffer,
    dout: Option<(&View, &G::Buffer)>,
    out_buf: &mut G::Buffer,
) -> Result<()> {
    let d = match dout {
        None => shapes::score_fn(score, &[out])?,
        Some((g, _)) => shapes::score_fn(score, &[g, out])?,
    };
    for v in [score, out].into_iter().chain(dout.map(|(g, _)| g)) {
        v.gpu_f32()?;
    }
    let y = match dout {
        None => gpu::score_fn::forward(gpu, &d, func, sb)?,
        Some((_, gb)) => gpu::score_fn::backward(gpu, &d, func, sb, gb)?,
    };
    copy_out(gpu, &y, out_buf, out)
}
