//! Fallible host allocation. The host paths (the CPU reference that widens tables to f64, the
//! C ABI's host path, the ops' conversions) allocate per-element memory through these, so a
//! request the process cannot have becomes [`Error::OutOfMemory`] instead of Rust's
//! allocation-failure abort, which would kill a caller's Python process across the FFI.

use crate::error::{Error, Result};

/// An empty vector with room for `len` elements.
///
/// # Errors
/// [`Error::OutOfMemory`] when the allocator refuses (or the byte count overflows).
pub(crate) fn with_capacity<T>(op: &'static str, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        op,
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    })?;
    Ok(v)
}

/// `len` copies of `value`.
///
/// # Errors
/// As [`with_capacity`].
pub(crate) fn filled<T: Clone>(op: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = with_capacity(op, len)?;
    v.resize(len, value);
    Ok(v)
}

/// `len` zeros of f64, the reference's accumulators.
///
/// # Errors
/// As [`with_capacity`].
pub(crate) fn zeros(op: &'static str, len: usize) -> Result<Vec<f64>> {
    filled(op, len, 0.0)
}

/// Collects an iterator of known length into memory reserved first.
///
/// # Errors
/// As [`with_capacity`].
pub(crate) fn collect<T>(
    op: &'static str,
    iter: impl ExactSizeIterator<Item = T>,
) -> Result<Vec<T>> {
    let mut v = with_capacity(op, iter.len())?;
    v.extend(iter);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_the_allocator_refuses_is_a_typed_error() {
        // 2^61 f64 overflow the address space: the allocator refuses without touching memory.
        let e = zeros("op", 1 << 61).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { op: "op", .. }), "{e}");
        let e = with_capacity::<f64>("op", usize::MAX).unwrap_err();
        assert!(
            matches!(
                e,
                Error::OutOfMemory {
                    bytes: usize::MAX,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(zeros("op", 3).unwrap(), [0.0; 3]);
        assert_eq!(collect("op", [1u8, 2].into_iter()).unwrap(), [1, 2]);
    }
}
