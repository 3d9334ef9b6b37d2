//! Dense products on a GPU: `kernels/matmul.ptx`, `shaders/matmul.wgsl`.

use super::params::MatmulParams;
use super::{fits_binding, fits_u32, grid, Fill, Gpu, Launch};
use crate::dims::matmul::MatmulDims;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "matmul";
const TILE: usize = 16;

/// `C[M, N] = op(A) op(B) (+ addend)` on device buffers: a new buffer of `M·N` f32.
///
/// # Errors
/// An operand past the kernels' 32-bit element counters or one binding, and the backend's
/// errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &MatmulDims,
    a: &G::Buffer,
    b: &G::Buffer,
    addend: Option<&G::Buffer>,
) -> Result<G::Buffer> {
    let (m, n, k) = (d.m, d.n, d.k);
    for (what, elems) in [("A", m * k), ("B", k * n), ("C", m * n)] {
        fits_u32(OP, G::BACKEND, what, elems)?;
        fits_binding(gpu, OP, what, elems * 4)?;
    }
    let bytes = m * n * 4;
    let mut out = gpu.alloc(
        bytes,
        if addend.is_some() {
            Fill::Zero
        } else {
            Fill::Output
        },
    )?;
    if let Some(c0) = addend {
        if bytes > 0 {
            gpu.copy(c0, 0, &mut out, 0, bytes)?;
        }
    }
    if m == 0 || n == 0 {
        return Ok(out);
    }
    // k = 0 still runs: every tile writes zeros (or the addend) through the empty sum.
    let (a_rs, a_cs) = if d.transpose_a.is_transposed() {
        (1, m)
    } else {
        (k, 1)
    };
    let (b_rs, b_cs) = if d.transpose_b.is_transposed() {
        (1, k)
    } else {
        (n, 1)
    };
    let tiles_n = n.div_ceil(TILE);
    let tiles = m.div_ceil(TILE) * tiles_n;
    let (gx, gy) = grid::<G>(OP, tiles)?;
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        a_rs: a_rs as u32,
        a_cs: a_cs as u32,
        b_rs: b_rs as u32,
        b_cs: b_cs as u32,
        ldc: n as u32,
        accumulate: u32::from(addend.is_some()),
        tiles_n: tiles_n as u32,
        tiles: fits_u32(OP, G::BACKEND, "tiles", tiles)?,
        grid_x: gx,
    };
    gpu.launch(&Launch {
        kernel: KernelId::Matmul,
        entry: "matmul_tiled",
        table_dtype: DType::F32,
        params: bytemuck::bytes_of(&params),
        args: &[Some(a), Some(b), Some(&out)],
        grid: (gx, gy),
        threads: (TILE * TILE) as u32,
        overrides: &[],
    })?;
    Ok(out)
}
