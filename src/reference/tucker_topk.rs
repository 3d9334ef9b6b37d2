//! Reference Tucker product-key top-k, forward and backward.

use super::topk::{top_k, top_k_of};
use super::{check_finite, check_indices, check_len, dot};
use crate::dims::tucker_topk::TuckerTopkDims;
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "tucker_topk";

/// Reads the per-rank scores of one side: `S[r, i] = <q[r], keys[r, i]>` for the rows `rows`.
struct Side<'a, Q, K> {
    q: &'a [Q],
    keys: &'a [K],
    n: usize,
    dk: usize,
}

impl<Q: Float, K: Float> Side<'_, Q, K> {
    fn score(&self, r: usize, i: usize) -> f64 {
        let key = (r * self.n + i) * self.dk;
        dot(
            &self.keys[key..key + self.dk],
            &self.q[r * self.dk..(r + 1) * self.dk],
        )
    }
}

fn check_inputs<Q: Float, K: Float>(d: &TuckerTopkDims, q: &[Q], keys: &[K]) -> Result<()> {
    d.check()?;
    let per_side = d.rank * d.dk;
    check_len(OP, "q", q, d.tokens * d.heads * 2 * per_side)?;
    check_len(OP, "keys", keys, d.heads * 2 * per_side * d.n)
}

/// Returns `(idx[T,H,m], score[T,H,m,Cn])`.
///
/// # Errors
/// Bad dims, wrong slice lengths, a non-finite query, core or proxy entry.
pub fn forward<Q: Float, K: Float, C: Float>(
    d: &TuckerTopkDims,
    q: &[Q],
    keys: &[K],
    cores: &[C],
    u: &[C],
    v: &[C],
) -> Result<(Vec<u32>, Vec<f64>)> {
    check_inputs(d, q, keys)?;
    let (r_, n, dk, cn) = (d.rank, d.n, d.dk, d.cores);
    check_len(OP, "cores", cores, d.heads * cn * r_ * r_)?;
    check_len(OP, "u", u, d.heads * r_)?;
    check_len(OP, "v", v, d.heads * r_)?;
    check_finite(OP, "q", q)?;
    check_finite(OP, "cores", cores)?;
    check_finite(OP, "u", u)?;
    check_finite(OP, "v", v)?;
    let mut idx = crate::alloc::with_capacity(OP, d.tokens * d.heads * d.m)?;
    let mut score = crate::alloc::with_capacity(OP, idx.capacity() * cn)?;
    for (th, qt) in q.chunks_exact(2 * r_ * dk).enumerate() {
        let h = th % d.heads;
        let side = |s: usize| Side {
            q: &qt[s * r_ * dk..(s + 1) * r_ * dk],
            keys: &keys[(h * 2 + s) * r_ * n * dk..(h * 2 + s + 1) * r_ * n * dk],
            n,
            dk,
        };
        let (row, col) = (side(0), side(1));
        // s_row[r][i], s_col[r][j]: all n scores per rank (they feed the proxy).
        let s_row: Vec<Vec<f64>> = (0..r_)
            .map(|r| (0..n).map(|i| row.score(r, i)).collect())
            .collect();
        let s_col: Vec<Vec<f64>> = (0..r_)
            .map(|r| (0..n).map(|j| col.score(r, j)).collect())
            .collect();
        let proxy = |s: &[Vec<f64>], w: &[C]| -> Vec<f64> {
            (0..n)
                .map(|i| (0..r_).map(|r| w[h * r_ + r].to_f64() * s[r][i]).sum())
                .collect()
        };
        let i1 = top_k_of(&proxy(&s_row, u), d.k1);
        let i2 = top_k_of(&proxy(&s_col, v), d.k1);
        let core =
            |c: usize, r: usize, r2: usize| cores[((h * cn + c) * r_ + r) * r_ + r2].to_f64();
        // per_core[cell * cn + c] = G_c of grid cell (a, b), cell = a * K1 + b.
        let mut per_core = crate::alloc::with_capacity(OP, d.k1 * d.k1 * cn)?;
        let mut cands = crate::alloc::with_capacity(OP, d.k1 * d.k1)?;
        for &i in &i1 {
            for &j in &i2 {
                let mut total = 0.0;
                for c in 0..cn {
                    // G_c = Σ_r S_row[r,i] · (Σ_r' C_c[r,r'] S_col[r',j])
                    let g: f64 = (0..r_)
                        .map(|r| {
                            s_row[r][i]
                                * (0..r_).map(|r2| core(c, r, r2) * s_col[r2][j]).sum::<f64>()
                        })
                        .sum();
                    per_core.push(g);
                    total += g;
                }
                cands.push((total, (i * n + j) as u64));
            }
        }
        // Grid position of each chosen row and column, to map ν back to its cell.
        let mut pos_row = vec![0usize; n];
        let mut pos_col = vec![0usize; n];
        i1.iter().enumerate().for_each(|(a, &i)| pos_row[i] = a);
        i2.iter().enumerate().for_each(|(b, &j)| pos_col[j] = b);
        let cell_of = |nu: u64| pos_row[nu as usize / n] * d.k1 + pos_col[nu as usize % n];
        for (_, nu) in top_k(cands, d.m) {
            idx.push(nu as u32);
            let cell = cell_of(nu);
            score.extend_from_slice(&per_core[cell * cn..(cell + 1) * cn]);
        }
    }
    Ok((idx, score))
}

/// Gradients of the Tucker top-k, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct TuckerGrads {
    /// `[T, H, 2, R, Dk]`.
    pub dq: Vec<f64>,
    /// `[H, 2, R, n, Dk]`.
    pub dkeys: Vec<f64>,
    /// `[H, Cn, R, R]`.
    pub dcores: Vec<f64>,
}

/// Backward from `idx[T,H,m]` and `dscore[T,H,m,Cn]`. Per chosen `ν = i·n + j` with
/// `g_c = dscore[…, c]`: `dC_c += g_c·S_row[:,i] S_col[:,j]ᵀ`,
/// `dS_row[:,i] = Σ_c g_c·C_c S_col[:,j]`, `dS_col[:,j] = Σ_c g_c·C_cᵀ S_row[:,i]`, then
/// `dq[s,r] += dS[s,r]·keys[s,r,row]` and `dkeys[s,r,row] += dS[s,r]·q[s,r]`.
///
/// # Errors
/// Bad dims, wrong slice lengths, an index `>= n²`.
pub fn backward<Q: Float, K: Float, C: Float, G: Float>(
    d: &TuckerTopkDims,
    q: &[Q],
    keys: &[K],
    cores: &[C],
    idx: &[u32],
    dscore: &[G],
) -> Result<TuckerGrads> {
    check_inputs(d, q, keys)?;
    let (r_, n, dk, cn) = (d.rank, d.n, d.dk, d.cores);
    check_len(OP, "cores", cores, d.heads * cn * r_ * r_)?;
    check_len(OP, "idx", idx, d.tokens * d.heads * d.m)?;
    check_len(OP, "dscore", dscore, idx.len() * cn)?;
    check_indices(OP, "idx", idx, (n * n) as u64)?;
    let mut g = TuckerGrads {
        dq: crate::alloc::zeros(OP, q.len())?,
        dkeys: crate::alloc::zeros(OP, keys.len())?,
        dcores: crate::alloc::zeros(OP, cores.len())?,
    };
    let side_len = r_ * dk;
    for (slot, &nu) in idx.iter().enumerate() {
        let th = slot / d.m;
        let h = th % d.heads;
        let rows = [nu as usize / n, nu as usize % n];
        let q_side = |s: usize| (th * 2 + s) * side_len;
        let key_of = |s: usize, r: usize| (((h * 2 + s) * r_ + r) * n + rows[s]) * dk;
        // S[s][r] for the chosen row (side 0) and column (side 1).
        let s_val: Vec<Vec<f64>> = (0..2)
            .map(|s| {
                (0..r_)
                    .map(|r| {
                        dot(
                            &keys[key_of(s, r)..key_of(s, r) + dk],
                            &q[q_side(s) + r * dk..q_side(s) + (r + 1) * dk],
                        )
                    })
                    .collect()
            })
            .collect();
        let mut ds = vec![vec![0.0; r_]; 2];
        for c in 0..cn {
            let gc = dscore[slot * cn + c].to_f64();
            let core_base = (h * cn + c) * r_ * r_;
            for r in 0..r_ {
                for r2 in 0..r_ {
                    let cv = cores[core_base + r * r_ + r2].to_f64();
                    g.dcores[core_base + r * r_ + r2] += gc * s_val[0][r] * s_val[1][r2];
                    ds[0][r] += gc * cv * s_val[1][r2];
                    ds[1][r2] += gc * cv * s_val[0][r];
                }
            }
        }
        for (s, ds_side) in ds.iter().enumerate() {
            for (r, &dsr) in ds_side.iter().enumerate() {
                let (qo, ko) = (q_side(s) + r * dk, key_of(s, r));
                for e in 0..dk {
                    g.dq[qo + e] += dsr * keys[ko + e].to_f64();
                    g.dkeys[ko + e] += dsr * q[qo + e].to_f64();
                }
            }
        }
    }
    Ok(g)
}
