//! The score functions on a GPU: `kernels/score_fn.ptx`, `shaders/score_fn.wgsl`.

use std::sync::Arc;

use super::params::ScoreParams;
use super::{fits_u32, grid, Fill, Gpu, Launch, TensorGpu};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::score_fn::{ScoreFn, ScoreFnArgs, ScoreFnDims};
use crate::registry::KernelId;
use crate::tensor::Tensor;

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

pub(crate) fn forward_tensors<G: TensorGpu>(
    gpu: &Arc<G>,
    args: &ScoreFnArgs<'_>,
    d: &ScoreFnDims,
) -> Result<Tensor<f32>> {
    let out = forward(
        gpu.as_ref(),
        d,
        args.func,
        G::buffer(OP, "score", args.score)?,
    )?;
    gpu.wrap(args.score.shape(), out)
}

pub(crate) fn backward_tensors<G: TensorGpu>(
    gpu: &Arc<G>,
    args: &ScoreFnArgs<'_>,
    dout: &Tensor<f32>,
    d: &ScoreFnDims,
) -> Result<Tensor<f32>> {
    let out = backward(
        gpu.as_ref(),
        d,
        args.func,
        G::buffer(OP, "score", args.score)?,
        G::buffer(OP, "dout", dout)?,
    )?;
    gpu.wrap(args.score.shape(), out)
}
