//! Index casts: `int64` indices (what PyTorch and the C ABI hold) to the `u32` index tensors
//! the ops take, each value checked, and `u32` results back to `int64` (spec §I.6.1).
//!
//! The C ABI's GPU path runs the same kernels around every op that takes or returns `int64`
//! index tensors; here they are a public op so that a Rust caller holding `int64` indices can
//! use them, and so that each backend is checked against the reference like every kernel.

use crate::device::{on_device, Device};
use crate::error::{Error, Result};
#[cfg(gpu_backend)]
use crate::gpu::{self, index_cast as kernels, Gpu};
use crate::ops::host;
use crate::reference::index_cast as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "index_cast";

/// `values` as a `u32` index tensor of `shape` on `device`, each value checked to lie in
/// `[0, bound)` (`bound` is capped at `2^32`, what a `u32` holds). On a GPU the values are
/// uploaded as they are and narrowed there.
///
/// ```
/// use ultramem::{narrow_indices, Device, Error};
/// let dev = Device::cpu();
/// assert_eq!(narrow_indices(&dev, &[2], &[7, 0], 10)?.to_vec()?, vec![7, 0]);
/// let e = narrow_indices(&dev, &[2], &[7, -1], 10).unwrap_err();
/// assert!(matches!(e, Error::IndexOutOfRange { position: 1, index: -1, .. }));
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// [`Error::IndexOutOfRange`] naming the first value that is negative or at or past
/// `bound`, as written; a `shape` whose size differs from `values.len()`
/// ([`Error::BufferSize`]); more than `2^32 − 1` values on a GPU
/// ([`crate::Error::Unsupported`]); the device's errors.
pub fn narrow_indices(
    device: &Device,
    shape: &[usize],
    values: &[i64],
    bound: u64,
) -> Result<Tensor<u32>> {
    let len = crate::tensor::shape_len(OP, shape)?;
    if len != values.len() {
        return Err(Error::BufferSize {
            op: OP,
            arg: "values",
            expected: len,
            got: values.len(),
        });
    }
    on_device!(device,
    cpu => Tensor::from_vec(device, shape, reference::narrow(OP, "values", values, bound)?),
    gpu(g) => {
        let wide = g.upload(bytemuck::cast_slice(values))?;
        let narrow = kernels::narrow(g.as_ref(), OP, "values", &wide, values.len(), bound)?;
        g.wrap(shape, narrow)
    })
}

/// The values of a `u32` index tensor as `int64`, read back to the host. On a GPU they are
/// widened there and read back once.
///
/// ```
/// use ultramem::{widen_indices, Device, Tensor};
/// let idx = Tensor::from_vec(&Device::cpu(), &[2], vec![u32::MAX, 3])?;
/// assert_eq!(widen_indices(&idx)?, vec![4_294_967_295i64, 3]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// More than `2^32 − 1` values on a GPU ([`crate::Error::Unsupported`]); the device's errors.
pub fn widen_indices(indices: &Tensor<u32>) -> Result<Vec<i64>> {
    let device = indices.device();
    on_device!(device,
    cpu => reference::widen(OP, host(OP, "indices", indices)?),
    gpu(g) => {
        let len = indices.len();
        let narrow = g.buffer(OP, "indices", indices)?;
        let mut wide = g.alloc(len * 8, gpu::Fill::Output)?;
        kernels::widen(g.as_ref(), OP, "indices", narrow, len, &mut wide)?;
        let bytes = g.download(&wide, len * 8)?;
        crate::alloc::collect(
            OP,
            bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8-byte chunks"))),
        )
    })
}
