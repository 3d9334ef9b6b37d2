//! Additive product-key top-k (PKM, PEER, Memory+), Part II §2.2.
//!
//! Per token `t` and head `h`, the query splits into halves `q1, q2` of `Dk/2`; the scores of the
//! two sub-key sets are `s1 = C1 q1` and `s2 = C2 q2` (`n` each); stage 1 keeps the best `K1` of
//! each side, and the best `k` of the `K1²` sums `s1_i + s2_j` are returned as flat indices
//! `i·n + j` with their scores, best first. With `K1 >= k` the result equals the top-`k` of the
//! whole `n²` grid, ties included (a pair dropped at stage 1 is beaten by `K1 >= k` pairs).

use crate::cost::{Cost, F32_BYTES, U32_BYTES};
use crate::device::DeviceInner;
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::{
    at_most, expect_shape, grid_fits_u32, host, mul, nonzero, to_f32, BackwardMode, DeviceCheck,
};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "additive_topk";

/// The checked sizes of one additive top-k call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdditiveTopkDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Full query width `Dk` (even; each half is `Dk/2`).
    pub dk: usize,
    /// Sub-keys per side `n`.
    pub n: usize,
    /// Results per token and head `k`.
    pub k: usize,
    /// Stage-1 width `K1` (`k <= K1 <= n`).
    pub k1: usize,
}

impl AdditiveTopkDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::InvalidArgument`] (odd `Dk`),
    /// [`crate::Error::TooManySelected`] (`K1 > n`, `k > K1`), [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "q", "H", self.heads)?;
        nonzero(OP, "q", "Dk", self.dk)?;
        nonzero(OP, "keys", "n", self.n)?;
        nonzero(OP, "k", "k", self.k)?;
        nonzero(OP, "k1", "K1", self.k1)?;
        if !self.dk.is_multiple_of(2) {
            return Err(crate::Error::InvalidArgument {
                op: OP,
                arg: "q",
                reason: format!(
                    "Dk = {} must be even: each half scores one sub-key set",
                    self.dk
                ),
            });
        }
        at_most(OP, "K1", self.k1, self.n)?;
        at_most(OP, "k", self.k, self.k1)?;
        grid_fits_u32(OP, self.n)?;
        let slots = mul(OP, "T*H", self.tokens, self.heads)?;
        mul(OP, "T*H*Dk", slots, self.dk)?;
        mul(OP, "T*H*k", slots, self.k)?;
        Ok(())
    }

    /// Bytes read and written at least, and FLOPs (Part II §6): the query and every key read
    /// once, indices and scores written once; two `n × Dk/2` products and `K1²` sums per
    /// (token, head).
    pub fn cost(&self, key_bytes: usize) -> Cost {
        let th = (self.tokens * self.heads) as f64;
        Cost {
            bytes_read: th * (self.dk * F32_BYTES) as f64
                + (self.heads * self.n * self.dk * key_bytes) as f64,
            bytes_written: th * (self.k * (U32_BYTES + F32_BYTES)) as f64,
            flops: th * (2.0 * (self.n * self.dk) as f64 + (self.k1 * self.k1) as f64),
        }
    }

    /// Backward: the chosen key rows and queries read, `dq` and the dense `dkeys` written;
    /// per slot, `dq` and `dkeys` updates on both sides (`4·Dk` FLOPs).
    pub fn backward_cost(&self, key_bytes: usize) -> Cost {
        let th = (self.tokens * self.heads) as f64;
        let key_elems = (self.heads * self.n * self.dk) as f64;
        Cost {
            bytes_read: th * (self.dk * F32_BYTES + self.k * (U32_BYTES + F32_BYTES)) as f64
                + key_elems.min(th * (2 * self.k * self.dk / 2) as f64) * key_bytes as f64,
            bytes_written: th * (self.dk * F32_BYTES) as f64 + key_elems * F32_BYTES as f64,
            flops: th * (self.k * 4 * self.dk) as f64,
        }
    }
}

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

impl AdditiveTopkDims {
    /// The sizes named by the shapes of `q[T, H, Dk]` and `keys[H, 2, n, Dk/2]` with `k` results
    /// and stage-1 width `k1` (`None`: `k`), checked; what [`AdditiveTopkArgs::validate`] and the
    /// C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`AdditiveTopkDims::check`].
    pub fn from_shapes(
        qs: &[usize],
        ks: &[usize],
        k: usize,
        k1: Option<usize>,
    ) -> Result<AdditiveTopkDims> {
        expect_shape(OP, "q", qs, &[("T", None), ("H", None), ("Dk", None)])?;
        let (tokens, heads, dk) = (qs[0], qs[1], qs[2]);
        expect_shape(
            OP,
            "keys",
            ks,
            &[
                ("H", Some(heads)),
                ("2", Some(2)),
                ("n", None),
                ("Dk/2", Some(dk / 2)),
            ],
        )?;
        let dims = AdditiveTopkDims {
            tokens,
            heads,
            dk,
            n: ks[2],
            k,
            k1: k1.unwrap_or(k),
        };
        dims.check()?;
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
    match &device.inner {
        DeviceInner::Cpu => {
            let (idx, score) = reference::additive_topk::forward(
                &dims,
                host(OP, "q", args.q)?,
                host(OP, "keys", args.keys)?,
            )?;
            Ok(TopkOutput {
                idx: Tensor::from_vec(&device, &shape, idx)?,
                score: Tensor::from_vec(&device, &shape, to_f32(score))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::product_key_topk::additive_forward(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::product_key_topk::additive_forward(d, args, &dims),
    }
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
    // The CPU reference sums in one fixed order whatever the mode.
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let _ = mode;
    match &device.inner {
        DeviceInner::Cpu => {
            let (dq, dkeys) = reference::additive_topk::backward(
                &dims,
                host(OP, "q", args.q)?,
                host(OP, "keys", args.keys)?,
                host(OP, "idx", idx)?,
                host(OP, "dscore", dscore)?,
            )?;
            Ok(AdditiveTopkGrads {
                dq: Tensor::from_vec(&device, args.q.shape(), to_f32(dq))?,
                dkeys: Tensor::from_vec(&device, args.keys.shape(), to_f32(dkeys))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => {
            crate::gpu::product_key_topk::additive_backward(d, args, idx, dscore, mode, &dims)
        }
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => {
            crate::gpu::product_key_topk::additive_backward(d, args, idx, dscore, mode, &dims)
        }
    }
}
