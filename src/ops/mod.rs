//! The public ops: one file per op, each with an argument struct whose `validate()` turns tensor
//! shapes into checked dimensions, and functions that run the op on the arguments' device.
//!
//! The same call runs on every backend; today only the CPU reference is compiled in, and the
//! GPU backends slot into the `match` on the device in each op.

pub mod additive_topk;
pub mod index_map;
pub mod matmul;
pub mod moe_ffn;
pub mod peer_ffn;
pub mod rmsnorm;
pub mod row_sort;
pub mod score_fn;
pub mod tucker_topk;
pub mod weighted_gather;

use crate::device::Device;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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

/// Errors unless a table of `rows` rows can be addressed by `u32` indices.
pub(crate) fn rows_fit_u32(op: &'static str, arg: &'static str, rows: usize) -> Result<()> {
    if rows as u64 > MAX_ROWS {
        Err(Error::SizeOverflow {
            op,
            what: format!("`{arg}` has {rows} rows; u32 indices address at most 2^32"),
        })
    } else {
        Ok(())
    }
}

/// The device shared by all tensor arguments of one call.
pub(crate) struct DeviceCheck {
    op: &'static str,
    first: Option<Device>,
}

impl DeviceCheck {
    pub(crate) fn new(op: &'static str) -> DeviceCheck {
        DeviceCheck { op, first: None }
    }

    /// Adds one argument; errors if it lives elsewhere than the first.
    pub(crate) fn add<T: Element>(&mut self, arg: &'static str, t: &Tensor<T>) -> Result<()> {
        let d = t.device();
        match &self.first {
            None => {
                self.first = Some(d);
                Ok(())
            }
            Some(first) if first.same_as(&d) => Ok(()),
            Some(first) => Err(Error::DeviceMismatch {
                op: self.op,
                arg,
                expected: first.to_string(),
                got: d.to_string(),
            }),
        }
    }

    /// The shared device (the CPU if no tensor was added).
    pub(crate) fn device(self) -> Device {
        self.first.unwrap_or_else(Device::cpu)
    }
}

/// The host slice of a tensor the CPU path reads.
pub(crate) fn host<'t, T: Element>(
    op: &'static str,
    arg: &'static str,
    t: &'t Tensor<T>,
) -> Result<&'t [T]> {
    t.as_cpu_slice().ok_or_else(|| Error::DeviceMismatch {
        op,
        arg,
        expected: "cpu".into(),
        got: t.device().to_string(),
    })
}

/// Rounds reference results (f64) to the f32 outputs of the public API.
pub(crate) fn to_f32(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}
