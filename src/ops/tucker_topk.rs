//! Tucker product-key top-k (TDQKR; UltraMem, UltraMemV2), Part II §2.3.
//!
//! Per token `t` and head `h`: per-rank sub-key scores `S_row[r,i] = <q[t,h,0,r], keys[h,0,r,i]>`
//! and `S_col[r,j]` likewise for side 1; the rank-1 proxy `a_row = uᵀ S_row`, `a_col = vᵀ S_col`
//! picks the best `K1` rows and columns; on that `K1 × K1` grid each core gives
//! `G_c[i,j] = S_row[:,i]ᵀ C_c S_col[:,j]`, and the best `m` cells of `G = Σ_c G_c` are returned
//! as `ν = i·n + j` with their per-core scores `G_c`, sorted by `G` (ties to the lower `ν`).
//! `(u, v)` are inputs (see [`crate::layer::tucker_proxy`]); queries and keys arrive already
//! normalised.

use crate::device::on_device;
use crate::dims::tucker_topk::TuckerTopkDims;
use crate::dims::{expect_shape, BackwardMode};
use crate::dtype::Float;
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::product_key_topk::{self as gpu, TuckerBuffers};
use crate::ops::additive_topk::TopkOutput;
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::tucker_topk as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "tucker_topk";

/// Arguments of [`tucker_topk`] and [`tucker_topk_backward`].
#[derive(Clone, Copy, Debug)]
pub struct TuckerTopkArgs<'a, K: Float> {
    /// Normalised queries `[T, H, 2, R, Dk]` (side, then rank); must be finite.
    pub q: &'a Tensor<f32>,
    /// Normalised keys `[H, 2, R, n, Dk]`. A NaN key scores NaN and ranks last.
    pub keys: &'a Tensor<K>,
    /// Cores `[H, Cn, R, R]`; must be finite.
    pub cores: &'a Tensor<f32>,
    /// Row proxy `u[H, R]` (top left singular vector of `Σ_c C_c`); must be finite.
    pub u: &'a Tensor<f32>,
    /// Column proxy `v[H, R]` (top right singular vector); must be finite.
    pub v: &'a Tensor<f32>,
    /// Stage-1 width; `None` means [`crate::dims::tucker_topk::default_k1`].
    pub k1: Option<usize>,
    /// Results per token and head.
    pub m: usize,
}

impl<K: Float> TuckerTopkArgs<'_, K> {
    /// Checks shapes, sizes and devices.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`], [`crate::Error::DeviceMismatch`] and those of
    /// [`TuckerTopkDims::check`].
    pub fn validate(&self) -> Result<TuckerTopkDims> {
        let dims = TuckerTopkDims::from_shapes(
            [
                self.q.shape(),
                self.keys.shape(),
                self.cores.shape(),
                self.u.shape(),
                self.v.shape(),
            ],
            self.m,
            self.k1,
        )?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("q", self.q)?;
        dev.add("keys", self.keys)?;
        dev.add("cores", self.cores)?;
        dev.add("u", self.u)?;
        dev.add("v", self.v)?;
        Ok(dims)
    }
}

/// Gradients of [`tucker_topk_backward`], all f32.
#[derive(Debug)]
pub struct TuckerTopkGrads {
    /// `[T, H, 2, R, Dk]`.
    pub dq: Tensor<f32>,
    /// `[H, 2, R, n, Dk]`; zero for keys no chosen cell used.
    pub dkeys: Tensor<f32>,
    /// `[H, Cn, R, R]`.
    pub dcores: Tensor<f32>,
}

/// Tucker product-key top-k: `idx[T, H, m]` and per-core `score[T, H, m, Cn]`.
///
/// # Errors
/// Those of [`TuckerTopkArgs::validate`], and [`crate::Error::NonFinite`] for a NaN or infinite
/// query, core or proxy entry.
pub fn tucker_topk<K: Float>(args: &TuckerTopkArgs<'_, K>) -> Result<TopkOutput> {
    let dims = args.validate()?;
    let device = args.q.device();
    let idx_shape = [dims.tokens, dims.heads, dims.m];
    let score_shape = [dims.tokens, dims.heads, dims.m, dims.cores];
    on_device!(device,
    cpu => {
        let (idx, score) = reference::forward(
            &dims,
            host(OP, "q", args.q)?,
            host(OP, "keys", args.keys)?,
            host(OP, "cores", args.cores)?,
            host(OP, "u", args.u)?,
            host(OP, "v", args.v)?,
        )?;
        Ok(TopkOutput {
            idx: Tensor::from_vec(&device, &idx_shape, idx)?,
            score: Tensor::from_vec(&device, &score_shape, to_f32(OP, score)?)?,
        })
    },
    gpu(g) => {
        let b = buffers(g.as_ref(), args)?;
        let (idx, score) = gpu::tucker_forward_buffers(g.as_ref(), &dims, K::DTYPE, &b)?;
        Ok(TopkOutput {
            idx: g.wrap(&idx_shape, idx)?,
            score: g.wrap(&score_shape, score)?,
        })
    })
}

/// Backward of [`tucker_topk`] from the chosen `idx[T, H, m]` and `dscore[T, H, m, Cn]`; it
/// recomputes the scores it needs from `q`, `keys` and `idx` (no stored grids). `(u, v)` and the
/// selection carry no gradient.
///
/// # Errors
/// Those of [`TuckerTopkArgs::validate`], [`crate::Error::ShapeMismatch`] for `idx` or `dscore`,
/// and [`crate::Error::IndexOutOfRange`] for an index `>= n²`.
pub fn tucker_topk_backward<K: Float>(
    args: &TuckerTopkArgs<'_, K>,
    idx: &Tensor<u32>,
    dscore: &Tensor<f32>,
    mode: BackwardMode,
) -> Result<TuckerTopkGrads> {
    let dims = args.validate()?;
    let (t, h, m) = (Some(dims.tokens), Some(dims.heads), Some(dims.m));
    expect_shape(OP, "idx", idx.shape(), &[("T", t), ("H", h), ("m", m)])?;
    expect_shape(
        OP,
        "dscore",
        dscore.shape(),
        &[("T", t), ("H", h), ("m", m), ("Cn", Some(dims.cores))],
    )?;
    let mut dev = DeviceCheck::new(OP);
    dev.add("q", args.q)?;
    dev.add("idx", idx)?;
    dev.add("dscore", dscore)?;
    let device = dev.device();
    on_device!(device,
    cpu => {
        // The CPU reference sums in one fixed order whatever the mode.
        let _ = mode;
        let g = reference::backward(
            &dims,
            host(OP, "q", args.q)?,
            host(OP, "keys", args.keys)?,
            host(OP, "cores", args.cores)?,
            host(OP, "idx", idx)?,
            host(OP, "dscore", dscore)?,
        )?;
        Ok(TuckerTopkGrads {
            dq: Tensor::from_vec(&device, args.q.shape(), to_f32(OP, g.dq)?)?,
            dkeys: Tensor::from_vec(&device, args.keys.shape(), to_f32(OP, g.dkeys)?)?,
            dcores: Tensor::from_vec(&device, args.cores.shape(), to_f32(OP, g.dcores)?)?,
        })
    },
    gpu(g) => {
        let b = buffers(g.as_ref(), args)?;
        let (idx, dscore) = (g.buffer(OP, "idx", idx)?, g.buffer(OP, "dscore", dscore)?);
        let (dq, dkeys, dcores) =
            gpu::tucker_backward_buffers(g.as_ref(), &dims, K::DTYPE, mode, &b, idx, dscore)?;
        Ok(TuckerTopkGrads {
            dq: g.wrap(args.q.shape(), dq)?,
            dkeys: g.wrap(args.keys.shape(), dkeys)?,
            dcores: g.wrap(args.cores.shape(), dcores)?,
        })
    })
}

/// The device buffers behind the arguments.
#[cfg(gpu_backend)]
fn buffers<'t, G: TensorGpu, K: Float>(
    g: &G,
    args: &TuckerTopkArgs<'t, K>,
) -> Result<TuckerBuffers<'t, G::Buffer>> {
    Ok(TuckerBuffers {
        q: g.buffer(OP, "q", args.q)?,
        keys: g.buffer(OP, "keys", args.keys)?,
        cores: g.buffer(OP, "cores", args.cores)?,
        u: g.buffer(OP, "u", args.u)?,
        v: g.buffer(OP, "v", args.v)?,
    })
}
