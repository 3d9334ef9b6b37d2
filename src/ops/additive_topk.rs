//! Additive product-key top-k (PKM, PEER, Memory+), Part II §2.2.
//!
//! Per token `t` and head `h`, the query splits into halves `q1, q2` of `Dk/2`; the scores of the
//! two sub-key sets are `s1 = C1 q1` and `s2 = C2 q2` (`n` each); stage 1 keeps the best `K1` of
//! each side, and the best `k` of the `K1²` sums `s1_i + s2_j` are returned as flat indices
//! `i·n + j` with their scores, best first. With `K1 >= k` the result equals the top-`k` of the
//! whole `n²` grid, ties included (a pair dropped at stage 1 is beaten by `K1 >= k` pairs).

use crate::device::on_device;
use crate::dims::additive_topk::AdditiveTopkDims;
use crate::dims::{expect_shape, BackwardMode};
use crate::dtype::Float;
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::product_key_topk as gpu;
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::additive_topk as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "additive_topk";

/// Arguments of [`additive_topk`] and [`additive_topk_backward`].
#[derive(Clone, Copy, Debug)]
pub struct AdditiveTopkArgs<'a, K: Float> {
    /// Queries `[T, H, Dk]`; must be finite.
    pub q: &'a Tensor<f32>,
    /// Sub-keys `[H, 2, n, Dk/2]` (side 0 scores the first half of the query). A NaN key
    /// scores NaN and ranks below every number.
    pub keys: &'a Tensor<K>,
    /// Results per token and head.
    pub k: usize,
    /// Stage-1 width; `None` means `k`.
    pub k1: Option<usize>,
}

impl<K: Float> AdditiveTopkArgs<'_, K> {
    /// Checks shapes, sizes and devices.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`], [`crate::Error::DeviceMismatch`] and those of
    /// [`AdditiveTopkDims::check`].
    pub fn validate(&self) -> Result<AdditiveTopkDims> {
        let dims =
            AdditiveTopkDims::from_shapes(self.q.shape(), self.keys.shape(), self.k, self.k1)?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("q", self.q)?;
        dev.add("keys", self.keys)?;
        Ok(dims)
    }
}

/// The indices and scores chosen by a top-k op.
#[derive(Debug)]
pub struct TopkOutput {
    /// Flat indices `i·n + j`, best first: `[T, H, k]`.
    pub idx: Tensor<u32>,
    /// Scores of the chosen entries: `[T, H, k]` (additive) or `[T, H, m, Cn]` (Tucker).
    pub score: Tensor<f32>,
}

/// Gradients of [`additive_topk_backward`].
#[derive(Debug)]
pub struct AdditiveTopkGrads {
    /// `[T, H, Dk]`.
    pub dq: Tensor<f32>,
    /// `[H, 2, n, Dk/2]`, f32 whatever the key dtype; zero where no chosen pair touched a key.
    pub dkeys: Tensor<f32>,
}

/// Additive product-key top-k.
///
/// ```
/// use ultramem::{additive_topk, AdditiveTopkArgs, Device, Tensor};
/// let cpu = Device::cpu();
/// // One token, one head, Dk = 2, n = 3: s1 = keys[0]·q1, s2 = keys[1]·q2.
/// let q = Tensor::from_vec(&cpu, &[1, 1, 2], vec![1.0f32, 1.0])?;
/// let keys = Tensor::from_vec(&cpu, &[1, 2, 3, 1], vec![0.0f32, 2.0, 1.0, 5.0, 3.0, 4.0])?;
/// let out = additive_topk(&AdditiveTopkArgs { q: &q, keys: &keys, k: 2, k1: None })?;
/// // s1 = [0, 2, 1], s2 = [5, 3, 4]: best sums 2+5 at 1·3+0 and 2+4 at 1·3+2.
/// assert_eq!(out.idx.to_vec()?, vec![3, 5]);
/// assert_eq!(out.score.to_vec()?, vec![7.0, 6.0]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`AdditiveTopkArgs::validate`], and [`crate::Error::NonFinite`] for a NaN or
/// infinite query.
pub fn additive_topk<K: Float>(args: &AdditiveTopkArgs<'_, K>) -> Result<TopkOutput> {
    let dims = args.validate()?;
    let device = args.q.device();
    let shape = [dims.tokens, dims.heads, dims.k];
    on_device!(device,
    cpu => {
        let (idx, score) = reference::forward(
            &dims,
            host(OP, "q", args.q)?,
            host(OP, "keys", args.keys)?,
        )?;
        Ok(TopkOutput {
            idx: Tensor::from_vec(&device, &shape, idx)?,
            score: Tensor::from_vec(&device, &shape, to_f32(OP, score)?)?,
        })
    },
    gpu(g) => {
        let (q, keys) = (g.buffer(OP, "q", args.q)?, g.buffer(OP, "keys", args.keys)?);
        let (idx, score) = gpu::additive_forward_buffers(g.as_ref(), &dims, K::DTYPE, q, keys)?;
        Ok(TopkOutput {
            idx: g.wrap(&shape, idx)?,
            score: g.wrap(&shape, score)?,
        })
    })
}

/// Backward of [`additive_topk`] from the chosen `idx` and the score gradient `dscore`
/// (both `[T, H, k]`). The selection itself carries no gradient.
///
/// # Errors
/// Those of [`AdditiveTopkArgs::validate`], [`crate::Error::ShapeMismatch`] for `idx` or
/// `dscore`, and [`crate::Error::IndexOutOfRange`] for an index `>= n²`.
pub fn additive_topk_backward<K: Float>(
    args: &AdditiveTopkArgs<'_, K>,
    idx: &Tensor<u32>,
    dscore: &Tensor<f32>,
    mode: BackwardMode,
) -> Result<AdditiveTopkGrads> {
    let dims = args.validate()?;
    let want = [
        ("T", Some(dims.tokens)),
        ("H", Some(dims.heads)),
        ("k", Some(dims.k)),
    ];
    expect_shape(OP, "idx", idx.shape(), &want)?;
    expect_shape(OP, "dscore", dscore.shape(), &want)?;
    let mut dev = DeviceCheck::new(OP);
    dev.add("q", args.q)?;
    dev.add("idx", idx)?;
    dev.add("dscore", dscore)?;
    let device = dev.device();
    on_device!(device,
    cpu => {
        // The CPU reference sums in one fixed order whatever the mode.
        let _ = mode;
        let (dq, dkeys) = reference::backward(
            &dims,
            host(OP, "q", args.q)?,
            host(OP, "keys", args.keys)?,
            host(OP, "idx", idx)?,
            host(OP, "dscore", dscore)?,
        )?;
        Ok(AdditiveTopkGrads {
            dq: Tensor::from_vec(&device, args.q.shape(), to_f32(OP, dq)?)?,
            dkeys: Tensor::from_vec(&device, args.keys.shape(), to_f32(OP, dkeys)?)?,
        })
    },
    gpu(g) => {
        let (q, keys) = (g.buffer(OP, "q", args.q)?, g.buffer(OP, "keys", args.keys)?);
        let (idx, dscore) = (g.buffer(OP, "idx", idx)?, g.buffer(OP, "dscore", dscore)?);
        let (dq, dkeys) = gpu::additive_backward_buffers(
            g.as_ref(),
            &dims,
            K::DTYPE,
            mode,
            q,
            keys,
            idx,
            dscore,
        )?;
        Ok(AdditiveTopkGrads {
            dq: g.wrap(args.q.shape(), dq)?,
            dkeys: g.wrap(args.keys.shape(), dkeys)?,
        })
    })
}
