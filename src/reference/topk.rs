//! The one ranking rule every selection uses (Part I §I.2).

use std::cmp::Ordering;

/// A candidate: its score and its flat index (the tie-breaker).
pub type Candidate = (f64, u64);

/// Total order, best first: larger score first; equal scores (including `-0.0 == +0.0`) by lower
/// index; NaN after every number, NaNs by lower index.
pub fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => a.1.cmp(&b.1),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            b.0.partial_cmp(&a.0)
                .unwrap_or(Ordering::Equal)
                .then(a.1.cmp(&b.1))
        }
    }
}

/// Keeps the best `k` candidates, sorted best first. `k` larger than the list keeps all.
pub fn top_k(mut cands: Vec<Candidate>, k: usize) -> Vec<Candidate> {
    if k == 0 {
        return Vec::new();
    }
    if k < cands.len() {
        cands.select_nth_unstable_by(k - 1, rank);
        cands.truncate(k);
    }
    cands.sort_unstable_by(rank);
    cands
}

/// The indices of the best `k` entries of `scores`, best first, ties to the lower position.
pub fn top_k_of(scores: &[f64], k: usize) -> Vec<usize> {
    let cands = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, i as u64))
        .collect();
    top_k(cands, k)
        .into_iter()
        .map(|(_, i)| i as usize)
        .collect()
}
