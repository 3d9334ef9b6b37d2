//! Reference index map.

use super::{check_indices, check_len};
use crate::dims::index_map::IndexMapDims;
use crate::error::Result;

const OP: &str = "index_map";

/// `ρ = (shuffle[ν] mod N_l + offset) mod N_tot` for each `ν` in `idx`.
///
/// # Errors
/// Bad dims, a wrong slice length, a `ν` past the shuffle table.
pub fn forward(d: &IndexMapDims, idx: &[u32], shuffle: Option<&[u32]>) -> Result<Vec<u32>> {
    d.check()?;
    check_len(OP, "idx", idx, d.len)?;
    match shuffle {
        None => crate::alloc::collect(OP, idx.iter().map(|&nu| d.map.map(nu))),
        Some(table) => {
            check_len(OP, "shuffle", table, d.shuffle_len.unwrap_or(0))?;
            check_indices(OP, "idx", idx, table.len() as u64)?;
            crate::alloc::collect(OP, idx.iter().map(|&nu| d.map.map(table[nu as usize])))
        }
    }
}
