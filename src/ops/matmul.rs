//! Dense matrix products, the layer's projections (`W_q`, `W_pre`, `W_out`) and their gradients:
//! `C = op(A) op(B) (+ C0)` in f32 with f32 accumulation on GPUs.
//!
//! The one kernel reads its operands through strides, so the three products of a linear layer
//! — `x Wᵀ`, `dY W`, `dYᵀ X` — are the same call with other transpose flags, and no operand is
//! ever copied into another layout. Its backward is two more products, so it has no
//! `_backward` function of its own.

use crate::cost::{Cost, F32_BYTES};
use crate::device::DeviceInner;
use crate::error::{Error, Result};
use crate::ops::{host, mul, to_f32, DeviceCheck};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "matmul";

/// The checked sizes of one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    /// Rows of the result (may be 0).
    pub m: usize,
    /// Columns of the result (may be 0).
    pub n: usize,
    /// The summed dimension (may be 0: the product is then zero).
    pub k: usize,
    /// `A` is stored `[K, M]`.
    pub transpose_a: bool,
    /// `B` is stored `[N, K]`.
    pub transpose_b: bool,
}

impl MatmulDims {
    /// Checks that every element count fits `usize`.
    ///
    /// # Errors
    /// [`Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        mul(OP, "M*K", self.m, self.k)?;
        mul(OP, "K*N", self.k, self.n)?;
        mul(OP, "M*N", self.m, self.n)?;
        Ok(())
    }

    /// Both operands read once, the result written once (and read once with an addend);
    /// `2·M·N·K` FLOPs.
    pub fn cost(&self, with_addend: bool) -> Cost {
        let (m, n, k) = (self.m as f64, self.n as f64, self.k as f64);
        let out = m * n * F32_BYTES as f64;
        Cost {
            bytes_read: (m * k + k * n) * F32_BYTES as f64 + if with_addend { out } else { 0.0 },
            bytes_written: out,
            flops: 2.0 * m * n * k,
        }
    }
}

/// Arguments of [`matmul`].
#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs<'a> {
    /// `A`: `[M, K]`, or `[K, M]` when `transpose_a`.
    pub a: &'a Tensor<f32>,
    /// `B`: `[K, N]`, or `[N, K]` when `transpose_b` (a weight `W[out, in]` applied as `x Wᵀ`).
    pub b: &'a Tensor<f32>,
    /// Read `A` transposed.
    pub transpose_a: bool,
    /// Read `B` transposed.
    pub transpose_b: bool,
    /// `C0[M, N]` added to the product (a second gradient contribution), or none.
    pub addend: Option<&'a Tensor<f32>>,
}

fn rank2(arg: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        &[r, c] => Ok((r, c)),
        _ => Err(Error::ShapeMismatch {
            op: OP,
            arg,
            expected: "a matrix [rows, cols]".into(),
            got: shape.to_vec(),
        }),
    }
}

impl MatmulArgs<'_> {
    /// Checks shapes and devices.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless both operands are matrices whose inner sizes agree and the
    /// addend is `[M, N]`, [`Error::DeviceMismatch`], [`Error::SizeOverflow`].
    pub fn validate(&self) -> Result<MatmulDims> {
        let (ar, ac) = rank2("a", self.a.shape())?;
        let (br, bc) = rank2("b", self.b.shape())?;
        let (m, k) = if self.transpose_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if self.transpose_b { (bc, br) } else { (br, bc) };
        if kb != k {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "b",
                expected: format!(
                    "{} = {k} (the inner size of a{})",
                    if self.transpose_b {
                        "[N, K] with K"
                    } else {
                        "[K, N] with K"
                    },
                    if self.transpose_a { "ᵀ" } else { "" }
                ),
                got: self.b.shape().to_vec(),
            });
        }
        if let Some(c0) = self.addend {
            if c0.shape() != [m, n] {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    arg: "addend",
                    expected: format!("[M, N] = [{m}, {n}]"),
                    got: c0.shape().to_vec(),
                });
            }
        }
        let mut dev = DeviceCheck::new(OP);
        dev.add("a", self.a)?;
        dev.add("b", self.b)?;
        if let Some(c0) = self.addend {
            dev.add("addend", c0)?;
        }
        let dims = MatmulDims {
            m,
            n,
            k,
            transpose_a: self.transpose_a,
            transpose_b: self.transpose_b,
        };
        dims.check()?;
        Ok(dims)
    }
}

/// `C[M, N] = op(A) op(B) (+ addend)`.
///
/// ```
/// use ultramem::{matmul, Device, MatmulArgs, Tensor};
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(&dev, &[1, 2], vec![1.0f32, 2.0])?;        // [T, in]
/// let w = Tensor::from_vec(&dev, &[3, 2], vec![1.0f32, 0., 0., 1., 1., 1.])?; // [out, in]
/// let y = matmul(&MatmulArgs { a: &x, b: &w, transpose_a: false, transpose_b: true, addend: None })?;
/// assert_eq!(y.to_vec()?, vec![1.0, 2.0, 3.0]); // x Wᵀ
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`MatmulArgs::validate`]; on a GPU, sizes past its 32-bit counters or one binding.
pub fn matmul(args: &MatmulArgs<'_>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.a.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let addend = match args.addend {
                Some(c0) => Some(host(OP, "addend", c0)?),
                None => None,
            };
            let c = reference::matmul::forward(
                &dims,
                host(OP, "a", args.a)?,
                host(OP, "b", args.b)?,
                addend,
            )?;
            Tensor::from_vec(&device, &[dims.m, dims.n], to_f32(c))
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::matmul::forward_tensors(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::matmul::forward_tensors(d, args, &dims),
    }
}
