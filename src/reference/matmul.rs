//! The layer's dense products: `C = op(A) op(B) (+ C0)`, f64 accumulation in `k` order.

use super::check_len;
use crate::dims::matmul::MatmulDims;
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "matmul";

/// `C[M, N]` for `A` stored `[M, K]` (or `[K, M]` when `A` is read transposed), `B` stored `[K, N]` (or
/// `[N, K]` when `transpose_b`), plus `addend[M, N]` when given.
///
/// # Errors
/// [`crate::Error::BufferSize`] for a slice of the wrong length, and those of
/// [`MatmulDims::check`].
pub fn forward<A: Float, B: Float>(
    d: &MatmulDims,
    a: &[A],
    b: &[B],
    addend: Option<&[f32]>,
) -> Result<Vec<f64>> {
    d.check()?;
    check_len(OP, "a", a, d.m * d.k)?;
    check_len(OP, "b", b, d.k * d.n)?;
    if let Some(c0) = addend {
        check_len(OP, "addend", c0, d.m * d.n)?;
    }
    let a_at = |m: usize, k: usize| {
        if d.transpose_a.is_transposed() {
            k * d.m + m
        } else {
            m * d.k + k
        }
    };
    let b_at = |k: usize, n: usize| {
        if d.transpose_b.is_transposed() {
            n * d.k + k
        } else {
            k * d.n + n
        }
    };
    let mut c = crate::alloc::with_capacity(OP, d.m * d.n)?;
    for m in 0..d.m {
        for n in 0..d.n {
            let sum: f64 = (0..d.k)
                .map(|k| a[a_at(m, k)].to_f64() * b[b_at(k, n)].to_f64())
                .sum();
            c.push(sum + addend.map_or(0.0, |c0| f64::from(c0[m * d.n + n])));
        }
    }
    Ok(c)
}
