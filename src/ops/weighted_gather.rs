//! Weighted gather with core split ("EmbeddingBag-sum with per-slot weights"), Part II §2.5.
//!
//! `out[t, slice c] = Σ_k w[t, k, c] · table[rows[t, k], slice c]`, where slice `c` is the
//! columns `[c·Dv/Cn, (c+1)·Dv/Cn)`. With `Cn = 1` it is a weighted EmbeddingBag sum.

use crate::device::on_device;
use crate::dims::weighted_gather::WeightedGatherDims;
use crate::dims::{expect_shape, BackwardMode};
use crate::dtype::Float;
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::weighted_gather::{self as gpu, GatherBuffers};
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::weighted_gather as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "weighted_gather";

/// Arguments of [`weighted_gather`] and [`weighted_gather_backward`].
#[derive(Clone, Copy, Debug)]
pub struct WeightedGatherArgs<'a, V: Float> {
    /// Value rows `[T, M]`, each `< N`.
    pub rows: &'a Tensor<u32>,
    /// Per-slot, per-core weights `[T, M, Cn]`.
    pub weights: &'a Tensor<f32>,
    /// The value table `[N, Dv]`.
    pub table: &'a Tensor<V>,
}

impl<V: Float> WeightedGatherArgs<'_, V> {
    /// Checks shapes, sizes and devices.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`], [`crate::Error::DeviceMismatch`] and those of
    /// [`WeightedGatherDims::check`].
    pub fn validate(&self) -> Result<WeightedGatherDims> {
        let dims = WeightedGatherDims::from_shapes(
            self.rows.shape(),
            self.weights.shape(),
            self.table.shape(),
        )?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("rows", self.rows)?;
        dev.add("weights", self.weights)?;
        dev.add("table", self.table)?;
        Ok(dims)
    }
}

/// Gradients of [`weighted_gather_backward`].
#[derive(Debug)]
pub struct WeightedGatherGrads {
    /// `[T, M, Cn]`: `dw[t,k,c] = <table[rows[t,k], slice c], dout[t, slice c]>`.
    pub dweights: Tensor<f32>,
    /// `[N, Dv]` in f32 whatever the table dtype; zero in rows no slot chose.
    pub dtable: Tensor<f32>,
}

/// Weighted gather: `out[T, Dv]`.
///
/// ```
/// use ultramem::{weighted_gather, Device, Tensor, WeightedGatherArgs};
/// let cpu = Device::cpu();
/// let table = Tensor::from_vec(&cpu, &[3, 2], vec![1.0f32, 2., 10., 20., 100., 200.])?;
/// let rows = Tensor::from_vec(&cpu, &[1, 2], vec![2u32, 0])?;
/// // Cn = 2: column 0 uses each slot's first weight, column 1 its second.
/// let weights = Tensor::from_vec(&cpu, &[1, 2, 2], vec![0.5f32, 1.0, 2.0, 3.0])?;
/// let out = weighted_gather(&WeightedGatherArgs { rows: &rows, weights: &weights, table: &table })?;
/// assert_eq!(out.to_vec()?, vec![0.5 * 100. + 2. * 1., 1.0 * 200. + 3. * 2.]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`WeightedGatherArgs::validate`], and [`crate::Error::IndexOutOfRange`] for a row
/// `>= N`.
pub fn weighted_gather<V: Float>(args: &WeightedGatherArgs<'_, V>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.rows.device();
    on_device!(device,
    cpu => {
        let out = reference::forward(
            &dims,
            host(OP, "rows", args.rows)?,
            host(OP, "weights", args.weights)?,
            host(OP, "table", args.table)?,
        )?;
        Tensor::from_vec(&device, &[dims.tokens, dims.dv], to_f32(OP, out)?)
    },
    gpu(g) => {
        let out = gpu::forward(g.as_ref(), &dims, V::DTYPE, &buffers(g.as_ref(), args)?)?;
        g.wrap(&[dims.tokens, dims.dv], out)
    })
}

/// Backward of [`weighted_gather`] given `dout[T, Dv]`.
///
/// `mode` picks how table gradients are summed on a GPU; the CPU reference is deterministic in
/// either mode.
///
/// # Errors
/// Those of [`WeightedGatherArgs::validate`], [`crate::Error::ShapeMismatch`] for `dout`,
/// [`crate::Error::IndexOutOfRange`] for a row `>= N`.
pub fn weighted_gather_backward<V: Float>(
    args: &WeightedGatherArgs<'_, V>,
    dout: &Tensor<f32>,
    mode: BackwardMode,
) -> Result<WeightedGatherGrads> {
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
        let (dw, dtable) = reference::backward(
            &dims,
            host(OP, "rows", args.rows)?,
            host(OP, "weights", args.weights)?,
            host(OP, "table", args.table)?,
            host(OP, "dout", dout)?,
        )?;
        Ok(WeightedGatherGrads {
            dweights: Tensor::from_vec(&device, args.weights.shape(), to_f32(OP, dw)?)?,
            dtable: Tensor::from_vec(&device, args.table.shape(), to_f32(OP, dtable)?)?,
        })
    },
    gpu(g) => {
        let dout = g.buffer(OP, "dout", dout)?;
        let (dw, dtable) =
            gpu::backward(g.as_ref(), &dims, V::DTYPE, mode, &buffers(g.as_ref(), args)?, dout)?;
        Ok(WeightedGatherGrads {
            dweights: g.wrap(&[dims.tokens, dims.slots, dims.cores], dw)?,
            dtable: g.wrap(&[dims.table_rows, dims.dv], dtable)?,
        })
    })
}

/// The device buffers behind the arguments.
#[cfg(gpu_backend)]
fn buffers<'t, G: TensorGpu, V: Float>(
    g: &G,
    args: &WeightedGatherArgs<'t, V>,
) -> Result<GatherBuffers<'t, G::Buffer>> {
    Ok(GatherBuffers {
        rows: g.buffer(OP, "rows", args.rows)?,
        weights: g.buffer(OP, "weights", args.weights)?,
        table: g.buffer(OP, "table", args.table)?,
    })
}
