//! Dense matrix products, the layer's projections (`W_q`, `W_pre`, `W_out`) and their gradients:
//! `C = op(A) op(B) (+ C0)` in f32 with f32 accumulation on GPUs.
//!
//! The one kernel reads its operands through strides, so the three products of a linear layer
//! — `x Wᵀ`, `dY W`, `dYᵀ X` — are the same call with other transpose flags, and no operand is
//! ever copied into another layout. Its backward is two more products, so it has no
//! `_backward` function of its own.

use crate::device::on_device;
use crate::dims::matmul::{MatmulDims, Transpose};
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::matmul as gpu;
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::matmul as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "matmul";

/// Arguments of [`matmul`].
#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs<'a> {
    /// `A`: `[M, K]`, or `[K, M]` read transposed.
    pub a: &'a Tensor<f32>,
    /// `B`: `[K, N]`, or `[N, K]` read transposed (a weight `W[out, in]` applied as `x Wᵀ`).
    pub b: &'a Tensor<f32>,
    /// How `A` is read.
    pub transpose_a: Transpose,
    /// How `B` is read.
    pub transpose_b: Transpose,
    /// `C0[M, N]` added to the product (a second gradient contribution), or none.
    pub addend: Option<&'a Tensor<f32>>,
}

impl<'a> MatmulArgs<'a> {
    /// Checks shapes and devices.
    ///
    /// # Errors
    /// Those of [`MatmulDims::from_shapes`], [`crate::Error::DeviceMismatch`].
    pub fn validate(&self) -> Result<MatmulDims> {
        let dims = MatmulDims::from_shapes(
            self.a.shape(),
            self.b.shape(),
            self.transpose_a,
            self.transpose_b,
            self.addend.map(|c0| c0.shape()),
        )?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("a", self.a)?;
        dev.add("b", self.b)?;
        if let Some(c0) = self.addend {
            dev.add("addend", c0)?;
        }
        Ok(dims)
    }

    /// `x Wᵀ`: a linear layer's output from its input `x[T, in]` and weight `W[out, in]`.
    pub fn linear(x: &'a Tensor<f32>, w: &'a Tensor<f32>) -> MatmulArgs<'a> {
        MatmulArgs {
            a: x,
            b: w,
            transpose_a: Transpose::No,
            transpose_b: Transpose::Yes,
            addend: None,
        }
    }

    /// `dY W`: the gradient of a linear layer's input from `dY[T, out]` and `W[out, in]`, plus
    /// `addend[T, in]` (another contribution to the same gradient) when given.
    pub fn linear_input_grad(
        dy: &'a Tensor<f32>,
        w: &'a Tensor<f32>,
        addend: Option<&'a Tensor<f32>>,
    ) -> MatmulArgs<'a> {
        MatmulArgs {
            a: dy,
            b: w,
            transpose_a: Transpose::No,
            transpose_b: Transpose::No,
            addend,
        }
    }

    /// `dYᵀ X`: the gradient of a linear layer's weight `[out, in]` from `dY[T, out]` and its
    /// input `x[T, in]`.
    pub fn linear_weight_grad(dy: &'a Tensor<f32>, x: &'a Tensor<f32>) -> MatmulArgs<'a> {
        MatmulArgs {
            a: dy,
            b: x,
            transpose_a: Transpose::Yes,
            transpose_b: Transpose::No,
            addend: None,
        }
    }
}

/// `C[M, N] = op(A) op(B) (+ addend)`.
///
/// ```
/// use ultramem::{matmul, Device, MatmulArgs, Tensor, Transpose};
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(&dev, &[1, 2], vec![1.0f32, 2.0])?;        // [T, in]
/// let w = Tensor::from_vec(&dev, &[3, 2], vec![1.0f32, 0., 0., 1., 1., 1.])?; // [out, in]
/// let y = matmul(&MatmulArgs {
///     a: &x,
///     b: &w,
///     transpose_a: Transpose::No,
///     transpose_b: Transpose::Yes,
///     addend: None,
/// })?;
/// assert_eq!(y.to_vec()?, vec![1.0, 2.0, 3.0]); // x Wᵀ
/// let same = matmul(&MatmulArgs::linear(&x, &w))?;
/// assert_eq!(same.to_vec()?, y.to_vec()?);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`MatmulArgs::validate`]; on a GPU, sizes past its 32-bit counters or one binding.
pub fn matmul(args: &MatmulArgs<'_>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.a.device();
    on_device!(device,
    cpu => {
        let addend = match args.addend {
            Some(c0) => Some(host(OP, "addend", c0)?),
            None => None,
        };
        let c = reference::forward(
            &dims,
            host(OP, "a", args.a)?,
            host(OP, "b", args.b)?,
            addend,
        )?;
        Tensor::from_vec(&device, &[dims.m, dims.n], to_f32(OP, c)?)
    },
    gpu(g) => {
        let addend = match args.addend {
            Some(c0) => Some(g.buffer(OP, "addend", c0)?),
            None => None,
        };
        let (a, b) = (g.buffer(OP, "a", args.a)?, g.buffer(OP, "b", args.b)?);
        let out = gpu::forward(g.as_ref(), &dims, a, b, addend)?;
        g.wrap(&[dims.m, dims.n], out)
    })
}
