//! Weighted gather with core split ("EmbeddingBag-sum with per-slot weights"), Part II §2.5.
//!
//! `out[t, slice c] = Σ_k w[t, k, c] · table[rows[t, k], slice c]`, where slice `c` is the
//! columns `[c·Dv/Cn, (c+1)·Dv/Cn)`. With `Cn = 1` it is a weighted EmbeddingBag sum.

use crate::cost::{expected_distinct, Cost, F32_BYTES, U32_BYTES};
use crate::device::DeviceInner;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::ops::{
    expect_shape, host, mul, nonzero, rows_fit_u32, to_f32, BackwardMode, DeviceCheck,
};
use crate::reference;
use crate::tensor::Tensor;

const OP: &str = "weighted_gather";

/// The checked sizes of one weighted-gather call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightedGatherDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Slots per token `M = H·m`.
    pub slots: usize,
    /// Cores `Cn` (column slices with their own weight).
    pub cores: usize,
    /// Table rows `N` (`<= 2^32`).
    pub rows: usize,
    /// Row width `Dv` (a multiple of `Cn`).
    pub dv: usize,
}

impl WeightedGatherDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`Error::ZeroSized`], [`Error::InvalidArgument`] (`Dv % Cn != 0`),
    /// [`Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "rows", "M", self.slots)?;
        nonzero(OP, "weights", "Cn", self.cores)?;
        nonzero(OP, "table", "N", self.rows)?;
        rows_fit_u32(OP, "table", self.rows)?;
        nonzero(OP, "table", "Dv", self.dv)?;
        check_core_split(OP, self.dv, self.cores)?;
        let tm = mul(OP, "T*M", self.tokens, self.slots)?;
        mul(OP, "T*M*Cn", tm, self.cores)?;
        mul(OP, "T*Dv", self.tokens, self.dv)?;
        mul(OP, "N*Dv", self.rows, self.dv)?;
        Ok(())
    }

    /// Expected distinct rows touched when every slot picks a uniform random row.
    pub fn expected_distinct_rows(&self) -> f64 {
        expected_distinct(self.rows as f64, self.slots as f64, self.tokens as f64)
    }

    /// Forward bytes and FLOPs at least: indices and weights read once, each of
    /// `distinct_rows` table rows read once, the output written once; `2·Dv` FLOPs per slot.
    pub fn cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: tm * (U32_BYTES + self.cores * F32_BYTES) as f64
                + distinct_rows * (self.dv * table_bytes) as f64,
            bytes_written: (self.tokens * self.dv * F32_BYTES) as f64,
            flops: tm * 2.0 * self.dv as f64,
        }
    }

    /// Backward bytes and FLOPs at least: indices, weights, `dout` and the touched rows read
    /// once; `dw` written once and each touched gradient row written once (f32); `4·Dv` FLOPs
    /// per slot (the `dw` dot product and the row update).
    pub fn backward_cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: tm * (U32_BYTES + self.cores * F32_BYTES) as f64
                + (self.tokens * self.dv * F32_BYTES) as f64
                + distinct_rows * (self.dv * table_bytes) as f64,
            bytes_written: tm * (self.cores * F32_BYTES) as f64
                + distinct_rows * (self.dv * F32_BYTES) as f64,
            flops: tm * 4.0 * self.dv as f64,
        }
    }
}

/// Errors unless `Dv` splits into `Cn` equal slices.
pub(crate) fn check_core_split(op: &'static str, dv: usize, cores: usize) -> Result<()> {
    if !dv.is_multiple_of(cores) {
        return Err(Error::InvalidArgument {
            op,
            arg: "table",
            reason: format!("Dv = {dv} is not a multiple of Cn = {cores}"),
        });
    }
    Ok(())
}

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
    /// [`Error::ShapeMismatch`], [`Error::DeviceMismatch`] and those of
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

impl WeightedGatherDims {
    /// The sizes named by the shapes of `rows[T, M]`, `weights[T, M, Cn]` and `table[N, Dv]`,
    /// checked; what [`WeightedGatherArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] and those of [`WeightedGatherDims::check`].
    pub fn from_shapes(rs: &[usize], ws: &[usize], ts: &[usize]) -> Result<WeightedGatherDims> {
        expect_shape(OP, "rows", rs, &[("T", None), ("M", None)])?;
        expect_shape(
            OP,
            "weights",
            ws,
            &[("T", Some(rs[0])), ("M", Some(rs[1])), ("Cn", None)],
        )?;
        expect_shape(OP, "table", ts, &[("N", None), ("Dv", None)])?;
        let dims = WeightedGatherDims {
            tokens: rs[0],
            slots: rs[1],
            cores: ws[2],
            rows: ts[0],
            dv: ts[1],
        };
        dims.check()?;
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
/// Those of [`WeightedGatherArgs::validate`], and [`Error::IndexOutOfRange`] for a row `>= N`.
pub fn weighted_gather<V: Float>(args: &WeightedGatherArgs<'_, V>) -> Result<Tensor<f32>> {
    let dims = args.validate()?;
    let device = args.rows.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let out = reference::weighted_gather::forward(
                &dims,
                host(OP, "rows", args.rows)?,
                host(OP, "weights", args.weights)?,
                host(OP, "table", args.table)?,
            )?;
            Tensor::from_vec(&device, &[dims.tokens, dims.dv], to_f32(out))
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::weighted_gather::forward_tensors(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::weighted_gather::forward_tensors(d, args, &dims),
    }
}

/// Backward of [`weighted_gather`] given `dout[T, Dv]`.
///
/// `mode` picks how table gradients are summed on a GPU; the CPU reference is deterministic in
/// either mode.
///
/// # Errors
/// Those of [`WeightedGatherArgs::validate`], [`Error::ShapeMismatch`] for `dout`,
/// [`Error::IndexOutOfRange`] for a row `>= N`.
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
    // The CPU reference sums in one fixed order whatever the mode.
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let _ = mode;
    match &device.inner {
        DeviceInner::Cpu => {
            let (dw, dtable) = reference::weighted_gather::backward(
                &dims,
                host(OP, "rows", args.rows)?,
                host(OP, "weights", args.weights)?,
                host(OP, "table", args.table)?,
                host(OP, "dout", dout)?,
            )?;
            Ok(WeightedGatherGrads {
                dweights: Tensor::from_vec(&device, args.weights.shape(), to_f32(dw))?,
                dtable: Tensor::from_vec(&device, args.table.shape(), to_f32(dtable))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => {
            crate::gpu::weighted_gather::backward_tensors(d, args, dout, mode, &dims)
        }
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => {
            crate::gpu::weighted_gather::backward_tensors(d, args, dout, mode, &dims)
        }
    }
}
