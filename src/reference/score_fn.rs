//! Reference score functions and their vector-Jacobian products.

use super::check_len;
use crate::dims::score_fn::{ScoreFn, ScoreFnDims};
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "score_fn";

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Applies `func` to `score` (`[T, H, k, Cn]` flattened; Softmax over `k`).
///
/// # Errors
/// Bad dims or a wrong slice length.
pub fn forward<S: Float>(d: &ScoreFnDims, func: ScoreFn, score: &[S]) -> Result<Vec<f64>> {
    d.check()?;
    check_len(OP, "score", score, d.tokens * d.heads * d.k * d.cores)?;
    let x: Vec<f64> = crate::alloc::collect(OP, score.iter().map(|s| s.to_f64()))?;
    Ok(match func {
        ScoreFn::Raw => x,
        // In place: no second allocation of the scores' size.
        ScoreFn::Relu => x.into_iter().map(|v| v.max(0.0)).collect(),
        ScoreFn::Sigmoid => x.into_iter().map(sigmoid).collect(),
        ScoreFn::Softmax => softmax(d, &x)?,
    })
}

/// Softmax over the `k` axis of `[T·H, k, Cn]`, max-shifted for range.
fn softmax(d: &ScoreFnDims, x: &[f64]) -> Result<Vec<f64>> {
    let (k, cn) = (d.k, d.cores);
    let mut y = crate::alloc::zeros(OP, x.len())?;
    for group in 0..d.tokens * d.heads {
        for c in 0..cn {
            let at = |slot: usize| group * k * cn + slot * cn + c;
            let max = (0..k).map(|s| x[at(s)]).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..k).map(|s| (x[at(s)] - max).exp()).sum();
            for s in 0..k {
                y[at(s)] = (x[at(s)] - max).exp() / sum;
            }
        }
    }
    Ok(y)
}

/// `dscore` from the forward input `score` and `dout`.
///
/// # Errors
/// Bad dims or a wrong slice length.
pub fn backward<S: Float, G: Float>(
    d: &ScoreFnDims,
    func: ScoreFn,
    score: &[S],
    dout: &[G],
) -> Result<Vec<f64>> {
    let y = forward(d, func, score)?;
    check_len(OP, "dout", dout, y.len())?;
    let dy: Vec<f64> = crate::alloc::collect(OP, dout.iter().map(|g| g.to_f64()))?;
    Ok(match func {
        ScoreFn::Raw => dy,
        // In place over `dy` (no allocation that could fail).
        ScoreFn::Relu => {
            let mut dx = dy;
            dx.iter_mut()
                .zip(score)
                .for_each(|(g, x)| *g = if x.to_f64() > 0.0 { *g } else { 0.0 });
            dx
        }
        ScoreFn::Sigmoid => {
            let mut dx = dy;
            dx.iter_mut()
                .zip(&y)
                .for_each(|(g, &s)| *g = *g * s * (1.0 - s));
            dx
        }
        ScoreFn::Softmax => {
            // dx = y ⊙ (dy − Σ_k y·dy), per (token, head, core).
            let (k, cn) = (d.k, d.cores);
            let mut dx = crate::alloc::zeros(OP, y.len())?;
            for group in 0..d.tokens * d.heads {
                for c in 0..cn {
                    let at = |slot: usize| group * k * cn + slot * cn + c;
                    let inner: f64 = (0..k).map(|s| y[at(s)] * dy[at(s)]).sum();
                    for s in 0..k {
                        dx[at(s)] = y[at(s)] * (dy[at(s)] - inner);
                    }
                }
            }
            dx
        }
    })
}
