//! The weighted gather on a GPU: `kernels/weighted_gather.ptx`, `shaders/weighted_gather.wgsl`.

use std::sync::Arc;

use super::params::ValueParams;
use super::{
    check_status, fits_binding, fits_u32, grid, row_sort, status_word, table_dtype, Fill, Gpu,
    Launch,
};
use crate::dtype::{DType, Float};
use crate::error::Result;
use crate::ops::weighted_gather::{WeightedGatherArgs, WeightedGatherDims, WeightedGatherGrads};
use crate::ops::BackwardMode;
use crate::registry::KernelId;
use crate::tensor::Tensor;

const OP: &str = "weighted_gather";
const THREADS: u32 = 128;

/// One gather's buffers and shape, shared with the PEER path that reuses these kernels.
pub(crate) struct Gather<'a, G: Gpu> {
    pub tokens: u32,
    pub slots: u32,
    pub cores: u32,
    pub rows: u32,
    pub width: u32,
    pub table_dtype: DType,
    pub row_buf: &'a G::Buffer,
    pub weights: &'a G::Buffer,
    pub table: &'a G::Buffer,
    pub status: &'a G::Buffer,
}

impl<G: Gpu> Gather<'_, G> {
    fn params(&self) -> Result<ValueParams> {
        Ok(ValueParams {
            tokens: self.tokens,
            slots: self.slots,
            cores: self.cores,
            rows: self.rows,
            width: self.width,
            slice_width: self.width / self.cores,
            chunks: self.width.div_ceil(THREADS),
            entries: self.tokens * self.slots,
            table_dtype: table_dtype::<G>(OP, self.table_dtype)?,
            ..ValueParams::default()
        })
    }

    fn launch(
        &self,
        gpu: &G,
        entry: &'static str,
        mut params: ValueParams,
        workgroups: usize,
        args: &[Option<&G::Buffer>],
    ) -> Result<()> {
        let (gx, gy) = grid::<G>(OP, workgroups)?;
        params.grid_x = gx;
        gpu.launch(&Launch {
            kernel: KernelId::WeightedGather,
            entry,
            table_dtype: self.table_dtype,
            params: bytemuck::bytes_of(&params),
            args,
            grid: (gx, gy),
            threads: THREADS,
        })
    }

    /// `out[t, col] = Σ_k w[t, k, c]·table[rows[t, k], col]` into a new `[tokens, width]` buffer.
    pub(crate) fn forward(&self, gpu: &G) -> Result<G::Buffer> {
        let out = gpu.alloc(self.tokens as usize * self.width as usize * 4, Fill::Output)?;
        let params = self.params()?;
        let workgroups = self.tokens as usize * params.chunks as usize;
        if workgroups > 0 {
            let args = [
                Some(self.row_buf),
                Some(self.weights),
                Some(self.table),
                None,
                None,
                Some(&out),
                Some(self.status),
            ];
            self.launch(gpu, "weighted_gather_forward", params, workgroups, &args)?;
        }
        Ok(out)
    }

    /// `dw[s, c] = <table[rows[s], slice c], g[t, slice c]>` into a new `[entries, cores]` buffer;
    /// with `atomic_into`, also `dtable += w·g` by float atomics in the same pass.
    pub(crate) fn backward_slots(
        &self,
        gpu: &G,
        g: &G::Buffer,
        atomic_into: Option<&G::Buffer>,
    ) -> Result<G::Buffer> {
        let mut params = self.params()?;
        let dw = gpu.alloc(
            params.entries as usize * self.cores as usize * 4,
            Fill::Output,
        )?;
        params.flags = u32::from(atomic_into.is_some());
        if params.entries > 0 {
            let args = [
                Some(self.row_buf),
                Some(self.weights),
                Some(self.table),
                Some(g),
                None,
                Some(&dw),
                Some(self.status),
                atomic_into,
            ];
            self.launch(
                gpu,
                "weighted_gather_backward_slots",
                params,
                params.entries as usize,
                &args,
            )?;
        }
        Ok(dw)
    }

    /// Deterministic `dtable[r] = Σ_{slots with row r, in (token, slot) order} w·g` into a new
    /// zeroed `[rows, width]` buffer, `order` being the slots sorted by row.
    pub(crate) fn backward_rows(
        &self,
        gpu: &G,
        g: &G::Buffer,
        order: Option<&G::Buffer>,
    ) -> Result<G::Buffer> {
        let params = self.params()?;
        let dtable = gpu.alloc(self.rows as usize * self.width as usize * 4, Fill::Zero)?;
        if let Some(order) = order {
            let args = [
                Some(self.row_buf),
                Some(self.weights),
                None,
                Some(g),
                Some(order),
                Some(&dtable),
            ];
            self.launch(
                gpu,
                "weighted_gather_backward_rows",
                params,
                params.entries as usize,
                &args,
            )?;
        }
        Ok(dtable)
    }
}

/// Checks the sizes the kernels hold in 32 bits and the buffers against the binding limit.
pub(crate) fn check_limits<G: Gpu>(
    gpu: &G,
    op: &'static str,
    d: &WeightedGatherDims,
    table_bytes: usize,
) -> Result<(u32, u32, u32, u32, u32)> {
    let b = G::BACKEND;
    let tokens = fits_u32(op, b, "T", d.tokens)?;
    let slots = fits_u32(op, b, "M", d.slots)?;
    fits_u32(op, b, "T*M*Cn", d.tokens * d.slots * d.cores)?;
    fits_u32(op, b, "T*Dv", d.tokens * d.dv)?;
    fits_binding(gpu, op, "the table", d.rows * d.dv * table_bytes)?;
    fits_binding(gpu, op, "the table gradient", d.rows * d.dv * 4)?;
    fits_binding(gpu, op, "the weights", d.tokens * d.slots * d.cores * 4)?;
    Ok((
        tokens,
        slots,
        fits_u32(op, b, "Cn", d.cores)?,
        fits_u32(op, b, "N", d.rows)?,
        fits_u32(op, b, "Dv", d.dv)?,
    ))
}

pub(crate) fn forward<G: Gpu, V: Float>(
    gpu: &Arc<G>,
    args: &WeightedGatherArgs<'_, V>,
    d: &WeightedGatherDims,
) -> Result<Tensor<f32>> {
    table_dtype::<G>(OP, V::DTYPE)?;
    let (tokens, slots, cores, rows, width) =
        check_limits(gpu.as_ref(), OP, d, V::DTYPE.size_bytes())?;
    let status = status_word(gpu.as_ref())?;
    let row_buf = G::buffer(OP, "rows", args.rows)?;
    let gather = Gather::<G> {
        tokens,
        slots,
        cores,
        rows,
        width,
        table_dtype: V::DTYPE,
        row_buf,
        weights: G::buffer(OP, "weights", args.weights)?,
        table: G::buffer(OP, "table", args.table)?,
        status: &status,
    };
    let out = gather.forward(gpu.as_ref())?;
    check_status(gpu.as_ref(), &status, OP, "rows", row_buf, u64::from(rows))?;
    gpu.wrap(&[d.tokens, d.dv], out)
}

pub(crate) fn backward<G: Gpu, V: Float>(
    gpu: &Arc<G>,
    args: &WeightedGatherArgs<'_, V>,
    dout: &Tensor<f32>,
    mode: BackwardMode,
    d: &WeightedGatherDims,
) -> Result<WeightedGatherGrads> {
    table_dtype::<G>(OP, V::DTYPE)?;
    let (tokens, slots, cores, rows, width) =
        check_limits(gpu.as_ref(), OP, d, V::DTYPE.size_bytes())?;
    let status = status_word(gpu.as_ref())?;
    let row_buf = G::buffer(OP, "rows", args.rows)?;
    let g = G::buffer(OP, "dout", dout)?;
    let gather = Gather::<G> {
        tokens,
        slots,
        cores,
        rows,
        width,
        table_dtype: V::DTYPE,
        row_buf,
        weights: G::buffer(OP, "weights", args.weights)?,
        table: G::buffer(OP, "table", args.table)?,
        status: &status,
    };
    let entries = tokens * slots;
    // Atomic is a request: a backend without float atomics (wgpu) runs the deterministic path.
    let (dweights, dtable) = if mode == BackwardMode::Atomic && gpu.has_float_atomics() {
        let dtable = gpu.alloc(d.rows * d.dv * 4, Fill::Zero)?;
        let dw = gather.backward_slots(gpu.as_ref(), g, Some(&dtable))?;
        (dw, dtable)
    } else {
        let dw = gather.backward_slots(gpu.as_ref(), g, None)?;
        let order = if entries > 0 {
            Some(row_sort::sort(gpu.as_ref(), OP, row_buf, rows, entries)?)
        } else {
            None
        };
        let dtable = gather.backward_rows(gpu.as_ref(), g, order.as_ref())?;
        (dw, dtable)
    };
    check_status(gpu.as_ref(), &status, OP, "rows", row_buf, u64::from(rows))?;
    Ok(WeightedGatherGrads {
        dweights: gpu.wrap(&[d.tokens, d.slots, d.cores], dweights)?,
        dtable: gpu.wrap(&[d.rows, d.dv], dtable)?,
    })
}
