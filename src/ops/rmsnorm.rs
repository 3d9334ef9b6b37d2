//! RMSNorm over the last axis (the layer's query and key norms, Part II §2.1), forward and
//! backward: `y = γ ⊙ x / sqrt(mean(x²) + ε)` per row of `dim` elements.
//!
//! `repeat > 1` writes every normalised row `repeat` times in a row, which is how tied queries
//! (one query per side) feed all `R` Tucker ranks without a copy kernel; the backward sums the
//! copies' gradients.

use crate::device::on_device;
use crate::dims::rmsnorm::RmsNormDims;
use crate::error::{Error, Result};
#[cfg(gpu_backend)]
use crate::gpu::rmsnorm as gpu;
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::rmsnorm as reference;
use crate::reference::try_widen;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "rmsnorm";

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
    /// Those of [`RmsNormDims::from_shapes`], [`Error::DeviceMismatch`].
    pub fn validate(&self) -> Result<RmsNormDims> {
        let dims =
            RmsNormDims::from_shapes(self.x.shape(), self.gamma.shape(), self.eps, self.repeat)?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("x", self.x)?;
        dev.add("gamma", self.gamma)?;
        Ok(dims)
    }

    /// The output's shape: `x`'s with the last axis `repeat·dim`.
    pub fn out_shape(&self, d: &RmsNormDims) -> Vec<usize> {
        d.out_shape(self.x.shape())
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
    let out_shape = args.out_shape(&dims);
    on_device!(device,
    cpu => {
        let y = reference::forward_repeated(
            &try_widen(OP, host(OP, "x", args.x)?)?,
            &try_widen(OP, host(OP, "gamma", args.gamma)?)?,
            f64::from(args.eps),
            dims.repeat,
        )?;
        Tensor::from_vec(&device, &out_shape, to_f32(OP, y)?)
    },
    gpu(g) => {
        let (x, gamma) = (g.buffer(OP, "x", args.x)?, g.buffer(OP, "gamma", args.gamma)?);
        let out = gpu::forward(g.as_ref(), &dims, args.eps, x, gamma)?;
        g.wrap(&out_shape, out)
    })
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
    on_device!(device,
    cpu => {
        let (dx, dgamma) = reference::backward_repeated(
            &try_widen(OP, host(OP, "x", args.x)?)?,
            &try_widen(OP, host(OP, "gamma", args.gamma)?)?,
            f64::from(args.eps),
            dims.repeat,
            &try_widen(OP, host(OP, "dy", dy)?)?,
        )?;
        Ok(RmsNormGrads {
            dx: Tensor::from_vec(&device, args.x.shape(), to_f32(OP, dx)?)?,
            dgamma: Tensor::from_vec(&device, &[dims.dim], to_f32(OP, dgamma)?)?,
        })
    },
    gpu(g) => {
        let (x, gamma) = (g.buffer(OP, "x", args.x)?, g.buffer(OP, "gamma", args.gamma)?);
        let dy = g.buffer(OP, "dy", dy)?;
        let (dx, dgamma) = gpu::backward(g.as_ref(), &dims, args.eps, x, gamma, dy)?;
        Ok(RmsNormGrads {
            dx: g.wrap(args.x.shape(), dx)?,
            dgamma: g.wrap(&[dims.dim], dgamma)?,
        })
    })
}
