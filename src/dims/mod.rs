//! Op sizes, argument enums and shape checks: the layer every other part of the crate builds
//! on. Each op's `<Op>Dims` turns tensor shapes into checked sizes (`from_shapes`), says what
//! the op moves at least (`cost`), and is what the CPU reference (`reference/`), the GPU launch
//! sequences (`gpu/`), the public ops (`ops/`) and the C ABI all take.
//!
//! This module imports nothing from `ops/`, `gpu/`, `reference/` or the backends (the
//! architecture test in `tests/architecture.rs` keeps the crate free of import cycles).

pub mod additive_topk;
pub mod index_map;
pub mod matmul;
pub mod moe_ffn;
pub mod peer_ffn;
pub mod product_key_layer;
pub mod rmsnorm;
pub mod row_sort;
pub mod score_fn;
pub mod tucker_topk;
pub mod ultramem_v2_layer;
pub mod weighted_gather;

use crate::dtype::Float;
use crate::error::{Error, Result};

/// How a backward pass accumulates table gradients (Part I §I.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackwardMode {
    /// Float atomics: fastest, summation order not fixed (CUDA only).
    Atomic,
    /// Rows sorted into CSR by a stable sort on (token, slot): bitwise identical across runs.
    /// The CPU reference is always deterministic, whichever mode is asked for.
    #[default]
    Deterministic,
}

/// The largest value-row count a `u32` index can address.
pub(crate) const MAX_ROWS: u64 = 1 << 32;

/// One expected dimension: its name and, when another argument fixes it, its value.
pub(crate) type Want = (&'static str, Option<usize>);

/// Checks `got` against the expected rank and the fixed dimensions in `want`.
pub(crate) fn expect_shape(
    op: &'static str,
    arg: &'static str,
    got: &[usize],
    want: &[Want],
) -> Result<()> {
    let matches = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(&g, &(_, w))| w.is_none_or(|w| w == g));
    if matches {
        return Ok(());
    }
    let parts: Vec<String> = want
        .iter()
        .map(|&(name, w)| match w {
            Some(v) => format!("{name}={v}"),
            None => name.to_string(),
        })
        .collect();
    Err(Error::ShapeMismatch {
        op,
        arg,
        expected: format!("[{}]", parts.join(", ")),
        got: got.to_vec(),
    })
}

/// Errors unless `value >= 1`.
pub(crate) fn nonzero(
    op: &'static str,
    arg: &'static str,
    dim: &'static str,
    value: usize,
) -> Result<()> {
    if value == 0 {
        Err(Error::ZeroSized { op, arg, dim })
    } else {
        Ok(())
    }
}

/// Errors unless `requested <= available`.
pub(crate) fn at_most(
    op: &'static str,
    what: &'static str,
    requested: usize,
    available: usize,
) -> Result<()> {
    if requested > available {
        Err(Error::TooManySelected {
            op,
            what,
            requested,
            available,
        })
    } else {
        Ok(())
    }
}

/// `a * b`, or [`Error::SizeOverflow`] naming `what`.
pub(crate) fn mul(op: &'static str, what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::SizeOverflow {
        op,
        what: format!("{what} = {a} * {b} overflows usize"),
    })
}

/// Errors unless the flat index `n * n - 1` of an `n x n` product-key grid fits in `u32`.
pub(crate) fn grid_fits_u32(op: &'static str, n: usize) -> Result<()> {
    match n.checked_mul(n) {
        Some(nn) if nn as u64 <= MAX_ROWS => Ok(()),
        _ => Err(Error::SizeOverflow {
            op,
            what: format!("n^2 = {n}^2 virtual slots do not fit u32 indices (n must be <= 65536)"),
        }),
    }
}

/// Errors unless a table of `table_rows` rows can be addressed by `u32` indices.
pub(crate) fn rows_fit_u32(op: &'static str, arg: &'static str, table_rows: usize) -> Result<()> {
    if table_rows as u64 > MAX_ROWS {
        Err(Error::SizeOverflow {
            op,
            what: format!("`{arg}` has {table_rows} rows; u32 indices address at most 2^32"),
        })
    } else {
        Ok(())
    }
}

/// Errors unless `Dv` splits into `Cn` equal slices (the weighted gather and PEER).
pub(crate) fn check_core_split(
    op: &'static str,
    arg: &'static str,
    dv: usize,
    cores: usize,
) -> Result<()> {
    if !dv.is_multiple_of(cores) {
        return Err(Error::InvalidArgument {
            op,
            arg,
            reason: format!("Dv = {dv} is not a multiple of Cn = {cores}"),
        });
    }
    Ok(())
}

/// Errors unless a slice has exactly `expected` elements.
pub(crate) fn check_len<T>(
    op: &'static str,
    arg: &'static str,
    s: &[T],
    expected: usize,
) -> Result<()> {
    if s.len() == expected {
        Ok(())
    } else {
        Err(Error::BufferSize {
            op,
            arg,
            expected,
            got: s.len(),
        })
    }
}

/// Errors at the first NaN or infinity.
pub(crate) fn check_finite<T: Float>(op: &'static str, arg: &'static str, s: &[T]) -> Result<()> {
    match s.iter().position(|x| !x.to_f64().is_finite()) {
        None => Ok(()),
        Some(position) => Err(Error::NonFinite { op, arg, position }),
    }
}

/// Errors at the first index `>= bound`.
pub(crate) fn check_indices(
    op: &'static str,
    arg: &'static str,
    s: &[u32],
    bound: u64,
) -> Result<()> {
    match s.iter().position(|&i| u64::from(i) >= bound) {
        None => Ok(()),
        Some(position) => Err(Error::IndexOutOfRange {
            op,
            arg,
            position,
            index: i64::from(s[position]),
            bound,
        }),
    }
}
