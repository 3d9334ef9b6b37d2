//! Additive product-key memory layers built from the same ops: PKM (Lample et al. 2019) and
//! PEER (He 2024), Part II §3.1–3.2, forward and backward on any device.
//!
//! Per token: `q = W_q x` (`[H, Dk]`), [`additive_topk`] per head (`k` of `n²` slots), a
//! [`score_fn`] over each head's `k` scores (softmax by default), then
//! - **PKM**: `o = Σ_h Σ_i w_i V[i]` — a [`weighted_gather`] from the value table `V[n², D]`;
//! - **PEER**: `o = Σ_h Σ_i w_i φ(<u_i, x>) v_i` — a [`peer_ffn`] with `z = x`, the expert
//!   tables `u[n², D]` (down) and `v[n², D]` (up), `φ` = GELU by default.
//!
//! Choices where the papers leave room (documented here, the crate's defaults): no query bias
//! and no query BatchNorm (PKM's BatchNorm is a training-time statistic, outside a kernel
//! crate; add a norm before the layer if you need one); heads share one table and their outputs
//! are summed; the output has width `D` (no output projection), as in PKM and PEER. Memory+
//! (SiLU-gated output, Part II §3.3) needs an elementwise gate kernel that has not landed.
//!
//! ```
//! use ultramem::layer::product_key::{ProductKeyConfig, ProductKeyLayer, ProductKeyParams};
//! use ultramem::{BackwardMode, Device, Tensor};
//!
//! let dev = Device::cpu();
//! let cfg = ProductKeyConfig::peer(16, 2, 8, 6, 4); // D, H, Dk, n, k
//! let layer = ProductKeyLayer::new(&dev, &cfg, &ProductKeyParams::init(&cfg, 1)?)?;
//! let x = Tensor::from_vec(&dev, &[2, 16], vec![0.25f32; 32])?;
//! let fwd = layer.forward(&x)?;
//! let dout = Tensor::from_vec(&dev, &[2, 16], vec![1.0f32; 32])?;
//! let grads = layer.backward(&x, &fwd.cache, &dout, BackwardMode::Deterministic)?;
//! assert_eq!(grads.keys.shape(), &[2, 2, 6, 4]);
//! # Ok::<(), ultramem::Error>(())
//! ```

use crate::device::Device;
pub use crate::dims::product_key_layer::{ProductKeyConfig, ProductKeyKind, ProductKeyParams};
use crate::dims::{expect_shape, BackwardMode};
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::ops::additive_topk::{additive_topk, additive_topk_backward, AdditiveTopkArgs};
use crate::ops::matmul::{matmul, MatmulArgs};
use crate::ops::peer_ffn::{peer_ffn, peer_ffn_backward, PeerFfnArgs};
use crate::ops::score_fn::{score_fn, score_fn_backward, ScoreFnArgs};
use crate::ops::weighted_gather::{weighted_gather, weighted_gather_backward, WeightedGatherArgs};
use crate::tensor::Tensor;

const OP: &str = "ProductKeyLayer";

/// A product-key layer whose parameters live on one device.
#[derive(Debug)]
pub struct ProductKeyLayer<V: Float = f32> {
    cfg: ProductKeyConfig,
    w_q: Tensor<f32>,
    keys: Tensor<f32>,
    /// PEER's down table (`None` for PKM).
    down: Option<Tensor<V>>,
    values: Tensor<V>,
}

/// What [`ProductKeyLayer::forward`] keeps for the backward.
#[derive(Debug)]
pub struct ProductKeyCache {
    /// Queries `[T, H, Dk]`.
    pub q: Tensor<f32>,
    /// Chosen slots as value rows `[T, H·k]`.
    pub rows: Tensor<u32>,
    /// Raw scores `[T, H, k]`.
    pub score: Tensor<f32>,
    /// Weights `[T, H·k, 1]`.
    pub weights: Tensor<f32>,
}

/// The output of [`ProductKeyLayer::forward`].
#[derive(Debug)]
pub struct ProductKeyForward {
    /// `[T, D]`.
    pub out: Tensor<f32>,
    /// What the backward needs.
    pub cache: ProductKeyCache,
}

/// Gradients on the layer's device, f32.
#[derive(Debug)]
pub struct ProductKeyGrads {
    /// `[T, D]`.
    pub dx: Tensor<f32>,
    /// `W_q` `[H·Dk, D]`.
    pub w_q: Tensor<f32>,
    /// Keys `[H, 2, n, Dk/2]`.
    pub keys: Tensor<f32>,
    /// PEER's down table (`None` for PKM).
    pub down: Option<Tensor<f32>>,
    /// Values `[n², D]`.
    pub values: Tensor<f32>,
}

impl<V: Float> ProductKeyLayer<V> {
    /// Uploads `params` (checked against `cfg`) to `device`.
    ///
    /// # Errors
    /// Those of [`ProductKeyParams::check`] and the device's upload errors.
    pub fn new(
        device: &Device,
        cfg: &ProductKeyConfig,
        params: &ProductKeyParams<f32, V>,
    ) -> Result<Self> {
        params.check(cfg)?;
        let (h, d) = (cfg.heads, cfg.d_model);
        let table = [cfg.table_rows(), d];
        Ok(ProductKeyLayer {
            cfg: *cfg,
            w_q: Tensor::from_slice(device, &[h * cfg.dk, d], &params.w_q)?,
            keys: Tensor::from_slice(device, &[h, 2, cfg.n, cfg.dk / 2], &params.keys)?,
            down: match cfg.kind {
                ProductKeyKind::Pkm => None,
                ProductKeyKind::Peer => Some(Tensor::from_slice(device, &table, &params.down)?),
            },
            values: Tensor::from_slice(device, &table, &params.values)?,
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &ProductKeyConfig {
        &self.cfg
    }

    fn check_input(
        &self,
        arg: &'static str,
        t: &Tensor<f32>,
        tokens: Option<usize>,
    ) -> Result<usize> {
        super::check_activation(OP, arg, t, self.cfg.d_model, tokens, &self.w_q)
    }

    fn topk_args<'a>(&'a self, q: &'a Tensor<f32>) -> AdditiveTopkArgs<'a, f32> {
        AdditiveTopkArgs {
            q,
            keys: &self.keys,
            k: self.cfg.k,
            k1: self.cfg.k1,
        }
    }

    /// The PEER down table, or the typed error a PKM layer never reaches.
    fn down(&self) -> Result<&Tensor<V>> {
        self.down.as_ref().ok_or(Error::InvalidArgument {
            op: OP,
            arg: "down",
            reason: "a PKM layer has no down table".into(),
        })
    }

    /// `o[T, D]` for `x[T, D]`, with the cache for the backward.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`], [`Error::DeviceMismatch`], and the errors of the ops (a
    /// non-finite `x` reaches the queries and is [`Error::NonFinite`]).
    pub fn forward(&self, x: &Tensor<f32>) -> Result<ProductKeyForward> {
        let tokens = self.check_input("x", x, None)?;
        let cfg = &self.cfg;
        let slots = cfg.heads * cfg.k;
        let q = matmul(&MatmulArgs::linear(x, &self.w_q))?.reshape(&[tokens, cfg.heads, cfg.dk])?;
        let top = additive_topk(&self.topk_args(&q))?;
        let weights = score_fn(&ScoreFnArgs {
            score: &top.score,
            func: cfg.score_fn,
        })?
        .reshape(&[tokens, slots, 1])?;
        let rows = top.idx.reshape(&[tokens, slots])?;
        let out = match cfg.kind {
            ProductKeyKind::Pkm => weighted_gather(&WeightedGatherArgs {
                rows: &rows,
                weights: &weights,
                table: &self.values,
            })?,
            ProductKeyKind::Peer => peer_ffn(&PeerFfnArgs {
                rows: &rows,
                scores: &weights,
                z: x,
                down: self.down()?,
                up: &self.values,
                activation: cfg.activation,
            })?,
        };
        Ok(ProductKeyForward {
            out,
            cache: ProductKeyCache {
                q,
                rows,
                score: top.score,
                weights,
            },
        })
    }

    /// Gradients of `x` and every parameter given `dout[T, D]` and the forward's cache.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for `x`, `dout` or a cache from another batch,
    /// [`Error::DeviceMismatch`], and the errors of the ops.
    pub fn backward(
        &self,
        x: &Tensor<f32>,
        cache: &ProductKeyCache,
        dout: &Tensor<f32>,
        mode: BackwardMode,
    ) -> Result<ProductKeyGrads> {
        let tokens = self.check_input("x", x, None)?;
        self.check_input("dout", dout, Some(tokens))?;
        let cfg = &self.cfg;
        expect_shape(
            OP,
            "cache.q",
            cache.q.shape(),
            &[
                ("T", Some(tokens)),
                ("H", Some(cfg.heads)),
                ("Dk", Some(cfg.dk)),
            ],
        )?;
        let (dweights, dx_values, down, values) = match cfg.kind {
            ProductKeyKind::Pkm => {
                let g = weighted_gather_backward(
                    &WeightedGatherArgs {
                        rows: &cache.rows,
                        weights: &cache.weights,
                        table: &self.values,
                    },
                    dout,
                    mode,
                )?;
                (g.dweights, None, None, g.dtable)
            }
            ProductKeyKind::Peer => {
                let g = peer_ffn_backward(
                    &PeerFfnArgs {
                        rows: &cache.rows,
                        scores: &cache.weights,
                        z: x,
                        down: self.down()?,
                        up: &self.values,
                        activation: cfg.activation,
                    },
                    dout,
                    mode,
                )?;
                (g.dscores, Some(g.dz), Some(g.ddown), g.dup)
            }
        };
        let dweights = dweights.reshape(&[tokens, cfg.heads, cfg.k])?;
        let dscore = score_fn_backward(
            &ScoreFnArgs {
                score: &cache.score,
                func: cfg.score_fn,
            },
            &dweights,
        )?;
        let idx = cache
            .rows
            .try_clone()?
            .reshape(&[tokens, cfg.heads, cfg.k])?;
        let g = additive_topk_backward(&self.topk_args(&cache.q), &idx, &dscore, mode)?;
        let dq = g.dq.reshape(&[tokens, cfg.heads * cfg.dk])?;
        let w_q = matmul(&MatmulArgs::linear_weight_grad(&dq, x))?;
        let dx = matmul(&MatmulArgs::linear_input_grad(
            &dq,
            &self.w_q,
            dx_values.as_ref(),
        ))?;
        Ok(ProductKeyGrads {
            dx,
            w_q,
            keys: g.dkeys,
            down,
            values,
        })
    }
}
