//! Score functions: what turns a head's top-k scores into slot weights (Part II §8 A8).
//!
//! The input is a top-k op's score tensor, `[T, H, k]` (additive) or `[T, H, m, Cn]` (Tucker);
//! `Softmax` normalises over the `k` (or `m`) slots of each token, head and core.
//!
//! On a GPU this is a kernel of its own, not fused into top-k or the gather: it moves `T·H·m`
//! words, small next to the keys and value rows those ops read (see the README's backend table).

use crate::cost::{Cost, F32_BYTES};
use crate::device::DeviceInner;
use crate::error::Result;
use crate::ops::{expect_shape, host, mul, nonzero, to_f32, DeviceCheck};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "score_fn";

/// A score function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ScoreFn {
    /// Scores used as they are (UltraMem, UltraMemV2).
    #[default]
    Raw,
    /// Softmax over a head's chosen slots (PKM, Memory+, PEER).
    Softmax,
    /// `max(x, 0)` (lucidrains' "non-competing" PEER scores).
    Relu,
    /// `1 / (1 + e^{-x})`.
    Sigmoid,
}

/// The checked sizes of one score-function call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreFnDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Slots per head `k` (the softmax axis).
    pub k: usize,
    /// Cores `Cn` (1 for a rank-3 input).
    pub cores: usize,
}

impl ScoreFnDims {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "score", "H", self.heads)?;
        nonzero(OP, "score", "k", self.k)?;
        nonzero(OP, "score", "Cn", self.cores)?;
        let th = mul(OP, "T*H", self.tokens, self.heads)?;
        mul(OP, "T*H*k*Cn", th, mul(OP, "k*Cn", self.k, self.cores)?)?;
        Ok(())
    }

    /// One read and one write of every score, a few FLOPs each.
    pub fn cost(&self) -> Cost {
        let elems = (self.tokens * self.heads * self.k * self.cores) as f64;
        Cost {
            bytes_read: elems * F32_BYTES as f64,
            bytes_written: elems * F32_BYTES as f64,
            flops: elems * 4.0,
        }
    }
}

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

impl ScoreFnDims {
    /// The sizes named by the shape of a score, `[T, H, k]` or `[T, H, k, Cn]`, checked; what
    /// [`ScoreFnArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] unless the shape has rank 3 or 4, and those of
    /// [`ScoreFnDims::check`].
    pub fn from_shape(s: &[usize]) -> Result<ScoreFnDims> {
        let dims = match s.len() {
            3 => ScoreFnDims {
                tokens: s[0],
                heads: s[1],
                k: s[2],
                cores: 1,
            },
            _ => {
                expect_shape(
                    OP,
                    "score",
                    s,
                    &[("T", None), ("H", None), ("k", None), ("Cn", None)],
                )?;
                ScoreFnDims {
                    tokens: s[0],
                    heads: s[1],
                    k: s[2],
                    cores: s[3],
                }
            }
        };
        dims.check()?;
        Ok(dims)
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
    match &device.inner {
        DeviceInner::Cpu => {
            let y = reference::score_fn::forward(&dims, args.func, host(OP, "score", args.score)?)?;
            Tensor::from_vec(&device, args.score.shape(), to_f32(y))
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::score_fn::forward_tensors(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::score_fn::forward_tensors(d, args, &dims),
    }
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
    match &device.inner {
        DeviceInner::Cpu => {
            let dx = reference::score_fn::backward(
                &dims,
                args.func,
                host(OP, "score", args.score)?,
                host(OP, "dout", dout)?,
            )?;
            Tensor::from_vec(&device, args.score.shape(), to_f32(dx))
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::score_fn::backward_tensors(d, args, dout, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::score_fn::backward_tensors(d, args, dout, &dims),
    }
}
