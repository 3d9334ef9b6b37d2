//! Tucker product-key top-k (TDQKR; UltraMem, UltraMemV2), Part II §2.3.
//!
//! Per token `t` and head `h`: per-rank sub-key scores `S_row[r,i] = <q[t,h,0,r], keys[h,0,r,i]>`
//! and `S_col[r,j]` likewise for side 1; the rank-1 proxy `a_row = uᵀ S_row`, `a_col = vᵀ S_col`
//! picks the best `K1` rows and columns; on that `K1 × K1` grid each core gives
//! `G_c[i,j] = S_row[:,i]ᵀ C_c S_col[:,j]`, and the best `m` cells of `G = Σ_c G_c` are returned
//! as `ν = i·n + j` with their per-core scores `G_c`, sorted by `G` (ties to the lower `ν`).
//! `(u, v)` are inputs (see [`crate::layer::tucker_proxy`]); queries and keys arrive already
//! normalised.

use super::{at_most, expect_shape, grid_fits_u32, mul, nonzero};
use crate::cost::{Cost, F32_BYTES, U32_BYTES};
use crate::error::Result;

const OP: &str = "tucker_topk";

/// The default stage-1 width when none is given: `min(m, 128, n)` (Part II §8 A5).
pub fn default_k1(m: usize, n: usize) -> usize {
    m.min(128).min(n)
}

/// The checked sizes of one Tucker top-k call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuckerTopkDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Tucker rank `R`.
    pub rank: usize,
    /// Query/key width per side and rank `Dk`.
    pub dk: usize,
    /// Sub-keys per side `n`.
    pub n: usize,
    /// Cores `Cn`.
    pub cores: usize,
    /// Stage-1 width `K1 <= n`.
    pub k1: usize,
    /// Results per token and head `m <= K1²`.
    pub m: usize,
}

impl TuckerTopkDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::TooManySelected`] (`K1 > n`, `m > K1²`),
    /// [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "q", "H", self.heads)?;
        nonzero(OP, "q", "R", self.rank)?;
        nonzero(OP, "q", "Dk", self.dk)?;
        nonzero(OP, "keys", "n", self.n)?;
        nonzero(OP, "cores", "Cn", self.cores)?;
        // m first: K1 defaults from m, so m = 0 would otherwise be reported as K1 = 0.
        nonzero(OP, "m", "m", self.m)?;
        nonzero(OP, "k1", "K1", self.k1)?;
        at_most(OP, "K1", self.k1, self.n)?;
        at_most(OP, "m", self.m, self.k1 * self.k1)?;
        grid_fits_u32(OP, self.n)?;
        let th = mul(OP, "T*H", self.tokens, self.heads)?;
        let qrow = mul(OP, "2*R*Dk", 2 * self.rank, self.dk)?;
        mul(OP, "T*H*2*R*Dk", th, qrow)?;
        mul(OP, "H*2*R*n*Dk", mul(OP, "H*n", self.heads, self.n)?, qrow)?;
        mul(OP, "T*H*m*Cn", mul(OP, "T*H*m", th, self.m)?, self.cores)?;
        Ok(())
    }

    /// Bytes and FLOPs at least (Part II §2.3 and §6.2): queries and keys read once, indices and
    /// per-core scores written once; `4·R·n·Dk` (scores) `+ 4·R·n` (proxy)
    /// `+ 2·Cn·K1²·(R² + R)` (grid) FLOPs per (token, head).
    pub fn cost(&self, key_bytes: usize) -> Cost {
        let th = (self.tokens * self.heads) as f64;
        let (r, n, dk) = (self.rank as f64, self.n as f64, self.dk as f64);
        let k1sq = (self.k1 * self.k1) as f64;
        Cost {
            bytes_read: th * (2.0 * r * dk * F32_BYTES as f64)
                + (self.heads as f64) * 2.0 * r * n * dk * key_bytes as f64
                + (self.heads * (self.cores * self.rank * self.rank + 2 * self.rank) * F32_BYTES)
                    as f64,
            bytes_written: th * (self.m * (U32_BYTES + self.cores * F32_BYTES)) as f64,
            flops: th
                * (4.0 * r * n * dk + 4.0 * r * n + 2.0 * self.cores as f64 * k1sq * (r * r + r)),
        }
    }

    /// The sizes named by the shapes of `[q, keys, cores, u, v]` (as in [`crate::TuckerTopkArgs`]) with
    /// `m` results and stage-1 width `k1` (`None`: the default), checked; what
    /// [`crate::TuckerTopkArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`TuckerTopkDims::check`].
    pub fn from_shapes(
        [qs, ks, cs, us, vs]: [&[usize]; 5],
        m: usize,
        k1: Option<usize>,
    ) -> Result<TuckerTopkDims> {
        expect_shape(
            OP,
            "q",
            qs,
            &[
                ("T", None),
                ("H", None),
                ("2", Some(2)),
                ("R", None),
                ("Dk", None),
            ],
        )?;
        let (tokens, heads, rank, dk) = (qs[0], qs[1], qs[3], qs[4]);
        expect_shape(
            OP,
            "keys",
            ks,
            &[
                ("H", Some(heads)),
                ("2", Some(2)),
                ("R", Some(rank)),
                ("n", None),
                ("Dk", Some(dk)),
            ],
        )?;
        let n = ks[3];
        expect_shape(
            OP,
            "cores",
            cs,
            &[
                ("H", Some(heads)),
                ("Cn", None),
                ("R", Some(rank)),
                ("R", Some(rank)),
            ],
        )?;
        let proxy = [("H", Some(heads)), ("R", Some(rank))];
        expect_shape(OP, "u", us, &proxy)?;
        expect_shape(OP, "v", vs, &proxy)?;
        let dims = TuckerTopkDims {
            tokens,
            heads,
            rank,
            dk,
            n,
            cores: cs[1],
            k1: k1.unwrap_or(default_k1(m, n)),
            m,
        };
        dims.check()?;
        Ok(dims)
    }
}
