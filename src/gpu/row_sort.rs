//! The row sort on a GPU: `kernels/row_sort.ptx`, `shaders/row_sort.wgsl`.

use super::params::SortParams;
use super::{grid, Fill, Gpu, Launch};
use crate::dims::row_sort::RowSortDims;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const THREADS: u32 = 256;

/// The flat slot indices `0..entries` sorted stably by `min(rows[slot], table_rows)`: the CSR order of
/// the deterministic backward. `entries` must be at least 1.
pub(crate) fn sort_rows<G: Gpu>(
    gpu: &G,
    op: &'static str,
    rows: &G::Buffer,
    table_rows: u32,
    entries: u32,
) -> Result<G::Buffer> {
    let tiles = entries.div_ceil(THREADS);
    let bytes = entries as usize * 4;
    let keys = [
        gpu.alloc(bytes, Fill::Output)?,
        gpu.alloc(bytes, Fill::Output)?,
    ];
    let vals = [
        gpu.alloc(bytes, Fill::Output)?,
        gpu.alloc(bytes, Fill::Output)?,
    ];
    let hist = gpu.alloc(tiles as usize * 256 * 4, Fill::Output)?;
    let (gx, gy) = grid::<G>(op, tiles as usize)?;
    let mut params = SortParams {
        entries,
        table_rows,
        tiles,
        grid_x: gx,
        ..SortParams::default()
    };
    let run = |entry: &'static str,
               params: &SortParams,
               args: &[Option<&G::Buffer>],
               grid: (u32, u32)| {
        gpu.launch(&Launch {
            kernel: KernelId::RowSort,
            entry,
            table_dtype: DType::U32,
            params: bytemuck::bytes_of(params),
            args,
            grid,
            threads: THREADS,
            overrides: &[],
        })
    };
    run(
        "row_sort_init",
        &params,
        &[Some(rows), None, None, Some(&keys[0]), Some(&vals[0]), None],
        (gx, gy),
    )?;
    // Keys go up to table_rows (the sentinel), so that many bits need sorting, 8 per pass.
    let bits = 32 - table_rows.leading_zeros();
    let passes = bits.div_ceil(8).max(1);
    for pass in 0..passes {
        params.shift = 8 * pass;
        let (src, dst) = ((pass % 2) as usize, ((pass + 1) % 2) as usize);
        let (k_in, k_out) = (&keys[src], &keys[dst]);
        let (v_in, v_out) = (&vals[src], &vals[dst]);
        run(
            "row_sort_histogram",
            &params,
            &[None, Some(k_in), None, None, None, Some(&hist)],
            (gx, gy),
        )?;
        run(
            "row_sort_scan",
            &params,
            &[None, None, None, None, None, Some(&hist)],
            (1, 1),
        )?;
        run(
            "row_sort_scatter",
            &params,
            &[
                None,
                Some(k_in),
                Some(v_in),
                Some(k_out),
                Some(v_out),
                Some(&hist),
            ],
            (gx, gy),
        )?;
    }
    let last = (passes % 2) as usize;
    let [v0, v1] = vals;
    drop(keys);
    Ok(if last == 0 { v0 } else { v1 })
}

/// The row sort on device buffers: a new `order[len]` (u32).
///
/// # Errors
/// More than `2^32 − 1` slots, and the backend's errors.
pub fn sort<G: Gpu>(gpu: &G, d: &RowSortDims, rows: &G::Buffer) -> Result<G::Buffer> {
    const OP: &str = "row_sort";
    let entries = super::fits_u32(OP, G::BACKEND, "slots", d.len)?;
    // Keys are clamped to N, so N itself must fit a u32 key.
    let table_rows = d.table_rows.min(u32::MAX as usize) as u32;
    if entries == 0 {
        return gpu.alloc(0, Fill::Zero);
    }
    sort_rows(gpu, OP, rows, table_rows, entries)
}
