//! PEER per-slot FFN values (UltraMemV2 values; classic PEER), Part II §2.6.
//!
//! Per token `t` and slot `k` with row `ρ = rows[t,k]`: `α = <down[ρ], z[t]>`,
//! `w_c = s[t,k,c]·φ(α)`, and `out[t, slice c] += w_c·up[ρ, slice c]`. Classic PEER is
//! `Dp = Dv = D`, `Cn = 1`, `φ = Gelu`; UltraMemV2 uses `φ = Identity` and `Cn = 2`.

use crate::cost::{expected_distinct, Cost, F32_BYTES, U32_BYTES};
use crate::device::DeviceInner;
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::weighted_gather::check_core_split;
use crate::ops::{
    expect_shape, host, mul, nonzero, rows_fit_u32, to_f32, BackwardMode, DeviceCheck,
};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "peer_ffn";

/// The activation `φ` on the per-slot pre-value `α`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `φ(α) = α` (UltraMemV2, eq. 15).
    #[default]
    Identity,
    /// `max(α, 0)`.
    Relu,
    /// `α·Φ(α)` with the exact (erf) normal CDF (classic PEER).
    Gelu,
    /// `α·σ(α)`.
    Silu,
}

/// The checked sizes of one PEER call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFfnDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Slots per token `M`.
    pub slots: usize,
    /// Cores `Cn`.
    pub cores: usize,
    /// Table rows `N`.
    pub rows: usize,
    /// Down (pre-value) width `Dp`.
    pub dp: usize,
    /// Up (value) width `Dv`, a multiple of `Cn`.
    pub dv: usize,
}

impl PeerFfnDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::InvalidArgument`] (`Dv % Cn != 0`),
    /// [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "rows", "M", self.slots)?;
        nonzero(OP, "scores", "Cn", self.cores)?;
        nonzero(OP, "down", "N", self.rows)?;
        rows_fit_u32(OP, "down", self.rows)?;
        nonzero(OP, "down", "Dp", self.dp)?;
        nonzero(OP, "up", "Dv", self.dv)?;
        check_core_split(OP, self.dv, self.cores)?;
        let tm = mul(OP, "T*M", self.tokens, self.slots)?;
        mul(OP, "T*M*Cn", tm, self.cores)?;
        mul(OP, "T*Dp", self.tokens, self.dp)?;
        mul(OP, "T*Dv", self.tokens, self.dv)?;
        mul(OP, "N*Dp", self.rows, self.dp)?;
        mul(OP, "N*Dv", self.rows, self.dv)?;
        Ok(())
    }

    /// Expected distinct rows touched when every slot picks a uniform random row.
    pub fn expected_distinct_rows(&self) -> f64 {
        expected_distinct(self.rows as f64, self.slots as f64, self.tokens as f64)
    }

    /// Forward bytes and FLOPs at least: indices, scores and `z` read once, each distinct row
    /// of both tables read once, the output written once; `2·Dp + 2·Dv` FLOPs per slot.
    pub fn cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: tm * (U32_BYTES + self.cores * F32_BYTES) as f64
                + (self.tokens * self.dp * F32_BYTES) as f64
                + distinct_rows * ((self.dp + self.dv) * table_bytes) as f64,
            bytes_written: (self.tokens * self.dv * F32_BYTES) as f64,
            flops: tm * 2.0 * (self.dp + self.dv) as f64,
        }
    }

    /// Backward bytes and FLOPs at least: forward inputs and `dout` read, `dz`, `ds` and each
    /// touched gradient row written once (f32); `4·(Dp + Dv)` FLOPs per slot.
    pub fn backward_cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let fwd = self.cost(table_bytes, distinct_rows);
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: fwd.bytes_read + (self.tokens * self.dv * F32_BYTES) as f64,
            bytes_written: (self.tokens * self.dp * F32_BYTES) as f64
                + tm * (self.cores * F32_BYTES) as f64
                + distinct_rows * ((self.dp + self.dv) * F32_BYTES) as f64,
            flops: tm * 4.0 * (self.dp + self.dv) as f64,
        }
    }
}

/// Arguments of [`peer_ffn`] and [`peer_ffn_backward`].
#[derive(Clone, Copy, Debug)]
pub struct PeerFfnArgs<'a, V: Float> {
    /// Value rows `[T, M]`, each `< N`.
    pub rows: &'a Tensor<u32>,
    /// Per-slot, per-core scores `s[T, M, Cn]`.
    pub scores: &'a Tensor<f32>,
    /// Pre-value input `z[T, Dp]` (`W_pre x` in UltraMemV2; `x` in classic PEER).
    pub z: &'a Tensor<f32>,
    /// Down (pre-value) table `[N, Dp]`.
    pub down: &'a Tensor<V>,
    /// Up (value) table `[N, Dv]`.
    pub up: &'a Tensor<V>,
    /// `φ`.
    pub activation: Activation,
}

impl<V: Float> PeerFfnArgs<'_, V> {
    /// Checks shapes, sizes and devices.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`], [`crate::Error::DeviceMismatch`] and those of
    /// [`PeerFfnDims::check`].
    pub fn validate(&self) -> Result<PeerFfnDims> {
        let dims = PeerFfnDims::from_shapes(
            self.rows.shape(),
            self.scores.shape(),
            self.z.shape(),
            self.down.shape(),
            self.up.shape(),
        )?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("rows", self.rows)?;
        dev.add("scores", self.scores)?;
        dev.add("z", self.z)?;
        dev.add("down", self.down)?;
        dev.add("up", self.up)?;
        Ok(dims)
    }
}

impl PeerFfnDims {
    /// The sizes named by the shapes of `rows[T, M]`, `scores[T, M, Cn]`, `z[T, Dp]`,
    /// `down[N, Dp]` and `up[N, Dv]`, checked; what [`PeerFfnArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`PeerFfnDims::check`].
    pub fn from_shapes(
        rs: &[usize],
        ss: &[usize],
        zs: &[usize],
        ds: &[usize],
        us: &[usize],
    ) -> Result<PeerFfnDims> {
        expect_shape(OP, "rows", rs, &[("T", None), ("M", None)])?;
        let (t, m) = (Some(rs[0]), Some(rs[1]));
        expect_shape(OP, "scores", ss, &[("T", t), ("M", m), ("Cn", None)])?;
        expect_shape(OP, "down", ds, &[("N", None), ("Dp", None)])?;
        expect_shape(OP, "z", zs, &[("T", t), ("Dp", Some(ds[1]))])?;
        expect_shape(OP, "up", us, &[("N", Some(ds[0])), ("Dv", None)])?;
        let dims = PeerFfnDims {
            tokens: rs[0],
            slots: rs[1],
            cores: ss[2],
            rows: ds[0],
            dp: ds[1],
            dv: us[1],
        };
        dims.check()?;
        Ok(dims)
    }
}

/// Gradients of [`peer_ffn_backward`], all f32.
#[derive(Debug)]
pub struct PeerFfnGrads {
    /// `[T, Dp]`.
    pub dz: Tensor<f32>,
    /// `[T, M, Cn]`.
    pub dscores: Tensor<f32>,
    /// `[N, Dp]`; zero in rows no slot chose.
    pub ddown: Tensor<f32>,
    /// `[N, Dv]`; zero in rows no slot chose.
    pub dup: Tensor<f32>,
}

/// PEER per-slot FFN: `out[T, Dv]`.
///
/// ```
/// use ultramem::{peer_ffn, Activation, Device, PeerFfnArgs, Tensor};
/// let cpu = Device::cpu();
/// let down = Tensor::from_vec(&cpu, &[2, 2], vec![1.0f32, 0., 0., 1.])?;
/// let up = Tensor::from_vec(&cpu, &[2, 1], vec![10.0f32, 100.])?;
/// let z = Tensor::from_vec(&cpu, &[1, 2], vec![-1.0f32, 3.])?;
/// let rows = Tensor::from_vec(&cpu, &[1, 2], vec![0u32, 1])?;
/// let scores = Tensor::from_vec(&cpu, &[1, 2, 1], vec![1.0f32, 0.5])?;
/// let args = PeerFfnArgs { rows: &rows, scores: &scores, z: &z, down: &down, up: &up,
///                          activation: Activation::Relu };
/// // α = [-1, 3] → relu → [0, 3]; out = 1·0·10 + 0.5·3·100.
/// assert_eq!(peer_ffn(&args)?.to_vec()?, vec![150.0]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`PeerFfnArgs::validate`], and [`crate::Error::IndexOutOfRange`] for a row `>= N`.
pub fn peer_ffn<V: Float>(args: &PeerFfnArgs<'_, V>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.rows.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let out = reference::peer_ffn::forward(
                &dims,
                args.activation,
                host(OP, "rows", args.rows)?,
                host(OP, "scores", args.scores)?,
                host(OP, "z", args.z)?,
                host(OP, "down", args.down)?,
                host(OP, "up", args.up)?,
            )?;
            Tensor::from_vec(&device, &[dims.tokens, dims.dv], to_f32(out))
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::peer_ffn::forward_tensors(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::peer_ffn::forward_tensors(d, args, &dims),
    }
}

/// Backward of [`peer_ffn`] given `dout[T, Dv]`. `mode` as in
/// [`crate::weighted_gather_backward`]; the CPU reference is deterministic in either mode.
///
/// # Errors
/// Those of [`PeerFfnArgs::validate`], [`crate::Error::ShapeMismatch`] for `dout`,
/// [`crate::Error::IndexOutOfRange`] for a row `>= N`.
pub fn peer_ffn_backward<V: Float>(
    args: &PeerFfnArgs<'_, V>,
    dout: &Tensor<f32>,
    mode: BackwardMode,
) -> Result<PeerFfnGrads> {
    let dims = args.validate()?;
    expect_shape(
        OP,
        "dout",
        dout.shape(),
        &[("T", Some(dims.tokens)), ("Dv", Some(dims.dv))],
    )?;
    let mut dev = DeviceCheck::new(OP);
    dev.add("rows", args.rows)?;
    dev.add("dout", dout)?;
    let device = dev.device();
    // The CPU reference sums in one fixed order whatever the mode.
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let _ = mode;
    match &device.inner {
        DeviceInner::Cpu => {
            let g = reference::peer_ffn::backward(
                &dims,
                args.activation,
                host(OP, "rows", args.rows)?,
                host(OP, "scores", args.scores)?,
                host(OP, "z", args.z)?,
                host(OP, "down", args.down)?,
                host(OP, "up", args.up)?,
                host(OP, "dout", dout)?,
            )?;
            Ok(PeerFfnGrads {
                dz: Tensor::from_vec(&device, args.z.shape(), to_f32(g.dz))?,
                dscores: Tensor::from_vec(&device, args.scores.shape(), to_f32(g.dscores))?,
                ddown: Tensor::from_vec(&device, args.down.shape(), to_f32(g.ddown))?,
                dup: Tensor::from_vec(&device, args.up.shape(), to_f32(g.dup))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::peer_ffn::backward_tensors(d, args, dout, mode, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::peer_ffn::backward_tensors(d, args, dout, mode, &dims),
    }
}
