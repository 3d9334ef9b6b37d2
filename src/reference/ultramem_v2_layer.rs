//! The UltraMemV2 layer end to end on the CPU, forward and backward (Part II §3.5.2–3.5.3).
//!
//! Forward: `q = RMSNorm_γq(W_q x)` per `Dk` chunk; `K̂ = RMSNorm_γk(keys)`; Tucker top-k with
//! the buffers `(u, v)`; `ρ = map(shuffle[ν])`; `z = W_pre x`; PEER values with the per-core
//! scores; `o = W_out Y`. Backward runs the same chain in reverse through each op's reference
//! backward. No gradient flows through the selection, `(u, v)` or the shuffle table.

use super::{dense, peer_ffn, rmsnorm, tucker_topk, widen};
use crate::dims::index_map::IndexMapDims;
use crate::dims::ultramem_v2_layer::{QueryMode, UltraMemV2Config, UltraMemV2Params};
use crate::dtype::Float;
use crate::error::Result;
use crate::reference::check_len;

const OP: &str = "ultramem_v2_layer";

/// What the forward keeps for the backward.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerCache {
    /// Tokens `T`.
    pub tokens: usize,
    /// Query projections before the norm `[T, H·Q·Dk]`.
    pub q_raw: Vec<f64>,
    /// Normalised queries as the Tucker op reads them `[T, H, 2, R, Dk]`.
    pub q: Vec<f64>,
    /// Normalised keys `[H, 2, R, n, Dk]`.
    pub khat: Vec<f64>,
    /// Chosen virtual slots `[T, H, m]`.
    pub idx: Vec<u32>,
    /// Their per-core scores `[T, H, m, Cn]`.
    pub score: Vec<f64>,
    /// Value rows `[T, H·m]`.
    pub rows: Vec<u32>,
    /// Pre-value input `z = W_pre x` `[T, Dp]`.
    pub z: Vec<f64>,
    /// Gathered values before `W_out` `[T, Dv]`.
    pub y: Vec<f64>,
}

/// The output `o[T, D]` and the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerForward {
    /// `o = W_out Y`, `[T, D]`.
    pub out: Vec<f64>,
    /// What the backward needs.
    pub cache: LayerCache,
}

/// Gradients of every parameter and of the input, in f64 (the shapes of
/// [`UltraMemV2Params`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerGrads {
    /// `[T, D]`.
    pub dx: Vec<f64>,
    /// `W_q`.
    pub w_q: Vec<f64>,
    /// `γ_q`.
    pub gamma_q: Vec<f64>,
    /// Keys (before the norm).
    pub keys: Vec<f64>,
    /// `γ_k`.
    pub gamma_k: Vec<f64>,
    /// Cores.
    pub cores: Vec<f64>,
    /// `W_pre`.
    pub w_pre: Vec<f64>,
    /// Down table (dense, zero in untouched rows).
    pub down: Vec<f64>,
    /// Up table (dense, zero in untouched rows).
    pub up: Vec<f64>,
    /// `W_out`.
    pub w_out: Vec<f64>,
}

/// Queries `[T, H, Q, Dk]` as the Tucker op reads them, `[T, H, 2, R, Dk]`: per-rank queries are
/// already in that order; tied ones are repeated over the ranks.
pub fn expand_queries(cfg: &UltraMemV2Config, q: &[f64], tokens: usize) -> Vec<f64> {
    match cfg.query_mode {
        QueryMode::PerRank => q.to_vec(),
        QueryMode::Tied => {
            let mut out = Vec::with_capacity(tokens * cfg.heads * 2 * cfg.rank * cfg.dk);
            for side in q.chunks_exact(cfg.dk) {
                for _ in 0..cfg.rank {
                    out.extend_from_slice(side);
                }
            }
            out
        }
    }
}

/// The scoring inputs for `x[T, D]` (widened): the query projections before the norm
/// `q̃[T, H·Q·Dk]`, the normalised queries as the Tucker op reads them `[T, H, 2, R, Dk]`, and the
/// normalised keys `K̂[H, 2, R, n, Dk]`.
///
/// # Errors
/// [`crate::Error::OutOfMemory`] from the norms.
pub fn scoring_inputs<W: Float>(
    cfg: &UltraMemV2Config,
    w_q: &[W],
    gamma_q: &[W],
    keys: &[W],
    gamma_k: &[W],
    xs: &[f64],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let tokens = xs.len() / cfg.d_model;
    let q_raw = dense::matvec_rows(&widen(w_q), cfg.query_rows(), cfg.d_model, xs);
    let q = expand_queries(
        cfg,
        &rmsnorm::forward(&q_raw, &widen(gamma_q), cfg.eps)?,
        tokens,
    );
    let khat = rmsnorm::forward(&widen(keys), &widen(gamma_k), cfg.eps)?;
    Ok((q_raw, q, khat))
}

/// The layer forward over `x[T, D]`.
///
/// # Errors
/// Bad config or parameter lengths, a wrong `x` length, a non-finite `x` (it reaches the
/// queries) or proxy, and the errors of the ops inside.
pub fn forward<W: Float, V: Float, X: Float>(
    cfg: &UltraMemV2Config,
    p: &UltraMemV2Params<W, V>,
    x: &[X],
) -> Result<LayerForward> {
    p.check(cfg)?;
    let d = cfg.d_model;
    let tokens = x.len() / d;
    check_len(OP, "x", x, tokens * d)?;
    let xs = widen(x);
    let q_raw = dense::matvec_rows(&widen(&p.w_q), cfg.query_rows(), d, &xs);
    let q = expand_queries(
        cfg,
        &rmsnorm::forward(&q_raw, &widen(&p.gamma_q), cfg.eps)?,
        tokens,
    );
    let khat = rmsnorm::forward(&widen(&p.keys), &widen(&p.gamma_k), cfg.eps)?;
    let (idx, score) =
        tucker_topk::forward(&cfg.tucker_dims(tokens), &q, &khat, &p.cores, &p.u, &p.v)?;
    let map = IndexMapDims {
        len: idx.len(),
        shuffle_len: p.shuffle.as_ref().map(Vec::len),
        map: cfg.map,
    };
    let rows = super::index_map::forward(&map, &idx, p.shuffle.as_deref())?;
    let z = dense::matvec_rows(&widen(&p.w_pre), cfg.dp, d, &xs);
    let y = peer_ffn::forward(
        &cfg.peer_dims(tokens),
        cfg.activation,
        &rows,
        &score,
        &z,
        &p.down,
        &p.up,
    )?;
    let out = dense::matvec_rows(&widen(&p.w_out), d, cfg.dv, &y);
    Ok(LayerForward {
        out,
        cache: LayerCache {
            tokens,
            q_raw,
            q,
            khat,
            idx,
            score,
            rows,
            z,
            y,
        },
    })
}

/// The layer backward given `dout[T, D]` and the forward's cache.
///
/// # Errors
/// Bad config or parameter lengths, wrong `x`, `dout` or cache lengths.
pub fn backward<W: Float, V: Float, X: Float, G: Float>(
    cfg: &UltraMemV2Config,
    p: &UltraMemV2Params<W, V>,
    x: &[X],
    cache: &LayerCache,
    dout: &[G],
) -> Result<LayerGrads> {
    p.check(cfg)?;
    let (d, tokens) = (cfg.d_model, cache.tokens);
    check_len(OP, "x", x, tokens * d)?;
    check_len(OP, "dout", dout, tokens * d)?;
    check_len(OP, "cache.y", &cache.y, tokens * cfg.dv)?;
    let xs = widen(x);
    let mut w_out = vec![0.0; p.w_out.len()];
    let dy = dense::matvec_rows_backward(
        &widen(&p.w_out),
        d,
        cfg.dv,
        &cache.y,
        &widen(dout),
        &mut w_out,
    );
    let peer = peer_ffn::backward(
        &cfg.peer_dims(tokens),
        cfg.activation,
        &cache.rows,
        &cache.score,
        &cache.z,
        &p.down,
        &p.up,
        &dy,
    )?;
    let mut w_pre = vec![0.0; p.w_pre.len()];
    let mut dx =
        dense::matvec_rows_backward(&widen(&p.w_pre), cfg.dp, d, &xs, &peer.dz, &mut w_pre);
    let tucker = tucker_topk::backward(
        &cfg.tucker_dims(tokens),
        &cache.q,
        &cache.khat,
        &p.cores,
        &cache.idx,
        &peer.dscores,
    )?;
    // Tied queries feed every rank: their gradient is the sum over ranks.
    let dq_norm = match cfg.query_mode {
        QueryMode::PerRank => tucker.dq,
        QueryMode::Tied => tucker
            .dq
            .chunks_exact(cfg.rank * cfg.dk)
            .flat_map(|ranks| {
                (0..cfg.dk).map(move |e| (0..cfg.rank).map(|r| ranks[r * cfg.dk + e]).sum::<f64>())
            })
            .collect(),
    };
    let mut gamma_q = vec![0.0; cfg.dk];
    let dq_raw = rmsnorm::backward(
        &cache.q_raw,
        &widen(&p.gamma_q),
        cfg.eps,
        &dq_norm,
        &mut gamma_q,
    )?;
    let mut w_q = vec![0.0; p.w_q.len()];
    let dx_q =
        dense::matvec_rows_backward(&widen(&p.w_q), cfg.query_rows(), d, &xs, &dq_raw, &mut w_q);
    dx.iter_mut().zip(&dx_q).for_each(|(a, b)| *a += b);
    let mut gamma_k = vec![0.0; cfg.dk];
    let keys = rmsnorm::backward(
        &widen(&p.keys),
        &widen(&p.gamma_k),
        cfg.eps,
        &tucker.dkeys,
        &mut gamma_k,
    )?;
    Ok(LayerGrads {
        dx,
        w_q,
        gamma_q,
        keys,
        gamma_k,
        cores: tucker.dcores,
        w_pre,
        down: peer.ddown,
        up: peer.dup,
        w_out,
    })
}
