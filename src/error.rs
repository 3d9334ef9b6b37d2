//! The crate's one error type.
//!
//! Every public entry point returns [`Result`]. A bad input is reported with the op and the
//! argument it concerns, so a caller can match on the variant and a person can read the message.
//! The set of variants is the same whatever cargo features are on.

use std::fmt;

use crate::backend::Backend;
use crate::dtype::DType;

/// Shorthand for `std::result::Result<T, ultramem::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in this crate.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// A tensor's shape does not fit the op (wrong rank, or a dimension that disagrees with
    /// another argument).
    ShapeMismatch {
        /// The op that was called.
        op: &'static str,
        /// The argument whose shape is wrong.
        arg: &'static str,
        /// What the op expected, e.g. `[3, 2, 64] = [T, H, Dk]` or `rank 3 [T, H, Dk]`.
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// A dimension that must be at least 1 is zero. (Only the token count `T` may be zero.)
    ZeroSized {
        /// The op that was called.
        op: &'static str,
        /// The argument the dimension belongs to.
        arg: &'static str,
        /// The name of the dimension (`"Dk"`, `"n"`, …).
        dim: &'static str,
    },
    /// More entries are requested than there are candidates (`k > K1²`, `K1 > n`, `m > K1²`,
    /// `k > E`, …).
    TooManySelected {
        /// The op that was called.
        op: &'static str,
        /// What is selected, e.g. `"k"` or `"K1"`.
        what: &'static str,
        /// How many were asked for.
        requested: usize,
        /// How many candidates there are.
        available: usize,
    },
    /// A size, option or scalar is outside its valid range (e.g. `Dv % Cn != 0`, an odd `Dk`
    /// for additive keys, a non-positive epsilon).
    InvalidArgument {
        /// The op or function that was called.
        op: &'static str,
        /// The argument that is wrong.
        arg: &'static str,
        /// Why it is wrong.
        reason: String,
    },
    /// An index read from a tensor is negative or not below its bound (a row `>= N`, an expert
    /// `>= E`, a virtual index `>= n²`).
    IndexOutOfRange {
        /// The op that was called.
        op: &'static str,
        /// The tensor that holds the index.
        arg: &'static str,
        /// The flat position of the bad index in that tensor.
        position: usize,
        /// The index that was found (negative only from a signed index tensor at the C ABI).
        index: i64,
        /// The exclusive bound it had to be below.
        bound: u64,
    },
    /// A value that steers a selection or a scalar option is NaN or infinite. (Data that only
    /// flows through arithmetic, such as table entries, propagates NaN like any framework.)
    NonFinite {
        /// The op that was called.
        op: &'static str,
        /// The tensor or option that holds the value.
        arg: &'static str,
        /// The flat position of the first non-finite value.
        position: usize,
    },
    /// A size does not fit the integer type that carries it (`n²` past `u32`, a shape whose
    /// element count overflows `usize`, a table with more than `2^32` rows).
    SizeOverflow {
        /// The op or constructor that was called.
        op: &'static str,
        /// What overflowed, in words.
        what: String,
    },
    /// A tensor's data length does not match its shape, or an output buffer is too small.
    BufferSize {
        /// The op or constructor that was called.
        op: &'static str,
        /// The buffer concerned.
        arg: &'static str,
        /// The number of elements needed.
        expected: usize,
        /// The number of elements given.
        got: usize,
    },
    /// Two arguments of one call live on different devices.
    DeviceMismatch {
        /// The op that was called.
        op: &'static str,
        /// The argument on the other device.
        arg: &'static str,
        /// The device of the first tensor argument.
        expected: String,
        /// The device of this argument.
        got: String,
    },
    /// The element type is not supported by this op on this backend (e.g. `f64` on a GPU).
    UnsupportedDType {
        /// The op that was called.
        op: &'static str,
        /// The backend it was called on.
        backend: Backend,
        /// The element type that was passed.
        dtype: DType,
    },
    /// The backend was not compiled in: enable its cargo feature.
    BackendNotCompiled {
        /// The backend asked for.
        backend: Backend,
        /// The cargo feature that compiles it.
        feature: &'static str,
    },
    /// The backend is compiled in but cannot run here (no driver, no adapter, kernels not yet
    /// available).
    BackendUnavailable {
        /// The backend asked for.
        backend: Backend,
        /// Why it cannot run.
        reason: String,
    },
    /// The op does not support this configuration on this backend (e.g. a size past a kernel's
    /// supported range).
    Unsupported {
        /// The op that was called.
        op: &'static str,
        /// The backend it was called on.
        backend: Backend,
        /// What is not supported.
        reason: String,
    },
    /// A host allocation failed (the CPU path widens tables to f64, the GPU paths stage data on
    /// the host): the op asked for more memory than the process may have. Nothing was changed.
    OutOfMemory {
        /// The op that was called.
        op: &'static str,
        /// The bytes the failed allocation asked for.
        bytes: usize,
    },
    /// Several queued checks failed ([`Device::check_errors`](crate::Device::check_errors) with
    /// deferred checks): every error, oldest op first. Later errors may be consequences of the
    /// first (rows computed from a bad index). A single failure is returned as itself.
    Several {
        /// The errors, oldest first; at least two.
        errors: Vec<Error>,
    },
    /// An error from a backend library (driver, wgpu), boxed.
    Backend {
        /// The backend that failed.
        backend: Backend,
        /// The library's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShapeMismatch {
                op,
                arg,
                expected,
                got,
            } => write!(f, "{op}: `{arg}` has shape {got:?}, expected {expected}"),
            Error::ZeroSized { op, arg, dim } => {
                write!(
                    f,
                    "{op}: dimension {dim} of `{arg}` is zero (only T may be 0)"
                )
            }
            Error::TooManySelected {
                op,
                what,
                requested,
                available,
            } => write!(
                f,
                "{op}: {what} = {requested} exceeds the {available} candidates available"
            ),
            Error::InvalidArgument { op, arg, reason } => write!(f, "{op}: `{arg}`: {reason}"),
            Error::IndexOutOfRange {
                op,
                arg,
                position,
                index,
                bound,
            } => write!(
                f,
                "{op}: `{arg}[{position}]` = {index} is out of range (must be < {bound})"
            ),
            Error::NonFinite { op, arg, position } => {
                write!(f, "{op}: `{arg}[{position}]` is NaN or infinite")
            }
            Error::SizeOverflow { op, what } => write!(f, "{op}: size overflow: {what}"),
            Error::BufferSize {
                op,
                arg,
                expected,
                got,
            } => write!(
                f,
                "{op}: `{arg}` holds {got} elements, {expected} are needed"
            ),
            Error::DeviceMismatch {
                op,
                arg,
                expected,
                got,
            } => write!(
                f,
                "{op}: `{arg}` lives on {got}, the other arguments on {expected}"
            ),
            Error::UnsupportedDType { op, backend, dtype } => {
                write!(f, "{op}: dtype {dtype} is not supported on {backend}")
            }
            Error::BackendNotCompiled { backend, feature } => write!(
                f,
                "the {backend} backend is not compiled in; enable the cargo feature `{feature}`"
            ),
            Error::BackendUnavailable { backend, reason } => {
                write!(f, "the {backend} backend is unavailable: {reason}")
            }
            Error::Unsupported {
                op,
                backend,
                reason,
            } => write!(f, "{op}: not supported on {backend}: {reason}"),
            Error::OutOfMemory { op, bytes } => write!(
                f,
                "{op}: out of host memory (an allocation of {bytes} bytes failed)"
            ),
            Error::Several { errors } => {
                write!(f, "{} queued checks failed:", errors.len())?;
                for (i, e) in errors.iter().enumerate() {
                    write!(f, " ({}) {e}", i + 1)?;
                }
                Ok(())
            }
            Error::Backend { backend, source } => write!(f, "{backend} backend error: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Backend { source, .. } => Some(source.as_ref()),
            Error::Several { errors } => errors.first().map(|e| e as _),
            _ => None,
        }
    }
}
