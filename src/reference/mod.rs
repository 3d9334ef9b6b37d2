//! The CPU reference: the executable specification every kernel is checked against.
//!
//! Every function reads its inputs as `f64` (whatever their storage type), accumulates in `f64`
//! in a fixed order, and returns `f64` results; the public ops round them to `f32`. Functions take
//! the op's dimension struct, re-check it, check each slice's length and every index they read,
//! and return a typed error instead of panicking. Selections follow Part I §I.2: larger score
//! first, ties to the lower flat index, NaN below every number.

pub mod activation;
pub mod additive_topk;
pub mod dense;
pub mod index_cast;
pub mod index_map;
pub mod matmul;
pub mod moe_ffn;
pub mod peer_ffn;
pub mod product_key_layer;
pub mod rmsnorm;
pub mod row_sort;
pub mod score_fn;
pub mod topk;
pub mod tucker_topk;
pub mod ultramem_v2_layer;
pub mod weighted_gather;

pub(crate) use crate::dims::{check_finite, check_indices, check_len};
use crate::dtype::Float;

/// `<a, b>` accumulated in f64, left to right.
pub(crate) fn dot<A: Float, B: Float>(a: &[A], b: &[B]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.to_f64() * y.to_f64()).sum()
}

/// Widens a slice to f64 (the reference layers' small operands).
pub(crate) fn widen<T: Float>(s: &[T]) -> Vec<f64> {
    s.iter().map(|x| x.to_f64()).collect()
}

/// Widens a slice to f64, with [`crate::Error::OutOfMemory`] when the copy cannot be allocated
/// (the ops' CPU paths, which a caller may hand any size).
pub(crate) fn try_widen<T: Float>(op: &'static str, s: &[T]) -> crate::Result<Vec<f64>> {
    crate::alloc::collect(op, s.iter().map(|x| x.to_f64()))
}
