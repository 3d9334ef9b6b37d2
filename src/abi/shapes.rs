//! Each ABI function's sizes and output shapes, checked once for both paths: the host path
//! (`mod.rs`) and the GPU path (`device.rs`) call the same function here, which turns the input
//! shapes into the op's dims (through the same `from_shapes` as the Rust API, so the messages
//! are the crate's) and requires every caller-allocated output to have exactly its shape.

use super::view::{same_tables, View};
use crate::dims::expect_shape;
use crate::error::Result;
use crate::{
    AdditiveTopkDims, IndexMapConfig, IndexMapDims, PeerFfnDims, ScoreFnDims, TuckerTopkDims,
    WeightedGatherDims,
};

/// `[rows, weights, table, out]`.
pub(crate) fn weighted_gather_forward(
    [rows, weights, table, out]: [&View; 4],
) -> Result<WeightedGatherDims> {
    let d = WeightedGatherDims::from_shapes(&rows.shape, &weights.shape, &table.shape)?;
    out.exactly(&[d.tokens, d.dv])?;
    Ok(d)
}

/// `[rows, weights, table, dout, dweights, dtable]`.
pub(crate) fn weighted_gather_backward(
    [rows, weights, table, dout, dweights, dtable]: [&View; 6],
) -> Result<WeightedGatherDims> {
    let d = WeightedGatherDims::from_shapes(&rows.shape, &weights.shape, &table.shape)?;
    dout.exactly(&[d.tokens, d.dv])?;
    dweights.exactly(&weights.shape)?;
    dtable.exactly(&table.shape)?;
    Ok(d)
}

fn peer_inputs([rows, scores, z, down, up]: [&View; 5]) -> Result<PeerFfnDims> {
    let d = PeerFfnDims::from_shapes(&rows.shape, &scores.shape, &z.shape, &down.shape, &up.shape)?;
    same_tables(down, up)?;
    Ok(d)
}

/// `[rows, scores, z, down, up, out]`; the tables share one dtype.
pub(crate) fn peer_ffn_forward(
    [rows, scores, z, down, up, out]: [&View; 6],
) -> Result<PeerFfnDims> {
    let d = peer_inputs([rows, scores, z, down, up])?;
    out.exactly(&[d.tokens, d.dv])?;
    Ok(d)
}

/// `[rows, scores, z, down, up, dout, dz, dscores, ddown, dup]`.
pub(crate) fn peer_ffn_backward(v: [&View; 10]) -> Result<PeerFfnDims> {
    let [rows, scores, z, down, up, dout, dz, dscores, ddown, dup] = v;
    let d = peer_inputs([rows, scores, z, down, up])?;
    dout.exactly(&[d.tokens, d.dv])?;
    dz.exactly(&z.shape)?;
    dscores.exactly(&scores.shape)?;
    ddown.exactly(&down.shape)?;
    dup.exactly(&up.shape)?;
    Ok(d)
}

/// `[q, keys, idx, score]` with `k` results and stage-1 width `k1` (`None`: `k`).
pub(crate) fn additive_topk_forward(
    [q, keys, idx, score]: [&View; 4],
    k: usize,
    k1: Option<usize>,
) -> Result<AdditiveTopkDims> {
    let d = AdditiveTopkDims::from_shapes(&q.shape, &keys.shape, k, k1)?;
    let shape = [d.tokens, d.heads, d.k];
    idx.exactly(&shape)?;
    score.exactly(&shape)?;
    Ok(d)
}

/// `[q, keys, idx, dscore, dq, dkeys]`; `k` is `idx`'s last size, and the stage-1 width one
/// that any forward with this `k` could have used (the backward does not depend on it).
pub(crate) fn additive_topk_backward(
    [q, keys, idx, dscore, dq, dkeys]: [&View; 6],
) -> Result<AdditiveTopkDims> {
    let k = idx.shape.get(2).copied().unwrap_or(0);
    let n = keys.shape.get(2).copied().unwrap_or(0);
    let d = AdditiveTopkDims::from_shapes(&q.shape, &keys.shape, k, Some(k.min(n).max(1)))?;
    let shape = [d.tokens, d.heads, d.k];
    idx.exactly(&shape)?;
    dscore.exactly(&shape)?;
    dq.exactly(&q.shape)?;
    dkeys.exactly(&keys.shape)?;
    Ok(d)
}

fn tucker_inputs(
    [q, keys, cores, u, v]: [&View; 5],
    m: usize,
    k1: Option<usize>,
) -> Result<TuckerTopkDims> {
    let shapes = [&q.shape[..], &keys.shape, &cores.shape, &u.shape, &v.shape];
    TuckerTopkDims::from_shapes(shapes, m, k1)
}

/// `[q, keys, cores, u, v, idx, score]` with `m` results and stage-1 width `k1`.
pub(crate) fn tucker_topk_forward(
    v: [&View; 7],
    m: usize,
    k1: Option<usize>,
) -> Result<TuckerTopkDims> {
    let [q, keys, cores, u, pv, idx, score] = v;
    let d = tucker_inputs([q, keys, cores, u, pv], m, k1)?;
    idx.exactly(&[d.tokens, d.heads, d.m])?;
    score.exactly(&[d.tokens, d.heads, d.m, d.cores])?;
    Ok(d)
}

/// `[q, keys, cores, u, v, idx, dscore, dq, dkeys, dcores]`; `m` is `idx`'s last size.
pub(crate) fn tucker_topk_backward(v: [&View; 10]) -> Result<TuckerTopkDims> {
    let [q, keys, cores, u, pv, idx, dscore, dq, dkeys, dcores] = v;
    let m = idx.shape.get(2).copied().unwrap_or(0);
    let d = tucker_inputs([q, keys, cores, u, pv], m, None)?;
    idx.exactly(&[d.tokens, d.heads, d.m])?;
    dscore.exactly(&[d.tokens, d.heads, d.m, d.cores])?;
    dq.exactly(&q.shape)?;
    dkeys.exactly(&keys.shape)?;
    dcores.exactly(&cores.shape)?;
    Ok(d)
}

/// `[idx, out]` and the optional shuffle table (rank 1).
pub(crate) fn index_map_forward(
    [idx, out]: [&View; 2],
    shuffle: Option<&View>,
    map: IndexMapConfig,
) -> Result<IndexMapDims> {
    let d = IndexMapDims::from_shapes(idx.numel(), shuffle.map(|s| &s.shape[..]), map)?;
    out.exactly(&idx.shape)?;
    Ok(d)
}

/// `[score, out]` (forward) or `[score, dout, dscore]` (backward): all of the score's shape.
pub(crate) fn score_fn(score: &View, others: &[&View]) -> Result<ScoreFnDims> {
    let d = ScoreFnDims::from_shape(&score.shape)?;
    for o in others {
        o.exactly(&score.shape)?;
    }
    Ok(d)
}

/// `[cores, u, v]` of the Tucker proxy: `(H, Cn, R)` from `cores[H, Cn, R, R]`, with `u` and `v`
/// (and the previous pair, when given) of `[H, R]`.
pub(crate) fn tucker_proxy(
    [cores, u, v]: [&View; 3],
    prev: Option<[&View; 2]>,
) -> Result<(usize, usize, usize)> {
    let op = cores.op;
    expect_shape(
        op,
        "cores",
        &cores.shape,
        &[("H", None), ("Cn", None), ("R", None), ("R", None)],
    )?;
    let (heads, n_cores, rank) = (cores.shape[0], cores.shape[1], cores.shape[2]);
    expect_shape(
        op,
        "cores",
        &cores.shape,
        &[("H", None), ("Cn", None), ("R", None), ("R", Some(rank))],
    )?;
    for t in [u, v].into_iter().chain(prev.into_iter().flatten()) {
        t.exactly(&[heads, rank])?;
    }
    Ok((heads, n_cores, rank))
}
