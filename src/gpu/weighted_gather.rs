//! The weighted gather on a GPU: `kernels/weighted_gather.ptx`, `shaders/weighted_gather.wgsl`.

use super::params::ValueParams;
use super::{
    check_status, fits_binding, fits_u32, grid, row_sort, status_word, table_dtype, Fill, Gpu,
    Launch,
};
use crate::dims::weighted_gather::WeightedGatherDims;
use crate::dims::BackwardMode;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "weighted_gather";
const THREADS: u32 = 128;
/// Blocks the forward aims for: enough to give each of an H100's or H200's 132 SMs two, so a
/// small batch splits its slots into groups (partial sums, combined in a fixed order).
const TARGET_BLOCKS: usize = 264;
/// Slots a forward block takes at least (one unrolled step of the kernel's slot loop).
const MIN_GROUP_SLOTS: usize = 4;

/// The device buffers of one weighted gather: `rows[T, M]` (u32), `weights[T, M, Cn]` (f32),
/// `table[N, Dv]` (of the table dtype).
pub struct GatherBuffers<'a, B> {
    /// Value rows.
    pub rows: &'a B,
    /// Per-slot, per-core weights.
    pub weights: &'a B,
    /// The table.
    pub table: &'a B,
}

/// One gather's buffers and 32-bit sizes, shared with the PEER path that reuses these kernels.
pub(crate) struct Gather<'a, G: Gpu> {
    pub tokens: u32,
    pub slots: u32,
    pub cores: u32,
    pub table_rows: u32,
    pub width: u32,
    pub table_dtype: DType,
    pub rows: &'a G::Buffer,
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
            table_rows: self.table_rows,
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
            overrides: &[],
        })
    }

    /// Table columns per lane of the forward: one 16-byte load's worth when every load is
    /// aligned (rows and core slices of `slice_width` whole multiples of it, the table's base
    /// too), else 1.
    fn vector_width(&self, gpu: &G, slice_width: u32) -> u32 {
        let vec = 16 / self.table_dtype.size_bytes() as u32;
        let fits = self.width.is_multiple_of(vec) && slice_width.is_multiple_of(vec);
        if fits && gpu.aligned(self.table, 16) {
            vec
        } else {
            1
        }
    }

    /// `out[t, col] = Σ_k w[t, k, c]·table[rows[t, k], col]` into a new `[tokens, width]` buffer.
    /// Small batches split each token's slots into groups that run on separate blocks, then
    /// add the groups' partial sums in group order (so the result does not depend on timing).
    pub(crate) fn forward(&self, gpu: &G) -> Result<G::Buffer> {
        let (tokens, width) = (self.tokens as usize, self.width as usize);
        let out = gpu.alloc(tokens * width * 4, Fill::Output)?;
        let mut params = self.params()?;
        params.vec = self.vector_width(gpu, params.slice_width);
        params.chunks = self.width.div_ceil(THREADS * params.vec);
        let blocks = tokens * params.chunks as usize;
        if blocks == 0 {
            return Ok(out);
        }
        let most = (self.slots as usize).div_ceil(MIN_GROUP_SLOTS).max(1);
        let groups = TARGET_BLOCKS.div_ceil(blocks).clamp(1, most);
        fits_u32(OP, G::BACKEND, "T*groups*Dv", tokens * groups * width)?;
        // The slot loop reads up to 3 slots past a group's end (predicated off): in u32.
        fits_u32(OP, G::BACKEND, "T*M+3", tokens * self.slots as usize + 3)?;
        params.groups = groups as u32;
        let partial = if groups > 1 {
            Some(gpu.alloc(tokens * groups * width * 4, Fill::Output)?)
        } else {
            None
        };
        let args = [
            Some(self.rows),
            Some(self.weights),
            Some(self.table),
            None,
            None,
            Some(partial.as_ref().unwrap_or(&out)),
            Some(self.status),
        ];
        self.launch(
            gpu,
            "weighted_gather_forward",
            params,
            blocks * groups,
            &args,
        )?;
        if let Some(partial) = &partial {
            let args = [None, None, None, Some(partial), None, Some(&out)];
            let elements = (tokens * width).div_ceil(THREADS as usize);
            self.launch(gpu, "weighted_gather_combine", params, elements, &args)?;
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
                Some(self.rows),
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
        let dtable = gpu.alloc(
            self.table_rows as usize * self.width as usize * 4,
            Fill::Zero,
        )?;
        if let Some(order) = order {
            let args = [
                Some(self.rows),
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

/// Checks the sizes the kernels hold in 32 bits and the buffers against the binding limit;
/// returns `(T, M, Cn, N, Dv)`.
fn sizes<G: Gpu>(
    gpu: &G,
    d: &WeightedGatherDims,
    table_bytes: usize,
) -> Result<(u32, u32, u32, u32, u32)> {
    let b = G::BACKEND;
    fits_u32(OP, b, "T*M*Cn", d.tokens * d.slots * d.cores)?;
    fits_u32(OP, b, "T*Dv", d.tokens * d.dv)?;
    fits_binding(gpu, OP, "the table", d.table_rows * d.dv * table_bytes)?;
    fits_binding(gpu, OP, "the table gradient", d.table_rows * d.dv * 4)?;
    fits_binding(gpu, OP, "the weights", d.tokens * d.slots * d.cores * 4)?;
    Ok((
        fits_u32(OP, b, "T", d.tokens)?,
        fits_u32(OP, b, "M", d.slots)?,
        fits_u32(OP, b, "Cn", d.cores)?,
        fits_u32(OP, b, "N", d.table_rows)?,
        fits_u32(OP, b, "Dv", d.dv)?,
    ))
}

fn gather<'a, G: Gpu>(
    gpu: &G,
    d: &WeightedGatherDims,
    dtype: DType,
    b: &GatherBuffers<'a, G::Buffer>,
    status: &'a G::Buffer,
) -> Result<Gather<'a, G>> {
    table_dtype::<G>(OP, dtype)?;
    let (tokens, slots, cores, table_rows, width) = sizes(gpu, d, dtype.size_bytes())?;
    Ok(Gather {
        tokens,
        slots,
        cores,
        table_rows,
        width,
        table_dtype: dtype,
        rows: b.rows,
        weights: b.weights,
        table: b.table,
        status,
    })
}

/// The forward on device buffers: a new `out[T, Dv]` (f32).
///
/// # Errors
/// Sizes past the kernels' limits, a table dtype they cannot read, a row `>= N`, and the
/// backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &WeightedGatherDims,
    table_dtype: DType,
    b: &GatherBuffers<'_, G::Buffer>,
) -> Result<G::Buffer> {
    let status = status_word(gpu)?;
    let out = gather(gpu, d, table_dtype, b, &status)?.forward(gpu)?;
    check_status(
        gpu,
        status,
        OP,
        "rows",
        b.rows,
        d.tokens * d.slots,
        d.table_rows as u64,
    )?;
    Ok(out)
}

/// The backward on device buffers: new `(dweights[T, M, Cn], dtable[N, Dv])` (f32). `Atomic`
/// on a backend without float atomics runs the deterministic path.
///
/// # Errors
/// As [`forward`].
pub fn backward<G: Gpu>(
    gpu: &G,
    d: &WeightedGatherDims,
    table_dtype: DType,
    mode: BackwardMode,
    b: &GatherBuffers<'_, G::Buffer>,
    dout: &G::Buffer,
) -> Result<(G::Buffer, G::Buffer)> {
    let status = status_word(gpu)?;
    let gather = gather(gpu, d, table_dtype, b, &status)?;
    let entries = gather.tokens * gather.slots;
    let grads = if mode == BackwardMode::Atomic && gpu.has_float_atomics() {
        let dtable = gpu.alloc(d.table_rows * d.dv * 4, Fill::Zero)?;
        let dw = gather.backward_slots(gpu, dout, Some(&dtable))?;
        (dw, dtable)
    } else {
        let dw = gather.backward_slots(gpu, dout, None)?;
        let order = if entries > 0 {
            Some(row_sort::sort_rows(
                gpu,
                OP,
                b.rows,
                gather.table_rows,
                entries,
            )?)
        } else {
            None
        };
        let dtable = gather.backward_rows(gpu, dout, order.as_ref())?;
        (dw, dtable)
    };
    check_status(
        gpu,
        status,
        OP,
        "rows",
        b.rows,
        d.tokens * d.slots,
        d.table_rows as u64,
    )?;
    Ok(grads)
}
