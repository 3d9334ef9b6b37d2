//! Score functions: what turns a head's top-k scores into slot weights (Part II §8 A8).
//!
//! The input is a top-k op's score tensor, `[T, H, k]` (additive) or `[T, H, m, Cn]` (Tucker);
//! `Softmax` normalises over the `k` (or `m`) slots of each token, head and core.
//!
//! On a GPU this is a kernel of its own, not fused into top-k or the gather: it moves `T·H·m`
//! words, small next to the keys and value rows those ops read (see the README's backend table).

use crate::device::on_device;
use crate::dims::score_fn::{ScoreFn, ScoreFnDims};
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::score_fn as gpu;
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::score_fn as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "score_fn";

/// Arguments of [`score_fn`] and [`score_fn_backward`].
#[derive(Clone, Copy, Debug)]
pub struct ScoreFnArgs<'a> {
    /// Scores `[T, H, k]` or `[T, H, k, Cn]`.
    pub score: &'a Tensor<f32>,
    /// The function.
    pub func: ScoreFn,
}

impl ScoreFnArgs<'_> {
    /// Checks the shape.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] unless the score is rank 3 or 4, and those of
    /// [`ScoreFnDims::check`].
    pub fn validate(&self) -> Result<ScoreFnDims> {
        ScoreFnDims::from_shape(self.score.shape())
    }
}

/// Applies the score function; the output has the input's shape.
///
/// ```
/// use ultramem::{score_fn, Device, ScoreFn, ScoreFnArgs, Tensor};
/// let s = Tensor::from_vec(&Device::cpu(), &[1, 1, 2], vec![0.0f32, 0.0])?;
/// let w = score_fn(&ScoreFnArgs { score: &s, func: ScoreFn::Softmax })?;
/// assert_eq!(w.to_vec()?, vec![0.5, 0.5]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`ScoreFnArgs::validate`].
pub fn score_fn(args: &ScoreFnArgs<'_>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.score.device();
    on_device!(device,
    cpu => {
        let y = reference::forward(&dims, args.func, host(OP, "score", args.score)?)?;
        Tensor::from_vec(&device, args.score.shape(), to_f32(OP, y)?)
    },
    gpu(g) => {
        let score = g.buffer(OP, "score", args.score)?;
        let out = gpu::forward(g.as_ref(), &dims, args.func, score)?;
        g.wrap(args.score.shape(), out)
    })
}

/// The vector-Jacobian product: given `dout` (shaped like the score), returns `dscore`.
///
/// # Errors
/// Those of [`ScoreFnArgs::validate`], [`crate::Error::ShapeMismatch`] for `dout`,
/// [`crate::Error::DeviceMismatch`].
pub fn score_fn_backward(args: &ScoreFnArgs<'_>, dout: &Tensor<f32>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    if dout.shape() != args.score.shape() {
        return Err(crate::Error::ShapeMismatch {
            op: OP,
            arg: "dout",
            expected: format!("{:?} (the score's shape)", args.score.shape()),
            got: dout.shape().to_vec(),
        });
    }
    let mut dev = DeviceCheck::new(OP);
    dev.add("score", args.score)?;
    dev.add("dout", dout)?;
    let device = dev.device();
    on_device!(device,
    cpu => {
        let dx = reference::backward(
            &dims,
            args.func,
            host(OP, "score", args.score)?,
            host(OP, "dout", dout)?,
        )?;
        Tensor::from_vec(&device, args.score.shape(), to_f32(OP, dx)?)
    },
    gpu(g) => {
        let score = g.buffer(OP, "score", args.score)?;
        let dout = g.buffer(OP, "dout", dout)?;
        let out = gpu::backward(g.as_ref(), &dims, args.func, score, dout)?;
        g.wrap(args.score.shape(), out)
    })
}
