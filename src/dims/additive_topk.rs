//! Additive product-key top-k (PKM, PEER, Memory+), Part II §2.2.
//!
//! Per token `t` and head `h`, the query splits into halves `q1, q2` of `Dk/2`; the scores of the
//! two sub-key sets are `s1 = C1 q1` and `s2 = C2 q2` (`n` each); stage 1 keeps the best `K1` of
//! each side, and the best `k` of the `K1²` sums `s1_i + s2_j` are returned as flat indices
//! `i·n + j` with their scores, best first. With `K1 >= k` the result equals the top-`k` of the
//! whole `n²` grid, ties included (a pair dropped at stage 1 is beaten by `K1 >= k` pairs).

use super::{at_most, expect_shape, grid_fits_u32, mul, nonzero};
use crate::cost::{Cost, F32_BYTES, U32_BYTES};
use crate::error::Result;

const OP: &str = "additive_topk";

/// The checked sizes of one additive top-k call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdditiveTopkDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Full query width `Dk` (even; each half is `Dk/2`).
    pub dk: usize,
    /// Sub-keys per side `n`.
    pub n: usize,
    /// Results per token and head `k`.
    pub k: usize,
    /// Stage-1 width `K1` (`k <= K1 <= n`).
    pub k1: usize,
}

impl AdditiveTopkDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::InvalidArgument`] (odd `Dk`),
    /// [`crate::Error::TooManySelected`] (`K1 > n`, `k > K1`), [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "q", "H", self.heads)?;
        nonzero(OP, "q", "Dk", self.dk)?;
        nonzero(OP, "keys", "n", self.n)?;
        nonzero(OP, "k", "k", self.k)?;
        nonzero(OP, "k1", "K1", self.k1)?;
        if !self.dk.is_multiple_of(2) {
            return Err(crate::Error::InvalidArgument {
                op: OP,
                arg: "q",
                reason: format!(
                    "Dk = {} must be even: each half scores one sub-key set",
                    self.dk
                ),
            });
        }
        at_most(OP, "K1", self.k1, self.n)?;
        at_most(OP, "k", self.k, self.k1)?;
        grid_fits_u32(OP, self.n)?;
        let slots = mul(OP, "T*H", self.tokens, self.heads)?;
        mul(OP, "T*H*Dk", slots, self.dk)?;
        mul(OP, "T*H*k", slots, self.k)?;
        Ok(())
    }

    /// Bytes read and written at least, and FLOPs (Part II §6): the query and every key read
    /// once, indices and scores written once; two `n × Dk/2` products and `K1²` sums per
    /// (token, head).
    pub fn cost(&self, key_bytes: usize) -> Cost {
        let th = (self.tokens * self.heads) as f64;
        Cost {
            bytes_read: th * (self.dk * F32_BYTES) as f64
                + (self.heads * self.n * self.dk * key_bytes) as f64,
            bytes_written: th * (self.k * (U32_BYTES + F32_BYTES)) as f64,
            flops: th * (2.0 * (self.n * self.dk) as f64 + (self.k1 * self.k1) as f64),
        }
    }

    /// Backward: the chosen key rows and queries read, `dq` and the dense `dkeys` written;
    /// per slot, `dq` and `dkeys` updates on both sides (`4·Dk` FLOPs).
    pub fn backward_cost(&self, key_bytes: usize) -> Cost {
        let th = (self.tokens * self.heads) as f64;
        let key_elems = (self.heads * self.n * self.dk) as f64;
        Cost {
            bytes_read: th * (self.dk * F32_BYTES + self.k * (U32_BYTES + F32_BYTES)) as f64
                + key_elems.min(th * (2 * self.k * self.dk / 2) as f64) * key_bytes as f64,
            bytes_written: th * (self.dk * F32_BYTES) as f64 + key_elems * F32_BYTES as f64,
            flops: th * (self.k * 4 * self.dk) as f64,
        }
    }

    /// The sizes named by the shapes of `q[T, H, Dk]` and `keys[H, 2, n, Dk/2]` with `k` results
    /// and stage-1 width `k1` (`None`: `k`), checked; what [`crate::AdditiveTopkArgs::validate`]
    /// and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`AdditiveTopkDims::check`].
    pub fn from_shapes(
        qs: &[usize],
        ks: &[usize],
        k: usize,
        k1: Option<usize>,
    ) -> Result<AdditiveTopkDims> {
        expect_shape(OP, "q", qs, &[("T", None), ("H", None), ("Dk", None)])?;
        let (tokens, heads, dk) = (qs[0], qs[1], qs[2]);
        expect_shape(
            OP,
            "keys",
            ks,
            &[
                ("H", Some(heads)),
                ("2", Some(2)),
                ("n", None),
                ("Dk/2", Some(dk / 2)),
            ],
        )?;
        let dims = AdditiveTopkDims {
            tokens,
            heads,
            dk,
            n: ks[2],
            k,
            k1: k1.unwrap_or(k),
        };
        dims.check()?;
        Ok(dims)
    }
}
