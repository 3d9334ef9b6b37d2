//! Weighted gather with core split ("EmbeddingBag-sum with per-slot weights"), Part II §2.5.
//!
//! `out[t, slice c] = Σ_k w[t, k, c] · table[rows[t, k], slice c]`, where slice `c` is the
//! columns `[c·Dv/Cn, (c+1)·Dv/Cn)`. With `Cn = 1` it is a weighted EmbeddingBag sum.

use super::{check_core_split, expect_shape, mul, nonzero, rows_fit_u32};
use crate::cost::{expected_distinct, Cost, F32_BYTES, U32_BYTES};
use crate::error::Result;

const OP: &str = "weighted_gather";

/// The checked sizes of one weighted-gather call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightedGatherDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Slots per token `M = H·m`.
    pub slots: usize,
    /// Cores `Cn` (column slices with their own weight).
    pub cores: usize,
    /// Table rows `N` (`<= 2^32`).
    pub table_rows: usize,
    /// Row width `Dv` (a multiple of `Cn`).
    pub dv: usize,
}

impl WeightedGatherDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::InvalidArgument`] (`Dv % Cn != 0`),
    /// [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "rows", "M", self.slots)?;
        nonzero(OP, "weights", "Cn", self.cores)?;
        nonzero(OP, "table", "N", self.table_rows)?;
        rows_fit_u32(OP, "table", self.table_rows)?;
        nonzero(OP, "table", "Dv", self.dv)?;
        check_core_split(OP, "table", self.dv, self.cores)?;
        let tm = mul(OP, "T*M", self.tokens, self.slots)?;
        mul(OP, "T*M*Cn", tm, self.cores)?;
        mul(OP, "T*Dv", self.tokens, self.dv)?;
        mul(OP, "N*Dv", self.table_rows, self.dv)?;
        Ok(())
    }

    /// Expected distinct rows touched when every slot picks a uniform random row.
    pub fn expected_distinct_rows(&self) -> f64 {
        expected_distinct(
            self.table_rows as f64,
            self.slots as f64,
            self.tokens as f64,
        )
    }

    /// Forward bytes and FLOPs at least: indices and weights read once, each of
    /// `distinct_rows` table rows read once, the output written once; `2·Dv` FLOPs per slot.
    pub fn cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: tm * (U32_BYTES + self.cores * F32_BYTES) as f64
                + distinct_rows * (self.dv * table_bytes) as f64,
            bytes_written: (self.tokens * self.dv * F32_BYTES) as f64,
            flops: tm * 2.0 * self.dv as f64,
        }
    }

    /// Backward bytes and FLOPs at least: indices, weights, `dout` and the touched rows read
    /// once; `dw` written once and each touched gradient row written once (f32); `4·Dv` FLOPs
    /// per slot (the `dw` dot product and the row update).
    pub fn backward_cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: tm * (U32_BYTES + self.cores * F32_BYTES) as f64
                + (self.tokens * self.dv * F32_BYTES) as f64
                + distinct_rows * (self.dv * table_bytes) as f64,
            bytes_written: tm * (self.cores * F32_BYTES) as f64
                + distinct_rows * (self.dv * F32_BYTES) as f64,
            flops: tm * 4.0 * self.dv as f64,
        }
    }

    /// The sizes named by the shapes of `rows[T, M]`, `weights[T, M, Cn]` and `table[N, Dv]`,
    /// checked; what [`crate::WeightedGatherArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`WeightedGatherDims::check`].
    pub fn from_shapes(rs: &[usize], ws: &[usize], ts: &[usize]) -> Result<WeightedGatherDims> {
        expect_shape(OP, "rows", rs, &[("T", None), ("M", None)])?;
        expect_shape(
            OP,
            "weights",
            ws,
            &[("T", Some(rs[0])), ("M", Some(rs[1])), ("Cn", None)],
        )?;
        expect_shape(OP, "table", ts, &[("N", None), ("Dv", None)])?;
        let dims = WeightedGatherDims {
            tokens: rs[0],
            slots: rs[1],
            cores: ws[2],
            table_rows: ts[0],
            dv: ts[1],
        };
        dims.check()?;
        Ok(dims)
    }
}
