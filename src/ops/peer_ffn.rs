//! PEER per-slot FFN values (UltraMemV2 values; classic PEER), Part II §2.6.
//!
//! Per token `t` and slot `k` with row `ρ = rows[t,k]`: `α = <down[ρ], z[t]>`,
//! `w_c = s[t,k,c]·φ(α)`, and `out[t, slice c] += w_c·up[ρ, slice c]`. Classic PEER is
//! `Dp = Dv = D`, `Cn = 1`, `φ = Gelu`; UltraMemV2 uses `φ = Identity` and `Cn = 2`.

use crate::device::on_device;
use crate::dims::peer_ffn::{Activation, PeerFfnDims};
use crate::dims::{expect_shape, BackwardMode};
use crate::dtype::Float;
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::peer_ffn::{self as gpu, PeerBuffers};
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::peer_ffn as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "peer_ffn";

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
    on_device!(device,
    cpu => {
        let out = reference::forward(
            &dims,
            args.activation,
            host(OP, "rows", args.rows)?,
            host(OP, "scores", args.scores)?,
            host(OP, "z", args.z)?,
            host(OP, "down", args.down)?,
            host(OP, "up", args.up)?,
        )?;
        Tensor::from_vec(&device, &[dims.tokens, dims.dv], to_f32(OP, out)?)
    },
    gpu(g) => {
        let b = buffers(g.as_ref(), args)?;
        let out = gpu::forward(g.as_ref(), &dims, V::DTYPE, args.activation, &b)?;
        g.wrap(&[dims.tokens, dims.dv], out)
    })
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
    on_device!(device,
    cpu => {
        // The CPU reference sums in one fixed order whatever the mode.
        let _ = mode;
        let g = reference::backward(
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
            dz: Tensor::from_vec(&device, args.z.shape(), to_f32(OP, g.dz)?)?,
            dscores: Tensor::from_vec(&device, args.scores.shape(), to_f32(OP, g.dscores)?)?,
            ddown: Tensor::from_vec(&device, args.down.shape(), to_f32(OP, g.ddown)?)?,
            dup: Tensor::from_vec(&device, args.up.shape(), to_f32(OP, g.dup)?)?,
        })
    },
    gpu(g) => {
        let b = buffers(g.as_ref(), args)?;
        let dout = g.buffer(OP, "dout", dout)?;
        let grads =
            gpu::backward(g.as_ref(), &dims, V::DTYPE, args.activation, mode, &b, dout)?;
        Ok(PeerFfnGrads {
            dz: g.wrap(&[dims.tokens, dims.dp], grads.dz)?,
            dscores: g.wrap(&[dims.tokens, dims.slots, dims.cores], grads.dscores)?,
            ddown: g.wrap(&[dims.table_rows, dims.dp], grads.ddown)?,
            dup: g.wrap(&[dims.table_rows, dims.dv], grads.dup)?,
        })
    })
}

/// The device buffers behind the arguments.
#[cfg(gpu_backend)]
fn buffers<'t, G: TensorGpu, V: Float>(
    g: &G,
    args: &PeerFfnArgs<'t, V>,
) -> Result<PeerBuffers<'t, G::Buffer>> {
    Ok(PeerBuffers {
        rows: g.buffer(OP, "rows", args.rows)?,
        scores: g.buffer(OP, "scores", args.scores)?,
        z: g.buffer(OP, "z", args.z)?,
        down: g.buffer(OP, "down", args.down)?,
        up: g.buffer(OP, "up", args.up)?,
    })
}
