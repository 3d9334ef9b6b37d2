//! The index map on a GPU: `kernels/index_map.ptx`, `shaders/index_map.wgsl`.

use super::params::MapParams;
use super::{fits_u32, grid, recorded, report, Decode, Fill, Gpu, IndexSource, Launch};
use crate::dims::index_map::IndexMapDims;
use crate::dtype::DType;
use crate::error::{Error, Result};
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

/// Which index inputs arrived as signed `int32` (the C ABI): their negative values reach the
/// kernels as `>= 2^31`, so the kernels bound them by `2^31` to report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignedIndices {
    /// `ν` is `int32`.
    pub idx: bool,
    /// The shuffle table is `int32`.
    pub shuffle: bool,
}

const SIGNED_BOUND: u64 = 1 << 31;

/// The map on device buffers: a new `rows` buffer of `d.len` u32.
///
/// # Errors
/// More than `2^32 − 1` indices, an index past the shuffle table or a negative one (`signed`),
/// and the backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &IndexMapDims,
    idx: &G::Buffer,
    shuffle: Option<&G::Buffer>,
    signed: SignedIndices,
) -> Result<G::Buffer> {
    let len = fits_u32(OP, G::BACKEND, "indices", d.len)?;
    let out = gpu.alloc(d.len * 4, Fill::Output)?;
    let status = gpu.alloc(8, Fill::Zero)?;
    // ν's exclusive bound: the shuffle's length (which may be 2^32: no bound then), and 2^31
    // for int32 input. u64::MAX stands for "none"; the kernels take 0 for it.
    let signed_bound = |on: bool| if on { SIGNED_BOUND } else { u64::MAX };
    let idx_bound = d
        .shuffle_len
        .map_or(u64::MAX, |s| s as u64)
        .min(signed_bound(signed.idx));
    let entry_bound = signed_bound(signed.shuffle && d.shuffle_len.is_some());
    let kernel_bound = |b: u64| u32::try_from(b).unwrap_or(0);
    if len > 0 {
        let workgroups = (len as usize).div_ceil(256);
        let (gx, gy) = grid::<G>(OP, workgroups)?;
        let params = MapParams {
            len,
            has_shuffle: u32::from(d.shuffle_len.is_some()),
            rows_per_layer: wide(d.map.rows_per_layer),
            offset: d.map.offset as u32,
            total_rows: wide(d.map.total_rows),
            grid_x: gx,
            idx_bound: kernel_bound(idx_bound),
            entry_bound: kernel_bound(entry_bound),
        };
        // Without a table, bind idx in its place: the kernel reads it only when has_shuffle != 0.
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
    let shown_bound = if idx_bound == u64::MAX {
        1 << 32
    } else {
        idx_bound
    };
    let decode: Decode = Box::new(move |w, index| {
        if let Some(position) = recorded(w[0]) {
            let index = index.unwrap_or(i64::from(u32::MAX));
            return Err(Error::IndexOutOfRange {
                op: OP,
                arg: "idx",
                position,
                // int32 input: the value the caller wrote.
                index: if signed.idx {
                    i64::from(index as u32 as i32)
                } else {
                    index
                },
                bound: shown_bound,
            });
        }
        if let Some(position) = recorded(w[1]) {
            return Err(Error::InvalidArgument {
                op: OP,
                arg: "shuffle",
                reason: format!(
                    "the entry that idx[{position}] selects is negative (int32 entries must be \
                     non-negative)"
                ),
            });
        }
        Ok(())
    });
    report(gpu, status, 2, Some(IndexSource::u32(idx, d.len)), decode)?;
    Ok(out)
}
