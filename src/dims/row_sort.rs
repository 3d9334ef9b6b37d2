//! Row sort: the slots of a batch listed by value row, stably — the CSR order the deterministic
//! backward sums each row's contributions in (Part I §I.3).
//!
//! `order` is the permutation of `0..len` that sorts the slots by `min(rows[slot], N)` with
//! equal keys kept in slot order, i.e. (token, slot) order. A row `>= N` is not an error here:
//! it sorts last under the sentinel key `N`, so the ops that use the order can skip it (they
//! report it themselves).

use super::{nonzero, rows_fit_u32};
use crate::cost::{Cost, U32_BYTES};
use crate::error::Result;

const OP: &str = "row_sort";

/// The checked sizes of one row sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowSortDims {
    /// Slots sorted (may be 0).
    pub len: usize,
    /// Table rows `N`, the sentinel key.
    pub table_rows: usize,
}

impl RowSortDims {
    /// Checks `1 <= N <= 2^32`.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "table_rows", "N", self.table_rows)?;
        rows_fit_u32(OP, "table_rows", self.table_rows)
    }

    /// Keys read once and the order written once per radix pass (8-bit digits).
    pub fn cost(&self) -> Cost {
        let passes = (usize::BITS - self.table_rows.leading_zeros())
            .div_ceil(8)
            .max(1) as f64;
        let len = self.len as f64;
        Cost {
            bytes_read: len * U32_BYTES as f64 * (1.0 + 3.0 * passes),
            bytes_written: len * U32_BYTES as f64 * (2.0 + 2.0 * passes),
            flops: 0.0,
        }
    }
}
