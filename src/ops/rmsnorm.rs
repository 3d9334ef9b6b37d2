//! RMSNorm over the last axis (the layer's query and key norms, Part II §2.1), forward and
//! backward: `y = γ ⊙ x / sqrt(mean(x²) + ε)` per row of `dim` elements.
//!
//! `repeat > 1` writes every normalised row `repeat` times in a row, which is how tied queries
//! (one query per side) feed all `R` Tucker ranks without a copy kernel; the backward sums the
//! copies' gradients.

use crate::cost::{Cost, F32_BYTES};
use crate::device::DeviceInner;
use crate::error::{Error, Result};
use crate::ops::{host, mul, nonzero, to_f32, DeviceCheck};
use crate::reference;
use crate::reference::widen;
use crate::tensor::Tensor;

const OP: &str = "rmsnorm";

/// The checked sizes of one RMSNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RmsNormDims {
    /// Rows normalised independently (may be 0).
    pub chunks: usize,
    /// Elements per row.
    pub dim: usize,
    /// Copies of each output row.
    pub repeat: usize,
}

impl RmsNormDims {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::ZeroSized`] for `dim` or `repeat`, [`Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "gamma", "dim", self.dim)?;
        nonzero(OP, "repeat", "repeat", self.repeat)?;
        mul(
            OP,
            "chunks*repeat*dim",
            mul(OP, "chunks*dim", self.chunks, self.dim)?,
            self.repeat,
        )?;
        Ok(())
    }

    /// Forward: `x` and `γ` read, `repeat` copies written; about 5 FLOPs per element.
    pub fn cost(&self) -> Cost {
        let x = (self.chunks * self.dim) as f64;
        Cost {
            bytes_read: (x + self.dim as f64) * F32_BYTES as f64,
            bytes_written: x * self.repeat as f64 * F32_BYTES as f64,
            flops: 5.0 * x,
        }
    }
}

/// Arguments of [`rmsnorm`] and [`rmsnorm_backward`].
#[derive(Clone, Copy, Debug)]
pub struct RmsNormArgs<'a> {
    /// Input `[..., dim]` (any leading shape).
    pub x: &'a Tensor<f32>,
    /// Gain `[dim]`.
    pub gamma: &'a Tensor<f32>,
    /// `ε`, finite and positive (1e-5 in the UltraMemV2 code).
    pub eps: f32,
    /// Copies of each output row (1 normally; `R` for tied queries).
    pub repeat: usize,
}

impl RmsNormArgs<'_> {
    /// Checks shapes, `ε` and devices.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `gamma` is `[dim]` with `dim` the last axis of `x`,
    /// [`Error::InvalidArgument`] for a bad `ε`, [`Error::DeviceMismatch`], and those of
    /// [`RmsNormDims::check`].
    pub fn validate(&self) -> Result<RmsNormDims> {
        let xs = self.x.shape();
        let dim = *xs.last().ok_or_else(|| Error::ShapeMismatch {
            op: OP,
            arg: "x",
            expected: "[..., dim]".into(),
            got: xs.to_vec(),
        })?;
        if self.gamma.shape() != [dim] {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "gamma",
                expected: format!("[dim] = [{dim}] (the last axis of x)"),
                got: self.gamma.shape().to_vec(),
            });
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                arg: "eps",
                reason: format!("{} must be finite and positive", self.eps),
            });
        }
        let mut dev = DeviceCheck::new(OP);
        dev.add("x", self.x)?;
        dev.add("gamma", self.gamma)?;
        let dims = RmsNormDims {
            chunks: xs[..xs.len() - 1].iter().product(),
            dim,
            repeat: self.repeat,
        };
        dims.check()?;
        Ok(dims)
    }

    /// The output's shape: `x`'s with the last axis `repeat·dim`.
    pub fn out_shape(&self, d: &RmsNormDims) -> Vec<usize> {
        let mut s = self.x.shape().to_vec();
        if let Some(last) = s.last_mut() {
            *last = d.repeat * d.dim;
        }
        s
    }
}

/// The gradients of [`rmsnorm_backward`].
#[derive(Debug)]
pub struct RmsNormGrads {
    /// `dx`, shaped like `x`.
    pub dx: Tensor<f32>,
    /// `dγ[dim]`, summed over every row (deterministically on every backend).
    pub dgamma: Tensor<f32>,
}

/// `y = γ ⊙ x / sqrt(mean(x²) + ε)` per row, each row written `repeat` times.
///
/// ```
/// use ultramem::{rmsnorm, Device, RmsNormArgs, Tensor};
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(&dev, &[1, 2], vec![3.0f32, 4.0])?;
/// let gamma = Tensor::from_vec(&dev, &[2], vec![1.0f32, 2.0])?;
/// let y = rmsnorm(&RmsNormArgs { x: &x, gamma: &gamma, eps: 1e-6, repeat: 1 })?;
/// let r = (12.5f32 + 1e-6).sqrt();
/// let got = y.to_vec()?;
/// assert!((got[0] - 3.0 / r).abs() < 1e-6 && (got[1] - 8.0 / r).abs() < 1e-6);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`RmsNormArgs::validate`].
pub fn rmsnorm(args: &RmsNormArgs<'_>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.x.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let y = reference::rmsnorm::forward_repeated(
                &widen(host(OP, "x", args.x)?),
                &widen(host(OP, "gamma", args.gamma)?),
                f64::from(args.eps),
                dims.repeat,
            );
            Tensor::from_vec(&device, &args.out_shape(&dims), to_f32(y))
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::rmsnorm::forward_tensors(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::rmsnorm::forward_tensors(d, args, &dims),
    }
}

/// The backward given `dy` (shaped like the output): `dx` and `dγ`.
///
/// # Errors
/// Those of [`RmsNormArgs::validate`], [`Error::ShapeMismatch`] for `dy`,
/// [`Error::DeviceMismatch`].
pub fn rmsnorm_backward(args: &RmsNormArgs<'_>, dy: &Tensor<f32>) -> Result<RmsNormGrads> {
    let dims = args.validate()?;
    let want = args.out_shape(&dims);
    if dy.shape() != want.as_slice() {
        return Err(Error::ShapeMismatch {
            op: OP,
            arg: "dy",
            expected: format!("{want:?} (the output's shape)"),
            got: dy.shape().to_vec(),
        });
    }
    let mut dev = DeviceCheck::new(OP);
    dev.add("x", args.x)?;
    dev.add("dy", dy)?;
    let device = dev.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let (dx, dgamma) = reference::rmsnorm::backward_repeated(
                &widen(host(OP, "x", args.x)?),
                &widen(host(OP, "gamma", args.gamma)?),
                f64::from(args.eps),
                dims.repeat,
                &widen(host(OP, "dy", dy)?),
            );
            Ok(RmsNormGrads {
                dx: Tensor::from_vec(&device, args.x.shape(), to_f32(dx))?,
                dgamma: Tensor::from_vec(&device, &[dims.dim], to_f32(dgamma))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::rmsnorm::backward_tensors(d, args, dy, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::rmsnorm::backward_tensors(d, args, dy, &dims),
    }
}
