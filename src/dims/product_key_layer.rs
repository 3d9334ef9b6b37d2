//! The shape, options and host parameters of the additive product-key layers (PKM and PEER,
//! Part II §3.1–3.2); the layers themselves are [`crate::layer::product_key`] (on a device)
//! and [`crate::reference::product_key_layer`] (f64).

use super::additive_topk::AdditiveTopkDims;
use super::peer_ffn::{Activation, PeerFfnDims};
use super::score_fn::{ScoreFn, ScoreFnDims};
use super::weighted_gather::WeightedGatherDims;
use super::{check_len, nonzero};
use crate::dtype::Float;
use crate::error::Result;
use crate::rng::SplitMix64;

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
    pub fn table_rows(&self) -> usize {
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

    /// The score-function sizes for `tokens` tokens.
    pub fn score_dims(&self, tokens: usize) -> ScoreFnDims {
        ScoreFnDims {
            tokens,
            heads: self.heads,
            k: self.k,
            cores: 1,
        }
    }

    /// The PKM gather sizes for `tokens` tokens.
    pub fn gather_dims(&self, tokens: usize) -> WeightedGatherDims {
        WeightedGatherDims {
            tokens,
            slots: self.heads * self.k,
            cores: 1,
            table_rows: self.table_rows(),
            dv: self.d_model,
        }
    }

    /// The PEER sizes for `tokens` tokens.
    pub fn peer_dims(&self, tokens: usize) -> PeerFfnDims {
        PeerFfnDims {
            tokens,
            slots: self.heads * self.k,
            cores: 1,
            table_rows: self.table_rows(),
            dp: self.d_model,
            dv: self.d_model,
        }
    }

    /// Checks every size.
    ///
    /// # Errors
    /// Those of the ops the layer is built from ([`AdditiveTopkDims::check`] and the value op's).
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "config", "D", self.d_model)?;
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
        (dense, tables * self.table_rows() * self.d_model)
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
            ProductKeyKind::Peer => f32s(rng.normals(cfg.table_rows() * d, std)),
        };
        let values = f32s(rng.normals(cfg.table_rows() * d, std));
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
    /// [`crate::Error::BufferSize`] naming the first wrong buffer.
    pub fn check(&self, cfg: &ProductKeyConfig) -> Result<()> {
        cfg.check()?;
        let table = cfg.table_rows() * cfg.d_model;
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
