//! The shape, options and host parameters of an UltraMemV2 layer (Part II §3.5); the layer
//! itself is [`crate::layer::UltraMemV2Layer`] (on a device) and
//! [`crate::reference::ultramem_v2_layer`] (f64).

use super::index_map::IndexMapConfig;
use super::peer_ffn::{Activation, PeerFfnDims};
use super::tucker_topk::{default_k1, TuckerTopkDims};
use super::{mul, nonzero};
use crate::cost::UltraMemV2Shape;
use crate::dtype::Float;
use crate::error::{Error, Result};

const OP: &str = "UltraMemV2Config";

/// How the query projection feeds the Tucker ranks (Part II §8 A2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QueryMode {
    /// A separate query per side and rank: `W_q` has `H·2·R·Dk` rows (the paper's eq. 12).
    #[default]
    PerRank,
    /// One query per side shared by all ranks: `W_q` has `H·2·Dk` rows (UltraMem v1 and the
    /// released V2 code's numerics).
    Tied,
}

/// The shape and options of one UltraMemV2 layer (Part II §3.5.2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UltraMemV2Config {
    /// Model width `D`.
    pub d_model: usize,
    /// Retrieval heads `H` (the paper's final choice is 1).
    pub heads: usize,
    /// Query/key width per side and rank `Dk`.
    pub dk: usize,
    /// Tucker rank `R`.
    pub rank: usize,
    /// Tucker cores `Cn`; value slice `c` of `Dv/Cn` columns is weighted by core `c`'s score.
    pub cores: usize,
    /// Sub-keys per side `n` (virtual slots `n²`).
    pub n: usize,
    /// Stage-1 width `K1`.
    pub k1: usize,
    /// Values per head `m`.
    pub m: usize,
    /// Pre-value width `Dp`.
    pub dp: usize,
    /// Value width `Dv`.
    pub dv: usize,
    /// Where virtual slots land in the value tables (`total_rows` is the tables' `N`).
    pub map: IndexMapConfig,
    /// Whether the parameters carry a shuffle permutation of the `n²` virtual slots.
    pub shuffle: bool,
    /// `φ` on the pre-value (Identity in UltraMemV2; Gelu is the code's optional flag).
    pub activation: Activation,
    /// Per-rank or tied queries.
    pub query_mode: QueryMode,
    /// RMSNorm epsilon (1e-5 in the reference code).
    pub eps: f64,
}

impl UltraMemV2Config {
    /// A layer with the paper's defaults: `H = 1`, `R = Cn = 2`, `K1 = min(m, 128, n)`, a plain
    /// table of `n²` rows, a shuffle table, `φ = Identity`, per-rank queries, `ε = 1e-5`.
    pub fn new(
        d_model: usize,
        dk: usize,
        n: usize,
        m: usize,
        dp: usize,
        dv: usize,
    ) -> UltraMemV2Config {
        UltraMemV2Config {
            d_model,
            heads: 1,
            dk,
            rank: 2,
            cores: 2,
            n,
            k1: default_k1(m, n),
            m,
            dp,
            dv,
            map: IndexMapConfig::plain((n as u64).saturating_mul(n as u64)),
            shuffle: true,
            activation: Activation::Identity,
            query_mode: QueryMode::PerRank,
            eps: 1e-5,
        }
    }

    /// UltraMemV2-1B/7B (Part II §4.1): D 2048, Dk 512, n 528, m = K1 = 128, Dp 384, Dv 768.
    pub fn paper_1b_7b() -> UltraMemV2Config {
        UltraMemV2Config::new(2048, 512, 528, 128, 384, 768)
    }

    /// UltraMemV2-227M/1.2B (Part II §4.1): D 768, Dk 192, n 360, m = K1 = 32, Dp = Dv = 192.
    pub fn paper_227m_1_2b() -> UltraMemV2Config {
        UltraMemV2Config::new(768, 192, 360, 32, 192, 192)
    }

    /// Value-table rows `N`.
    pub fn table_rows(&self) -> usize {
        self.map.total_rows as usize
    }

    /// Query vectors per head: `2·R` (per rank) or 2 (tied).
    pub fn queries_per_head(&self) -> usize {
        match self.query_mode {
            QueryMode::PerRank => 2 * self.rank,
            QueryMode::Tied => 2,
        }
    }

    /// Rows of `W_q`: `H · queries_per_head · Dk`.
    pub fn query_rows(&self) -> usize {
        self.heads * self.queries_per_head() * self.dk
    }

    /// Checks every size and option.
    ///
    /// # Errors
    /// [`Error::ZeroSized`], [`Error::TooManySelected`], [`Error::InvalidArgument`],
    /// [`Error::SizeOverflow`], as the ops the layer is built from would return them.
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "config", "D", self.d_model)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                arg: "eps",
                reason: format!("{} must be finite and positive", self.eps),
            });
        }
        self.map.check(OP)?;
        self.tucker_dims(0).check()?;
        self.peer_dims(0).check()?;
        mul(OP, "query rows * D", self.query_rows(), self.d_model)?;
        Ok(())
    }

    /// The Tucker top-k sizes for `tokens` tokens.
    pub fn tucker_dims(&self, tokens: usize) -> TuckerTopkDims {
        TuckerTopkDims {
            tokens,
            heads: self.heads,
            rank: self.rank,
            dk: self.dk,
            n: self.n,
            cores: self.cores,
            k1: self.k1,
            m: self.m,
        }
    }

    /// The PEER sizes for `tokens` tokens (`M = H·m` slots).
    pub fn peer_dims(&self, tokens: usize) -> PeerFfnDims {
        PeerFfnDims {
            tokens,
            slots: self.heads * self.m,
            cores: self.cores,
            table_rows: self.table_rows(),
            dp: self.dp,
            dv: self.dv,
        }
    }

    /// The shape the cost model uses.
    pub fn cost_shape(&self) -> UltraMemV2Shape {
        UltraMemV2Shape {
            d_model: self.d_model,
            heads: self.heads,
            dk: self.dk,
            rank: self.rank,
            cores: self.cores,
            n: self.n,
            k1: self.k1,
            m: self.m,
            dp: self.dp,
            dv: self.dv,
            table_rows: self.table_rows(),
            shuffle: self.shuffle,
        }
    }

    /// Parameter count: dense (`W_q`, keys, cores, gains, `W_pre`, `W_out`) and sparse
    /// (`N·(Dp + Dv)`). `u`, `v` and the shuffle table are buffers, not parameters.
    pub fn param_count(&self) -> (usize, usize) {
        let dense = self.query_rows() * self.d_model
            + self.heads * 2 * self.rank * self.n * self.dk
            + self.heads * self.cores * self.rank * self.rank
            + 2 * self.dk
            + (self.dp + self.dv) * self.d_model;
        (dense, self.table_rows() * (self.dp + self.dv))
    }
}

/// The parameters and buffers of one UltraMemV2 layer, row-major. `W` is the dense parameters'
/// element type, `V` the value tables'.
#[derive(Clone, Debug, PartialEq)]
pub struct UltraMemV2Params<W = f32, V = f32> {
    /// Query projection `[H·Q·Dk, D]`, `Q = 2R` (per rank, side-major) or 2 (tied).
    pub w_q: Vec<W>,
    /// Query RMSNorm gain `[Dk]`, shared by all query chunks.
    pub gamma_q: Vec<W>,
    /// Keys `[H, 2, R, n, Dk]`, RMS-normalised over `Dk` before scoring.
    pub keys: Vec<W>,
    /// Key RMSNorm gain `[Dk]`.
    pub gamma_k: Vec<W>,
    /// Tucker cores `[H, Cn, R, R]`.
    pub cores: Vec<W>,
    /// Row proxy `[H, R]` (a buffer: refreshed from the cores, no gradient).
    pub u: Vec<W>,
    /// Column proxy `[H, R]` (a buffer).
    pub v: Vec<W>,
    /// Pre-value projection `W_pre[Dp, D]`.
    pub w_pre: Vec<W>,
    /// Pre-value (down) table `[N, Dp]`.
    pub down: Vec<V>,
    /// Value (up) table `[N, Dv]`.
    pub up: Vec<V>,
    /// Output projection `W_out[D, Dv]`.
    pub w_out: Vec<W>,
    /// Shuffle permutation `[n²]` when the config asks for one (a buffer).
    pub shuffle: Option<Vec<u32>>,
}

impl<W: Float, V: Float> UltraMemV2Params<W, V> {
    /// Checks every buffer's length against the config.
    ///
    /// # Errors
    /// [`Error::BufferSize`] naming the first wrong buffer, [`Error::InvalidArgument`] when the
    /// shuffle table's presence disagrees with the config.
    pub fn check(&self, cfg: &UltraMemV2Config) -> Result<()> {
        cfg.check()?;
        let (h, r, dk, d) = (cfg.heads, cfg.rank, cfg.dk, cfg.d_model);
        let n_rows = cfg.table_rows();
        let want: [(&'static str, usize, usize); 11] = [
            ("w_q", self.w_q.len(), cfg.query_rows() * d),
            ("gamma_q", self.gamma_q.len(), dk),
            ("keys", self.keys.len(), h * 2 * r * cfg.n * dk),
            ("gamma_k", self.gamma_k.len(), dk),
            ("cores", self.cores.len(), h * cfg.cores * r * r),
            ("u", self.u.len(), h * r),
            ("v", self.v.len(), h * r),
            ("w_pre", self.w_pre.len(), cfg.dp * d),
            ("down", self.down.len(), n_rows * cfg.dp),
            ("up", self.up.len(), n_rows * cfg.dv),
            ("w_out", self.w_out.len(), d * cfg.dv),
        ];
        for (arg, got, expected) in want {
            if got != expected {
                return Err(Error::BufferSize {
                    op: "UltraMemV2Params",
                    arg,
                    expected,
                    got,
                });
            }
        }
        match (&self.shuffle, cfg.shuffle) {
            (Some(s), true) if s.len() != cfg.n * cfg.n => Err(Error::BufferSize {
                op: "UltraMemV2Params",
                arg: "shuffle",
                expected: cfg.n * cfg.n,
                got: s.len(),
            }),
            (Some(_), true) | (None, false) => Ok(()),
            _ => Err(Error::InvalidArgument {
                op: "UltraMemV2Params",
                arg: "shuffle",
                reason: format!(
                    "the config says shuffle = {}, the parameters disagree",
                    cfg.shuffle
                ),
            }),
        }
    }

    /// Converts every parameter to other element types (e.g. to `f64` for a gradient check).
    pub fn cast<W2: Float, V2: Float>(&self) -> UltraMemV2Params<W2, V2> {
        fn conv<A: Float, B: Float>(v: &[A]) -> Vec<B> {
            v.iter().map(|x| B::from_f64(x.to_f64())).collect()
        }
        UltraMemV2Params {
            w_q: conv(&self.w_q),
            gamma_q: conv(&self.gamma_q),
            keys: conv(&self.keys),
            gamma_k: conv(&self.gamma_k),
            cores: conv(&self.cores),
            u: conv(&self.u),
            v: conv(&self.v),
            w_pre: conv(&self.w_pre),
            down: conv(&self.down),
            up: conv(&self.up),
            w_out: conv(&self.w_out),
            shuffle: self.shuffle.clone(),
        }
    }
}
