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
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::ops::additive_topk::{
    additive_topk, additive_topk_backward, AdditiveTopkArgs, AdditiveTopkDims,
};
use crate::ops::peer_ffn::{peer_ffn, peer_ffn_backward, Activation, PeerFfnArgs, PeerFfnDims};
use crate::ops::score_fn::{score_fn, score_fn_backward, ScoreFn, ScoreFnArgs, ScoreFnDims};
use crate::ops::weighted_gather::{
    weighted_gather, weighted_gather_backward, WeightedGatherArgs, WeightedGatherDims,
};
use crate::ops::{expect_shape, BackwardMode};
use crate::reference::{self, check_len, dense, widen};
use crate::rng::SplitMix64;
use crate::tensor::Tensor;

const OP: &str = "ProductKeyLayer";

/// Which value path follows the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProductKeyKind {
    /// A weighted sum of value rows `V[n², D]`.
    Pkm,
    /// Single-neuron experts: `φ(<u_i, x>) v_i` with `u, v` of `[n², D]`.
    Peer,
}

/// The shape and options of one product-key layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProductKeyConfig {
    /// PKM or PEER.
    pub kind: ProductKeyKind,
    /// Model width `D` (also the output width and, for PEER, the expert width).
    pub d_model: usize,
    /// Heads `H`, each with its own query and sub-keys, sharing the table.
    pub heads: usize,
    /// Query width per head `Dk` (even; each sub-key has `Dk/2`).
    pub dk: usize,
    /// Sub-keys per side `n` (table rows `n²`).
    pub n: usize,
    /// Slots per head `k`.
    pub k: usize,
    /// Stage-1 width (`None`: `k`, which makes the search exact).
    pub k1: Option<usize>,
    /// Turns a head's `k` scores into weights (Softmax in both papers).
    pub score_fn: ScoreFn,
    /// PEER's `φ` (ignored by PKM).
    pub activation: Activation,
}

impl ProductKeyConfig {
    /// A PKM layer: softmax weights, values of width `D`.
    pub fn pkm(d_model: usize, heads: usize, dk: usize, n: usize, k: usize) -> ProductKeyConfig {
        ProductKeyConfig {
            kind: ProductKeyKind::Pkm,
            d_model,
            heads,
            dk,
            n,
            k,
            k1: None,
            score_fn: ScoreFn::Softmax,
            activation: Activation::Identity,
        }
    }

    /// A PEER layer: softmax weights, GELU experts (lucidrains' PEER default).
    pub fn peer(d_model: usize, heads: usize, dk: usize, n: usize, k: usize) -> ProductKeyConfig {
        ProductKeyConfig {
            kind: ProductKeyKind::Peer,
            activation: Activation::Gelu,
            ..ProductKeyConfig::pkm(d_model, heads, dk, n, k)
        }
    }

    /// PKM as the XLM code's defaults (Part II §3.1): 512² values, Dk 256, 4 heads × 32.
    pub fn pkm_xlm(d_model: usize) -> ProductKeyConfig {
        ProductKeyConfig::pkm(d_model, 4, 256, 512, 32)
    }

    /// PEER as in the paper (Part II §3.2): 1024² experts, Dk 256, 8 heads × 16.
    pub fn peer_paper(d_model: usize) -> ProductKeyConfig {
        ProductKeyConfig::peer(d_model, 8, 256, 1024, 16)
    }

    /// Table rows `n²`.
    pub fn rows(&self) -> usize {
        self.n * self.n
    }

    /// The top-k sizes for `tokens` tokens.
    pub fn topk_dims(&self, tokens: usize) -> AdditiveTopkDims {
        AdditiveTopkDims {
            tokens,
            heads: self.heads,
            dk: self.dk,
            n: self.n,
            k: self.k,
            k1: self.k1.unwrap_or(self.k),
        }
    }

    fn score_dims(&self, tokens: usize) -> ScoreFnDims {
        ScoreFnDims {
            tokens,
            heads: self.heads,
            k: self.k,
            cores: 1,
        }
    }

    fn gather_dims(&self, tokens: usize) -> WeightedGatherDims {
        WeightedGatherDims {
            tokens,
            slots: self.heads * self.k,
            cores: 1,
            rows: self.rows(),
            dv: self.d_model,
        }
    }

    fn peer_dims(&self, tokens: usize) -> PeerFfnDims {
        PeerFfnDims {
            tokens,
            slots: self.heads * self.k,
            cores: 1,
            rows: self.rows(),
            dp: self.d_model,
            dv: self.d_model,
        }
    }

    /// Checks every size.
    ///
    /// # Errors
    /// Those of the ops the layer is built from ([`AdditiveTopkDims::check`] and the value op's).
    pub fn check(&self) -> Result<()> {
        crate::ops::nonzero(OP, "config", "D", self.d_model)?;
        self.topk_dims(0).check()?;
        match self.kind {
            ProductKeyKind::Pkm => self.gather_dims(0).check(),
            ProductKeyKind::Peer => self.peer_dims(0).check(),
        }
    }

    /// Parameter count: `(dense, sparse)` = (`W_q` and keys, the tables).
    pub fn param_count(&self) -> (usize, usize) {
        let dense = self.heads * self.dk * self.d_model + self.heads * self.n * self.dk;
        let tables = match self.kind {
            ProductKeyKind::Pkm => 1,
            ProductKeyKind::Peer => 2,
        };
        (dense, tables * self.rows() * self.d_model)
    }
}

/// The parameters of a product-key layer, row-major. `W` is the dense parameters' element type
/// (f32 on a device; f64 for gradient checks of the reference), `V` the tables'.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductKeyParams<W = f32, V = f32> {
    /// Query projection `[H·Dk, D]`.
    pub w_q: Vec<W>,
    /// Sub-keys `[H, 2, n, Dk/2]`.
    pub keys: Vec<W>,
    /// PEER's down vectors `u[n², D]`; empty for PKM.
    pub down: Vec<V>,
    /// The values: PKM's `V[n², D]`, PEER's up vectors `v[n², D]`.
    pub values: Vec<V>,
}

impl ProductKeyParams<f32, f32> {
    /// Draws parameters from `seed` as the reference code does: `W_q ~ N(0, 1/D)`, sub-keys
    /// uniform in `±1/sqrt(Dk/2)`, tables `N(0, 1/D)` (PKM's `Dv^-1/2` std with `Dv = D`).
    ///
    /// # Errors
    /// Those of [`ProductKeyConfig::check`].
    pub fn init(cfg: &ProductKeyConfig, seed: u64) -> Result<ProductKeyParams<f32, f32>> {
        cfg.check()?;
        let mut rng = SplitMix64::new(seed);
        let d = cfg.d_model;
        let std = (1.0 / d as f64).sqrt();
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let w_q = f32s(rng.normals(cfg.heads * cfg.dk * d, std));
        let bound = (2.0 / cfg.dk as f64).sqrt();
        let keys = (0..cfg.heads * cfg.n * cfg.dk)
            .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
            .collect();
        let down = match cfg.kind {
            ProductKeyKind::Pkm => Vec::new(),
            ProductKeyKind::Peer => f32s(rng.normals(cfg.rows() * d, std)),
        };
        let values = f32s(rng.normals(cfg.rows() * d, std));
        Ok(ProductKeyParams {
            w_q,
            keys,
            down,
            values,
        })
    }
}

impl<W: Float, V: Float> ProductKeyParams<W, V> {
    /// Checks every buffer's length against the config.
    ///
    /// # Errors
    /// [`Error::BufferSize`] naming the first wrong buffer.
    pub fn check(&self, cfg: &ProductKeyConfig) -> Result<()> {
        cfg.check()?;
        let table = cfg.rows() * cfg.d_model;
        let down = match cfg.kind {
            ProductKeyKind::Pkm => 0,
            ProductKeyKind::Peer => table,
        };
        check_len(
            "ProductKeyParams",
            "w_q",
            &self.w_q,
            cfg.heads * cfg.dk * cfg.d_model,
        )?;
        check_len(
            "ProductKeyParams",
            "keys",
            &self.keys,
            cfg.heads * cfg.n * cfg.dk,
        )?;
        check_len("ProductKeyParams", "down", &self.down, down)?;
        check_len("ProductKeyParams", "values", &self.values, table)
    }

    /// Converts every parameter to other element types.
    pub fn cast<W2: Float, V2: Float>(&self) -> ProductKeyParams<W2, V2> {
        fn conv<A: Float, B: Float>(v: &[A]) -> Vec<B> {
            v.iter().map(|x| B::from_f64(x.to_f64())).collect()
        }
        ProductKeyParams {
            w_q: conv(&self.w_q),
            keys: conv(&self.keys),
            down: conv(&self.down),
            values: conv(&self.values),
        }
    }
}

/// The f64 reference of the layer: forward `(out[T, D], idx, score)` with the intermediate
/// values the backward needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceForward {
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
pub struct ReferenceGrads {
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
pub fn reference_forward<W: Float, V: Float, X: Float>(
    cfg: &ProductKeyConfig,
    p: &ProductKeyParams<W, V>,
    x: &[X],
) -> Result<ReferenceForward> {
    p.check(cfg)?;
    let d = cfg.d_model;
    let tokens = x.len() / d;
    check_len(OP, "x", x, tokens * d)?;
    let xs = widen(x);
    let q = dense::matvec_rows(&widen(&p.w_q), cfg.heads * cfg.dk, d, &xs);
    let (idx, score) = reference::additive_topk::forward(&cfg.topk_dims(tokens), &q, &p.keys)?;
    let weights = reference::score_fn::forward(&cfg.score_dims(tokens), cfg.score_fn, &score)?;
    let out = match cfg.kind {
        ProductKeyKind::Pkm => reference::weighted_gather::forward(
            &cfg.gather_dims(tokens),
            &idx,
            &weights,
            &p.values,
        )?,
        ProductKeyKind::Peer => reference::peer_ffn::forward(
            &cfg.peer_dims(tokens),
            cfg.activation,
            &idx,
            &weights,
            &xs,
            &p.down,
            &p.values,
        )?,
    };
    Ok(ReferenceForward {
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
pub fn reference_backward<W: Float, V: Float, X: Float, G: Float>(
    cfg: &ProductKeyConfig,
    p: &ProductKeyParams<W, V>,
    x: &[X],
    fwd: &ReferenceForward,
    dout: &[G],
) -> Result<ReferenceGrads> {
    p.check(cfg)?;
    let d = cfg.d_model;
    let tokens = x.len() / d;
    check_len(OP, "x", x, tokens * d)?;
    check_len(OP, "dout", dout, tokens * d)?;
    let xs = widen(x);
    let (dweights, mut dx, down, values) = match cfg.kind {
        ProductKeyKind::Pkm => {
            let (dw, dv) = reference::weighted_gather::backward(
                &cfg.gather_dims(tokens),
                &fwd.idx,
                &fwd.weights,
                &p.values,
                dout,
            )?;
            (dw, vec![0.0; xs.len()], Vec::new(), dv)
        }
        ProductKeyKind::Peer => {
            let g = reference::peer_ffn::backward(
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
    let dscore = reference::score_fn::backward(
        &cfg.score_dims(tokens),
        cfg.score_fn,
        &fwd.score,
        &dweights,
    )?;
    let (dq, keys) = reference::additive_topk::backward(
        &cfg.topk_dims(tokens),
        &fwd.q,
        &p.keys,
        &fwd.idx,
        &dscore,
    )?;
    let mut w_q = vec![0.0; p.w_q.len()];
    let dx_q =
        dense::matvec_rows_backward(&widen(&p.w_q), cfg.heads * cfg.dk, d, &xs, &dq, &mut w_q);
    dx.iter_mut().zip(&dx_q).for_each(|(a, b)| *a += b);
    Ok(ReferenceGrads {
        dx,
        w_q,
        keys,
        down,
        values,
    })
}

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
        let table = [cfg.rows(), d];
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
        let q = super::product(x, &self.w_q, false, true, None)?
            .reshape(&[tokens, cfg.heads, cfg.dk])?;
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
        let w_q = super::product(&dq, x, true, false, None)?;
        let dx = super::product(&dq, &self.w_q, false, false, dx_values.as_ref())?;
        Ok(ProductKeyGrads {
            dx,
            w_q,
            keys: g.dkeys,
            down,
            values,
        })
    }
}
