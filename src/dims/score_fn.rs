//! Score functions: what turns a head's top-k scores into slot weights (Part II §8 A8).
//!
//! The input is a top-k op's score tensor, `[T, H, k]` (additive) or `[T, H, m, Cn]` (Tucker);
//! `Softmax` normalises over the `k` (or `m`) slots of each token, head and core.
//!
//! On a GPU this is a kernel of its own, not fused into top-k or the gather: it moves `T·H·m`
//! words, small next to the keys and value rows those ops read (see the README's backend table).

use super::{expect_shape, mul, nonzero};
use crate::cost::{Cost, F32_BYTES};
use crate::error::Result;

const OP: &str = "score_fn";

/// A score function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ScoreFn {
    /// Scores used as they are (UltraMem, UltraMemV2).
    #[default]
    Raw,
    /// Softmax over a head's chosen slots (PKM, Memory+, PEER).
    Softmax,
    /// `max(x, 0)` (lucidrains' "non-competing" PEER scores).
    Relu,
    /// `1 / (1 + e^{-x})`.
    Sigmoid,
}

/// The checked sizes of one score-function call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreFnDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Slots per head `k` (the softmax axis).
    pub k: usize,
    /// Cores `Cn` (1 for a rank-3 input).
    pub cores: usize,
}

impl ScoreFnDims {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "score", "H", self.heads)?;
        nonzero(OP, "score", "k", self.k)?;
        nonzero(OP, "score", "Cn", self.cores)?;
        let th = mul(OP, "T*H", self.tokens, self.heads)?;
        mul(OP, "T*H*k*Cn", th, mul(OP, "k*Cn", self.k, self.cores)?)?;
        Ok(())
    }

    /// One read and one write of every score, a few FLOPs each.
    pub fn cost(&self) -> Cost {
        let elems = (self.tokens * self.heads * self.k * self.cores) as f64;
        Cost {
            bytes_read: elems * F32_BYTES as f64,
            bytes_written: elems * F32_BYTES as f64,
            flops: elems * 4.0,
        }
    }

    /// The sizes named by the shape of a score, `[T, H, k]` or `[T, H, k, Cn]`, checked; what
    /// [`crate::ScoreFnArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] unless the shape has rank 3 or 4, and those of
    /// [`ScoreFnDims::check`].
    pub fn from_shape(s: &[usize]) -> Result<ScoreFnDims> {
        let dims = match s.len() {
            3 => ScoreFnDims {
                tokens: s[0],
                heads: s[1],
                k: s[2],
                cores: 1,
            },
            _ => {
                expect_shape(
                    OP,
                    "score",
                    s,
                    &[("T", None), ("H", None), ("k", None), ("Cn", None)],
                )?;
                ScoreFnDims {
                    tokens: s[0],
                    heads: s[1],
                    k: s[2],
                    cores: s[3],
                }
            }
        };
        dims.check()?;
        Ok(dims)
    }
}
