//! The score functions on a GPU: `kernels/score_fn.ptx`, `shaders/score_fn.wgsl`.

use super::params::ScoreParams;
use super::{fits_u32, grid, Fill, Gpu, Launch};
use crate::dims::score_fn::{ScoreFn, ScoreFnDims};
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "score_fn";

fn code(f: ScoreFn) -> u32 {
    match f {
        ScoreFn::Raw => 0,
        ScoreFn::Softmax => 1,
        ScoreFn::Relu => 2,
        ScoreFn::Sigmoid => 3,
    }
}

fn run<G: Gpu>(
    gpu: &G,
    d: &ScoreFnDims,
    func: ScoreFn,
    entry: &'static str,
    score: &G::Buffer,
    dout: Option<&G::Buffer>,
) -> Result<G::Buffer> {
    let len = d.tokens * d.heads * d.k * d.cores;
    fits_u32(OP, G::BACKEND, "T·H·k·Cn", len)?;
    let out = gpu.alloc(len * 4, Fill::Output)?;
    let groups = d.tokens * d.heads * d.cores;
    if groups > 0 {
        let (gx, gy) = grid::<G>(OP, groups)?;
        let params = ScoreParams {
            groups: groups as u32,
            k: d.k as u32,
            cores: d.cores as u32,
            func: code(func),
            grid_x: gx,
            ..ScoreParams::default()
        };
        gpu.launch(&Launch {
            kernel: KernelId::ScoreFn,
            entry,
            table_dtype: DType::F32,
            params: bytemuck::bytes_of(&params),
            args: &[Some(score), dout, Some(&out)],
            grid: (gx, gy),
            threads: 128,
            overrides: &[],
        })?;
    }
    Ok(out)
}

/// The forward on a device buffer: a new buffer shaped like `score`.
///
/// # Errors
/// Sizes past the kernels' 32-bit counters, and the backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &ScoreFnDims,
    func: ScoreFn,
    score: &G::Buffer,
) -> Result<G::Buffer> {
    run(gpu, d, func, "score_fn_forward", score, None)
}

/// The vector-Jacobian product on device buffers: a new buffer shaped like `score`.
///
/// # Errors
/// As [`forward`].
pub fn backward<G: Gpu>(
    gpu: &G,
    d: &ScoreFnDims,
    func: ScoreFn,
    score: &G::Buffer,
    dout: &G::Buffer,
) -> Result<G::Buffer> {
    run(gpu, d, func, "score_fn_backward", score, Some(dout))
}
