//! Tucker product-key top-k (TDQKR; UltraMem, UltraMemV2), Part II §2.3.
//!
//! Per token `t` and head `h`: per-rank sub-key scores `S_row[r,i] = <q[t,h,0,r], keys[h,0,r,i]>`
//! and `S_col[r,j]` likewise for side 1; the rank-1 proxy `a_row = uᵀ S_row`, `a_col = vᵀ S_col`
//! picks the best `K1` rows and columns; on that `K1 × K1` grid each core gives
//! `G_c[i,j] = S_row[:,i]ᵀ C_c S_col[:,j]`, and the best `m` cells of `G = Σ_c G_c` are returned
//! as `ν = i·n + j` with their per-core scores `G_c`, sorted by `G` (ties to the lower `ν`).
//! `(u, v)` are inputs (see [`crate::layer::tucker_proxy`]); queries and keys arrive already
//! normalised.

use crate::cost::{Cost, F32_BYTES, U32_BYTES};
use crate::device::DeviceInner;
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::additive_topk::TopkOutput;
use crate::ops::{
    at_most, expect_shape, grid_fits_u32, host, mul, nonzero, to_f32, BackwardMode, DeviceCheck,
};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "tucker_topk";

/// The default stage-1 width when none is given: `min(m, 128, n)` (Part II §8 A5).
pub fn default_k1(m: usize, n: usize) -> usize {
    m.min(128).min(n)
}

/// The checked sizes of one Tucker top-k call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuckerTopkDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Tucker rank `R`.
    pub rank: usize,
    /// Query/key width per side and rank `Dk`.
    pub dk: usize,
    /// Sub-keys per side `n`.
    pub n: usize,
    /// Cores `Cn`.
    pub cores: usize,
    /// Stage-1 width `K1 <= n`.
    pub k1: usize,
    /// Results per token and head `m <= K1²`.
    pub m: usize,
}

impl TuckerTopkDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::TooManySelected`] (`K1 > n`, `m > K1²`),
    /// [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "q", "H", self.heads)?;
        nonzero(OP, "q", "R", self.rank)?;
        nonzero(OP, "q", "Dk", self.dk)?;
        nonzero(OP, "keys", "n", self.n)?;
        nonzero(OP, "cores", "Cn", self.cores)?;
        nonzero(OP, "k1", "K1", self.k1)?;
        nonzero(OP, "m", "m", self.m)?;
        at_most(OP, "K1", self.k1, self.n)?;
        at_most(OP, "m", self.m, self.k1 * self.k1)?;
        grid_fits_u32(OP, self.n)?;
        let th = mul(OP, "T*H", self.tokens, self.heads)?;
        let qrow = mul(OP, "2*R*Dk", 2 * self.rank, self.dk)?;
        mul(OP, "T*H*2*R*Dk", th, qrow)?;
        mul(OP, "H*2*R*n*Dk", mul(OP, "H*n", self.heads, self.n)?, qrow)?;
        mul(OP, "T*H*m*Cn", mul(OP, "T*H*m", th, self.m)?, self.cores)?;
        Ok(())
    }

    /// Bytes and FLOPs at least (Part II §2.3 and §6.2): queries and keys read once, indices and
    /// per-core scores written once; `4·R·n·Dk` (scores) `+ 4·R·n` (proxy)
    /// `+ 2·Cn·K1²·(R² + R)` (grid) FLOPs per (token, head).
    pub fn cost(&self, key_bytes: usize) -> Cost {
        let th = (self.tokens * self.heads) as f64;
        let (r, n, dk) = (self.rank as f64, self.n as f64, self.dk as f64);
        let k1sq = (self.k1 * self.k1) as f64;
        Cost {
            bytes_read: th * (2.0 * r * dk * F32_BYTES as f64)
                + (self.heads as f64) * 2.0 * r * n * dk * key_bytes as f64
                + (self.heads * (self.cores * self.rank * self.rank + 2 * self.rank) * F32_BYTES)
                    as f64,
            bytes_written: th * (self.m * (U32_BYTES + self.cores * F32_BYTES)) as f64,
            flops: th
                * (4.0 * r * n * dk + 4.0 * r * n + 2.0 * self.cores as f64 * k1sq * (r * r + r)),
        }
    }
}

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
    /// Stage-1 width; `None` means [`default_k1`].
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

impl TuckerTopkDims {
    /// The sizes named by the shapes of `[q, keys, cores, u, v]` (as in [`TuckerTopkArgs`]) with
    /// `m` results and stage-1 width `k1` (`None`: the default), checked; what
    /// [`TuckerTopkArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`TuckerTopkDims::check`].
    pub fn from_shapes(
        [qs, ks, cs, us, vs]: [&[usize]; 5],
        m: usize,
        k1: Option<usize>,
    ) -> Result<TuckerTopkDims> {
        expect_shape(
            OP,
            "q",
            qs,
            &[
                ("T", None),
                ("H", None),
                ("2", Some(2)),
                ("R", None),
                ("Dk", None),
            ],
        )?;
        let (tokens, heads, rank, dk) = (qs[0], qs[1], qs[3], qs[4]);
        expect_shape(
            OP,
            "keys",
            ks,
            &[
                ("H", Some(heads)),
                ("2", Some(2)),
                ("R", Some(rank)),
                ("n", None),
                ("Dk", Some(dk)),
            ],
        )?;
        let n = ks[3];
        expect_shape(
            OP,
            "cores",
            cs,
            &[
                ("H", Some(heads)),
                ("Cn", None),
                ("R", Some(rank)),
                ("R", Some(rank)),
            ],
        )?;
        let proxy = [("H", Some(heads)), ("R", Some(rank))];
        expect_shape(OP, "u", us, &proxy)?;
        expect_shape(OP, "v", vs, &proxy)?;
        let dims = TuckerTopkDims {
            tokens,
            heads,
            rank,
            dk,
            n,
            cores: cs[1],
            k1: k1.unwrap_or(default_k1(m, n)),
            m,
        };
        dims.check()?;
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
    match &device.inner {
        DeviceInner::Cpu => {
            let (idx, score) = reference::tucker_topk::forward(
                &dims,
                host(OP, "q", args.q)?,
                host(OP, "keys", args.keys)?,
                host(OP, "cores", args.cores)?,
                host(OP, "u", args.u)?,
                host(OP, "v", args.v)?,
            )?;
            Ok(TopkOutput {
                idx: Tensor::from_vec(&device, &[dims.tokens, dims.heads, dims.m], idx)?,
                score: Tensor::from_vec(
                    &device,
                    &[dims.tokens, dims.heads, dims.m, dims.cores],
                    to_f32(score),
                )?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::product_key_topk::tucker_forward(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::product_key_topk::tucker_forward(d, args, &dims),
    }
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
    // The CPU reference sums in one fixed order whatever the mode.
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let _ = mode;
    match &device.inner {
        DeviceInner::Cpu => {
            let g = reference::tucker_topk::backward(
                &dims,
                host(OP, "q", args.q)?,
                host(OP, "keys", args.keys)?,
                host(OP, "cores", args.cores)?,
                host(OP, "idx", idx)?,
                host(OP, "dscore", dscore)?,
            )?;
            Ok(TuckerTopkGrads {
                dq: Tensor::from_vec(&device, args.q.shape(), to_f32(g.dq))?,
                dkeys: Tensor::from_vec(&device, args.keys.shape(), to_f32(g.dkeys))?,
                dcores: Tensor::from_vec(&device, args.cores.shape(), to_f32(g.dcores))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => {
            crate::gpu::product_key_topk::tucker_backward(d, args, idx, dscore, mode, &dims)
        }
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => {
            crate::gpu::product_key_topk::tucker_backward(d, args, idx, dscore, mode, &dims)
        }
    }
}
