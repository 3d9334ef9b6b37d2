//! Index dtype casts on a GPU: `kernels/index_cast.ptx`, `shaders/index_cast.wgsl`.
//!
//! The kernels read and write `u32` indices (spec §I.6.1). The C ABI's `int64` index tensors
//! are narrowed to a `u32` copy on the device before an op (each value checked below the op's
//! bound, a negative one reported as the caller wrote it) and `u32` results are widened into
//! `int64` outputs after it: no host round trip, and the same errors as the host path.

use super::params::CastParams;
use super::{check_index_status, fits_binding, fits_u32, grid, Fill, Gpu, IndexSource, Launch};
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const THREADS: u32 = 256;

fn launch<G: Gpu>(
    gpu: &G,
    op: &'static str,
    entry: &'static str,
    len: u32,
    bound: u64,
    args: &[Option<&G::Buffer>],
) -> Result<()> {
    let (gx, gy) = grid::<G>(op, (len as usize).div_ceil(THREADS as usize))?;
    let params = CastParams {
        len,
        grid_x: gx,
        bound_lo: bound as u32,
        bound_hi: (bound >> 32) as u32,
        ..CastParams::default()
    };
    gpu.launch(&Launch {
        kernel: KernelId::IndexCast,
        entry,
        table_dtype: DType::U32,
        params: bytemuck::bytes_of(&params),
        args,
        grid: (gx, gy),
        threads: THREADS,
        overrides: &[],
    })
}

/// A new buffer of `len` u32: the `int64` values of `wide` (argument `arg` of `op`), each
/// checked to lie in `[0, bound)`; `bound` is at most `2^32` (what a u32 holds).
///
/// # Errors
/// [`crate::Error::IndexOutOfRange`] naming the first bad value as the caller wrote it; more than
/// `2^32 − 1` indices or an `int64` buffer past the binding limit
/// ([`crate::Error::Unsupported`]); the backend's errors.
pub fn narrow<G: Gpu>(
    gpu: &G,
    op: &'static str,
    arg: &'static str,
    wide: &G::Buffer,
    len: usize,
    bound: u64,
) -> Result<G::Buffer> {
    let bound = bound.min(1 << 32);
    let count = fits_u32(op, G::BACKEND, arg, len)?;
    fits_binding(gpu, op, arg, len.saturating_mul(8))?;
    let out = gpu.alloc(len * 4, Fill::Output)?;
    let status = gpu.alloc(4, Fill::Zero)?;
    if count > 0 {
        let args = [Some(wide), Some(&out), Some(&status)];
        launch(gpu, op, "index_cast_narrow", count, bound, &args)?;
    }
    let source = IndexSource {
        buf: wide,
        len,
        width: 8,
    };
    check_index_status(gpu, status, op, arg, source, bound)?;
    Ok(out)
}

/// Writes the `len` u32 of `narrow` into `wide` as `int64` (argument `arg` of `op`).
///
/// # Errors
/// As [`narrow`], less the range error.
pub fn widen<G: Gpu>(
    gpu: &G,
    op: &'static str,
    arg: &'static str,
    narrow: &G::Buffer,
    len: usize,
    wide: &mut G::Buffer,
) -> Result<()> {
    let count = fits_u32(op, G::BACKEND, arg, len)?;
    fits_binding(gpu, op, arg, len.saturating_mul(8))?;
    if count > 0 {
        let args = [Some(narrow), Some(&*wide), None];
        launch(gpu, op, "index_cast_widen", count, 0, &args)?;
    }
    Ok(())
}
