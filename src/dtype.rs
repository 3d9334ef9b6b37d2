//! Element types.
//!
//! Tables (keys, value tables, PEER down/up tables, MoE weights) may be `f32`, `f16` or `bf16`
//! (via the `half` crate); queries, scores, weights and outputs are `f32`; indices are `u32`.
//! `f64` is accepted by the CPU reference only (finite-difference and `gradcheck`-style checks);
//! GPU backends answer it with [`crate::Error::UnsupportedDType`].

use std::fmt;

pub use half::{bf16, f16};

/// The element type of a tensor, known at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top 16 bits of an `f32`).
    BF16,
    /// IEEE binary64 (CPU reference only).
    F64,
    /// Unsigned 32-bit integer (indices).
    U32,
}

impl DType {
    /// Bytes per element.
    pub const fn size_bytes(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::U32 => 4,
            DType::F64 => 8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::U32 => "u32",
        })
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for u32 {}
}

/// A type a [`crate::Tensor`] can hold. Sealed: implemented for `f32`, `f64`, `f16`, `bf16`
/// and `u32`.
pub trait Element:
    sealed::Sealed + bytemuck::Pod + Copy + Default + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// The run-time tag of this type.
    const DTYPE: DType;
}

/// A floating-point element: the reference reads every one of them as `f64`.
pub trait Float: Element {
    /// Widen to `f64` exactly.
    fn to_f64(self) -> f64;
    /// Round from `f64` to nearest (ties to even).
    fn from_f64(x: f64) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
}
impl Element for f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

impl Float for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}
impl Float for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}
impl Float for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        f16::from_f64(x)
    }
}
impl Float for bf16 {
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        bf16::from_f64(x)
    }
}
