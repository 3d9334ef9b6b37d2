//! RMSNorm on a GPU: `kernels/rmsnorm.ptx`, `shaders/rmsnorm.wgsl`.

use super::params::RmsParams;
use super::{fits_binding, fits_u32, grid, Fill, Gpu, Launch};
use crate::dims::rmsnorm::RmsNormDims;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "rmsnorm";
const THREADS: u32 = 128;

/// The buffers of one call: `x`, `gamma`, `dy`, `out`, `gx` in the kernels' order.
type Bufs<'a, B> = [Option<&'a B>; 5];

fn launch<G: Gpu>(
    gpu: &G,
    d: &RmsNormDims,
    eps: f32,
    entry: &'static str,
    workgroups: usize,
    bufs: Bufs<'_, G::Buffer>,
) -> Result<()> {
    if workgroups == 0 {
        return Ok(());
    }
    let (gx, gy) = grid::<G>(OP, workgroups)?;
    let params = RmsParams {
        chunks: d.chunks as u32,
        dim: d.dim as u32,
        repeat: d.repeat as u32,
        eps,
        grid_x: gx,
        ..RmsParams::default()
    };
    gpu.launch(&Launch {
        kernel: KernelId::Rmsnorm,
        entry,
        table_dtype: DType::F32,
        params: bytemuck::bytes_of(&params),
        args: &bufs,
        grid: (gx, gy),
        threads: THREADS,
        overrides: &[],
    })
}

fn check_sizes<G: Gpu>(gpu: &G, d: &RmsNormDims) -> Result<()> {
    let out = d.chunks * d.repeat * d.dim;
    fits_u32(OP, G::BACKEND, "chunks·repeat·dim", out)?;
    fits_binding(gpu, OP, "the output", out * 4)
}

/// The forward on device buffers: a new buffer of `chunks·repeat·dim` f32.
///
/// # Errors
/// Sizes past the kernels' 32-bit counters or one binding, and the backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &RmsNormDims,
    eps: f32,
    x: &G::Buffer,
    gamma: &G::Buffer,
) -> Result<G::Buffer> {
    check_sizes(gpu, d)?;
    let out = gpu.alloc(d.chunks * d.repeat * d.dim * 4, Fill::Output)?;
    launch(
        gpu,
        d,
        eps,
        "rmsnorm_forward",
        d.chunks,
        [Some(x), Some(gamma), None, Some(&out), None],
    )?;
    Ok(out)
}

/// The backward on device buffers: `(dx, dgamma)`.
///
/// # Errors
/// As [`forward`].
pub fn backward<G: Gpu>(
    gpu: &G,
    d: &RmsNormDims,
    eps: f32,
    x: &G::Buffer,
    gamma: &G::Buffer,
    dy: &G::Buffer,
) -> Result<(G::Buffer, G::Buffer)> {
    check_sizes(gpu, d)?;
    let rows = d.chunks * d.dim * 4;
    let dx = gpu.alloc(rows, Fill::Output)?;
    let gx = gpu.alloc(rows, Fill::Output)?;
    let dgamma = gpu.alloc(d.dim * 4, Fill::Output)?;
    launch(
        gpu,
        d,
        eps,
        "rmsnorm_backward_rows",
        d.chunks,
        [Some(x), Some(gamma), Some(dy), Some(&dx), Some(&gx)],
    )?;
    // With no rows the column sums are still written (as zeros).
    launch(
        gpu,
        d,
        eps,
        "rmsnorm_backward_gamma",
        d.dim.div_ceil(THREADS as usize),
        [None, None, None, Some(&dgamma), Some(&gx)],
    )?;
    Ok((dx, dgamma))
}
