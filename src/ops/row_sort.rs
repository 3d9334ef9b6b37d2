//! Row sort: the slots of a batch listed by value row, stably — the CSR order the deterministic
//! backward sums each row's contributions in (Part I §I.3).
//!
//! `order` is the permutation of `0..len` that sorts the slots by `min(rows[slot], N)` with
//! equal keys kept in slot order, i.e. (token, slot) order. A row `>= N` is not an error here:
//! it sorts last under the sentinel key `N`, so the ops that use the order can skip it (they
//! report it themselves).

use crate::device::on_device;
use crate::dims::row_sort::RowSortDims;
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::row_sort as gpu;
use crate::ops::{host, DeviceCheck};
use crate::reference::row_sort as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "row_sort";

/// Arguments of [`row_sort`].
#[derive(Clone, Copy, Debug)]
pub struct RowSortArgs<'a> {
    /// Value rows of the slots, any shape (flattened).
    pub rows: &'a Tensor<u32>,
    /// Table rows `N` (the sentinel key of a row past the table).
    pub table_rows: usize,
}

impl RowSortArgs<'_> {
    /// Checks the sizes.
    ///
    /// # Errors
    /// Those of [`RowSortDims::check`].
    pub fn validate(&self) -> Result<RowSortDims> {
        let dims = RowSortDims {
            len: self.rows.len(),
            table_rows: self.table_rows,
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
/// let order = row_sort(&RowSortArgs { rows: &rows, table_rows: 5 })?;
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
    on_device!(device,
    cpu => {
        let order = reference::order(&dims, host(OP, "rows", args.rows)?)?;
        Tensor::from_vec(&device, &[dims.len], order)
    },
    gpu(g) => {
        let rows = g.buffer(OP, "rows", args.rows)?;
        g.wrap(&[dims.len], gpu::sort(g.as_ref(), &dims, rows)?)
    })
}
