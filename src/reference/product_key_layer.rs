//! The additive product-key layers (PKM and PEER) in f64, composed from the reference ops: what
//! [`crate::layer::product_key::ProductKeyLayer`] is checked against.

use super::{check_len, dense, widen};
use crate::dims::product_key_layer::{ProductKeyConfig, ProductKeyKind, ProductKeyParams};
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "ProductKeyLayer";

/// The f64 reference of the layer: forward `(out[T, D], idx, score)` with the intermediate
/// values the backward needs.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerForward {
    /// `[T, D]`.
    pub out: Vec<f64>,
    /// Queries `[T, H·Dk]`.
    pub q: Vec<f64>,
    /// Chosen slots `[T, H, k]`.
    pub idx: Vec<u32>,
    /// Their raw scores `[T, H, k]`.
    pub score: Vec<f64>,
    /// Their weights after the score function `[T, H, k]`.
    pub weights: Vec<f64>,
}

/// The f64 reference gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerGrads {
    /// `[T, D]`.
    pub dx: Vec<f64>,
    /// `W_q`.
    pub w_q: Vec<f64>,
    /// Keys.
    pub keys: Vec<f64>,
    /// PEER's down table (empty for PKM).
    pub down: Vec<f64>,
    /// Values.
    pub values: Vec<f64>,
}

/// The layer forward in f64, composed from the reference ops.
///
/// # Errors
/// Bad config, parameter or `x` lengths, and the errors of the ops.
pub fn forward<W: Float, V: Float, X: Float>(
    cfg: &ProductKeyConfig,
    p: &ProductKeyParams<W, V>,
    x: &[X],
) -> Result<LayerForward> {
    p.check(cfg)?;
    let d = cfg.d_model;
    let tokens = x.len() / d;
    check_len(OP, "x", x, tokens * d)?;
    let xs = widen(x);
    let q = dense::matvec_rows(&widen(&p.w_q), cfg.heads * cfg.dk, d, &xs);
    let (idx, score) = super::additive_topk::forward(&cfg.topk_dims(tokens), &q, &p.keys)?;
    let weights = super::score_fn::forward(&cfg.score_dims(tokens), cfg.score_fn, &score)?;
    let out = match cfg.kind {
        ProductKeyKind::Pkm => {
            super::weighted_gather::forward(&cfg.gather_dims(tokens), &idx, &weights, &p.values)?
        }
        ProductKeyKind::Peer => super::peer_ffn::forward(
            &cfg.peer_dims(tokens),
            cfg.activation,
            &idx,
            &weights,
            &xs,
            &p.down,
            &p.values,
        )?,
    };
    Ok(LayerForward {
        out,
        q,
        idx,
        score,
        weights,
    })
}

/// The layer backward in f64 given `dout[T, D]`.
///
/// # Errors
/// Bad lengths, and the errors of the ops.
pub fn backward<W: Float, V: Float, X: Float, G: Float>(
    cfg: &ProductKeyConfig,
    p: &ProductKeyParams<W, V>,
    x: &[X],
    fwd: &LayerForward,
    dout: &[G],
) -> Result<LayerGrads> {
    p.check(cfg)?;
    let d = cfg.d_model;
    let tokens = x.len() / d;
    check_len(OP, "x", x, tokens * d)?;
    check_len(OP, "dout", dout, tokens * d)?;
    let xs = widen(x);
    let (dweights, mut dx, down, values) = match cfg.kind {
        ProductKeyKind::Pkm => {
            let (dw, dv) = super::weighted_gather::backward(
                &cfg.gather_dims(tokens),
                &fwd.idx,
                &fwd.weights,
                &p.values,
                dout,
            )?;
            (dw, vec![0.0; xs.len()], Vec::new(), dv)
        }
        ProductKeyKind::Peer => {
            let g = super::peer_ffn::backward(
                &cfg.peer_dims(tokens),
                cfg.activation,
                &fwd.idx,
                &fwd.weights,
                &xs,
                &p.down,
                &p.values,
                dout,
            )?;
            (g.dscores, g.dz, g.ddown, g.dup)
        }
    };
    let dscore =
        super::score_fn::backward(&cfg.score_dims(tokens), cfg.score_fn, &fwd.score, &dweights)?;
    let (dq, keys) =
        super::additive_topk::backward(&cfg.topk_dims(tokens), &fwd.q, &p.keys, &fwd.idx, &dscore)?;
    let mut w_q = vec![0.0; p.w_q.len()];
    let dx_q =
        dense::matvec_rows_backward(&widen(&p.w_q), cfg.heads * cfg.dk, d, &xs, &dq, &mut w_q);
    dx.iter_mut().zip(&dx_q).for_each(|(a, b)| *a += b);
    Ok(LayerGrads {
        dx,
        w_q,
        keys,
        down,
        values,
    })
}
