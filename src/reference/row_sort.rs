//! Reference row sort: a stable sort of slot indices by clamped row.

use super::check_len;
use crate::dims::row_sort::RowSortDims;
use crate::error::Result;

const OP: &str = "row_sort";

/// The permutation of `0..len` sorting the slots by `min(rows[slot], N)`, stably.
///
/// # Errors
/// Bad dims or a wrong slice length.
pub fn order(d: &RowSortDims, rows: &[u32]) -> Result<Vec<u32>> {
    d.check()?;
    check_len(OP, "rows", rows, d.len)?;
    let sentinel = d.table_rows as u64;
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    // sort_by_key is stable: equal keys keep slot order.
    order.sort_by_key(|&s| u64::from(rows[s as usize]).min(sentinel));
    Ok(order)
}
