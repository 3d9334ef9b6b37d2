//! The index map on a GPU: `kernels/index_map.ptx`, `shaders/index_map.wgsl`.

use super::params::MapParams;
use super::{check_status, fits_u32, grid, status_word, Fill, Gpu, Launch};
use crate::dims::index_map::IndexMapDims;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "index_map";

/// `2^32` as the kernels take it (0); smaller values as they are.
fn wide(v: u64) -> u32 {
    if v == 1 << 32 {
        0
    } else {
        v as u32
    }
}

/// The map on device buffers: a new `rows` buffer of `d.len` u32.
///
/// # Errors
/// More than `2^32 − 1` indices, an index past the shuffle table, and the backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &IndexMapDims,
    idx: &G::Buffer,
    shuffle: Option<&G::Buffer>,
) -> Result<G::Buffer> {
    let len = fits_u32(OP, G::BACKEND, "indices", d.len)?;
    let out = gpu.alloc(d.len * 4, Fill::Output)?;
    let status = status_word(gpu)?;
    if len > 0 {
        let workgroups = (len as usize).div_ceil(256);
        let (gx, gy) = grid::<G>(OP, workgroups)?;
        let params = MapParams {
            len,
            shuffle_len: d.shuffle_len.map_or(0, |s| s as u32),
            rows_per_layer: wide(d.map.rows_per_layer),
            offset: d.map.offset as u32,
            total_rows: wide(d.map.total_rows),
            grid_x: gx,
            ..MapParams::default()
        };
        // Without a table, bind idx in its place: the kernel reads it only when shuffle_len != 0.
        let table = shuffle.unwrap_or(idx);
        gpu.launch(&Launch {
            kernel: KernelId::IndexMap,
            entry: "index_map_forward",
            table_dtype: DType::U32,
            params: bytemuck::bytes_of(&params),
            args: &[Some(idx), Some(table), Some(&out), Some(&status)],
            grid: (gx, gy),
            threads: 256,
            overrides: &[],
        })?;
    }
    check_status(
        gpu,
        status,
        OP,
        "idx",
        idx,
        d.len,
        d.shuffle_len.unwrap_or(0) as u64,
    )?;
    Ok(out)
}
