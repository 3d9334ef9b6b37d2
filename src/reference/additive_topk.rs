//! Reference additive product-key top-k, forward and backward.

use super::topk::{top_k, top_k_of};
use super::{check_finite, check_indices, check_len, dot};
use crate::dims::additive_topk::AdditiveTopkDims;
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "additive_topk";

/// Returns `(idx[T,H,k], score[T,H,k])`.
///
/// # Errors
/// Bad dims, wrong slice lengths, a non-finite query.
pub fn forward<Q: Float, K: Float>(
    d: &AdditiveTopkDims,
    q: &[Q],
    keys: &[K],
) -> Result<(Vec<u32>, Vec<f64>)> {
    d.check()?;
    let (half, n) = (d.dk / 2, d.n);
    check_len(OP, "q", q, d.tokens * d.heads * d.dk)?;
    check_len(OP, "keys", keys, d.heads * 2 * n * half)?;
    check_finite(OP, "q", q)?;
    let mut idx = crate::alloc::with_capacity(OP, d.tokens * d.heads * d.k)?;
    let mut score = crate::alloc::with_capacity(OP, idx.capacity())?;
    for (th, qt) in q.chunks_exact(d.dk).enumerate() {
        let h = th % d.heads;
        let side_scores = |side: usize| -> Vec<f64> {
            let base = (h * 2 + side) * n * half;
            let q_half = &qt[side * half..(side + 1) * half];
            (0..n)
                .map(|i| dot(&keys[base + i * half..base + (i + 1) * half], q_half))
                .collect()
        };
        let (s1, s2) = (side_scores(0), side_scores(1));
        let (i1, i2) = (top_k_of(&s1, d.k1), top_k_of(&s2, d.k1));
        let mut cands = crate::alloc::with_capacity(OP, d.k1 * d.k1)?;
        for &i in &i1 {
            for &j in &i2 {
                cands.push((s1[i] + s2[j], (i * n + j) as u64));
            }
        }
        for (s, flat) in top_k(cands, d.k) {
            idx.push(flat as u32);
            score.push(s);
        }
    }
    Ok((idx, score))
}

/// Returns `(dq[T,H,Dk], dkeys[H,2,n,Dk/2])` for the chosen `idx` and `dscore`:
/// `dq1 += dσ·C1[i]`, `dq2 += dσ·C2[j]`, `dC1[i] += dσ·q1`, `dC2[j] += dσ·q2` per chosen pair.
///
/// # Errors
/// Bad dims, wrong slice lengths, an index `>= n²`.
pub fn backward<Q: Float, K: Float, G: Float>(
    d: &AdditiveTopkDims,
    q: &[Q],
    keys: &[K],
    idx: &[u32],
    dscore: &[G],
) -> Result<(Vec<f64>, Vec<f64>)> {
    d.check()?;
    let (half, n) = (d.dk / 2, d.n);
    check_len(OP, "q", q, d.tokens * d.heads * d.dk)?;
    check_len(OP, "keys", keys, d.heads * 2 * n * half)?;
    check_len(OP, "idx", idx, d.tokens * d.heads * d.k)?;
    check_len(OP, "dscore", dscore, idx.len())?;
    check_indices(OP, "idx", idx, (n * n) as u64)?;
    let mut dq = crate::alloc::zeros(OP, q.len())?;
    let mut dkeys = crate::alloc::zeros(OP, keys.len())?;
    for (slot, (&flat, g)) in idx.iter().zip(dscore).enumerate() {
        let th = slot / d.k;
        let h = th % d.heads;
        let g = g.to_f64();
        let (i, j) = (flat as usize / n, flat as usize % n);
        for (side, row) in [(0, i), (1, j)] {
            let key = (h * 2 + side) * n * half + row * half;
            let qo = th * d.dk + side * half;
            for e in 0..half {
                dq[qo + e] += g * keys[key + e].to_f64();
                dkeys[key + e] += g * q[qo + e].to_f64();
            }
        }
    }
    Ok((dq, dkeys))
}
