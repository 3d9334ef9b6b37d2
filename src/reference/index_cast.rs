//! Reference index casts: `int64` indices to the `u32` the kernels read, each value checked,
//! and `u32` results back to `int64` (spec §I.6.1). The C ABI's host path borrows `int64`
//! index tensors through [`narrow`]; its GPU path runs `kernels/index_cast.ptx`, which must
//! agree with it.

use crate::error::{Error, Result};

/// The values of `wide` (argument `arg` of `op`) as u32, each checked to lie in `[0, bound)`;
/// `bound` is capped at `2^32`, what a u32 holds.
///
/// # Errors
/// [`Error::IndexOutOfRange`] naming the first value that is negative or at or past `bound`,
/// as the caller wrote it; [`Error::OutOfMemory`].
pub fn narrow(op: &'static str, arg: &'static str, wide: &[i64], bound: u64) -> Result<Vec<u32>> {
    let bound = bound.min(1 << 32);
    let fits = |x: i64| x >= 0 && (x as u64) < bound;
    if let Some(position) = wide.iter().position(|&x| !fits(x)) {
        return Err(Error::IndexOutOfRange {
            op,
            arg,
            position,
            index: wide[position],
            bound,
        });
    }
    // Every value is in range, so below 2^32: the cast is exact.
    crate::alloc::collect(op, wide.iter().map(|&x| x as u32))
}

/// `narrow` as `int64` (exact).
///
/// # Errors
/// [`Error::OutOfMemory`].
pub fn widen(op: &'static str, narrow: &[u32]) -> Result<Vec<i64>> {
    crate::alloc::collect(op, narrow.iter().map(|&x| i64::from(x)))
}
