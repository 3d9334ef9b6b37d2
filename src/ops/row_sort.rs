//! Row sort: the slots of a batch listed by value row, stably — the CSR order the deterministic
//! backward sums each row's contributions in (Part I §I.3).
//!
//! `order` is the permutation of `0..len` that sorts the slots by `min(rows[slot], N)` with
//! equal keys kept in slot order, i.e. (token, slot) order. A row `>= N` is not an error here:
//! it sorts last under the sentinel key `N`, so the ops that use the order can skip it (they
//! report it themselves).

use crate::cost::{Cost, U32_BYTES};
use crate::device::DeviceInner;
use crate::error::Result;
use crate::ops::{nonzero, rows_fit_u32, DeviceCheck};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "row_sort";

/// The checked sizes of one row sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowSortDims {
    /// Slots sorted (may be 0).
    pub len: usize,
    /// Table rows `N`, the sentinel key.
    pub rows: usize,
}

impl RowSortDims {
    /// Checks `1 <= N <= 2^32`.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "rows", "N", self.rows)?;
        rows_fit_u32(OP, "rows", self.rows)
    }

    /// Keys read once and the order written once per radix pass (8-bit digits).
    pub fn cost(&self) -> Cost {
        let passes = (usize::BITS - self.rows.leading_zeros()).div_ceil(8).max(1) as f64;
        let len = self.len as f64;
        Cost {
            bytes_read: len * U32_BYTES as f64 * (1.0 + 3.0 * passes),
            bytes_written: len * U32_BYTES as f64 * (2.0 + 2.0 * passes),
            flops: 0.0,
        }
    }
}

/// Arguments of [`row_sort`].
#[derive(Clone, Copy, Debug)]
pub struct RowSortArgs<'a> {
    /// Value rows of the slots, any shape (flattened).
    pub rows: &'a Tensor<u32>,
    /// Table rows `N`.
    pub n_rows: usize,
}

impl RowSortArgs<'_> {
    /// Checks the sizes.
    ///
    /// # Errors
    /// Those of [`RowSortDims::check`].
    pub fn validate(&self) -> Result<RowSortDims> {
        let dims = RowSortDims {
            len: self.rows.len(),
            rows: self.n_rows,
        };
        dims.check()?;
        DeviceCheck::new(OP).add("rows", self.rows)?;
        Ok(dims)
    }
}

/// The stable order of the slots by row, `[len]`.
///
/// ```
/// use ultramem::{row_sort, Device, RowSortArgs, Tensor};
/// let rows = Tensor::from_vec(&Device::cpu(), &[2, 3], vec![4u32, 1, 4, 0, 9, 1])?;
/// // Keys min(row, 5) = [4, 1, 4, 0, 5, 1]: row 0 at slot 3, row 1 at slots 1 and 5, ...
/// let order = row_sort(&RowSortArgs { rows: &rows, n_rows: 5 })?;
/// assert_eq!(order.to_vec()?, vec![3, 1, 5, 0, 2, 4]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`RowSortArgs::validate`], and [`crate::Error::Unsupported`] for more than `2^32 − 1`
/// slots on a GPU.
pub fn row_sort(args: &RowSortArgs<'_>) -> Result<Tensor<u32>> {
    let dims = args.validate()?;
    let device = args.rows.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let rows = crate::ops::host(OP, "rows", args.rows)?;
            Tensor::from_vec(
                &device,
                &[dims.len],
                reference::row_sort::order(&dims, rows)?,
            )
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::row_sort::op(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::row_sort::op(d, args, &dims),
    }
}
