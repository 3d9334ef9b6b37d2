//! The rank-1 proxy `(u, v)`: the top singular pair of `C̄ = Σ_c C_c`, refreshed on the host
//! once per optimiser step (Part II §2.3, §8 A6). Kernels take `(u, v)` as inputs.
//!
//! Sign continuity: a singular pair is defined up to `(u, v) → (−u, −v)`, and the sign decides
//! which end of the proxy scores stage 1 keeps, so a refresh keeps the sign closer (in
//! `|u − u_prev|₁ + |v − v_prev|₁`) to the previous pair. Without a previous pair (or with the
//! all-zero pair the code starts from) the sign is fixed so that the entry of `u` with the
//! largest magnitude (the first such) is positive; this choice is ours, documented, and makes
//! the first refresh deterministic.

use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::reference::{check_finite, check_len};

const OP: &str = "tucker_proxy";

/// The largest rank the host solver takes. The Jacobi solver costs up to 100 sweeps of O(R³)
/// (about 3·10⁹ flops at R = 256, well under a second; R = 1024 would take minutes), and the
/// GPU kernels take R ≤ 4; 256 bounds the call's time while leaving room for studies.
pub const MAX_PROXY_RANK: usize = 256;

/// `(u[H, R], v[H, R])` from `cores[H, Cn, R, R]`, sign-aligned to `prev` when given.
///
/// `R = 2` uses the closed form (the top eigenvector of the 2×2 matrix `C̄C̄ᵀ`, then
/// `v = C̄ᵀu / ‖C̄ᵀu‖`); other ranks use a Jacobi eigensolver on `C̄C̄ᵀ`.
///
/// ```
/// use ultramem::layer::tucker_proxy::tucker_proxy;
/// // One head, one core C = [[3, 0], [0, 1]]: top singular pair u = v = e1.
/// let (u, v) = tucker_proxy(&[3.0f32, 0., 0., 1.], 1, 1, 2, None)?;
/// assert_eq!((u, v), (vec![1.0, 0.0], vec![1.0, 0.0]));
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// [`Error::ZeroSized`], [`Error::BufferSize`], [`Error::NonFinite`] for a bad core entry,
/// [`Error::Unsupported`] for `R` past [`MAX_PROXY_RANK`] (checked before any work), and
/// [`Error::InvalidArgument`] when some head's `Σ_c C_c` is zero (no direction exists) or
/// overflows f64.
pub fn tucker_proxy<C: Float>(
    cores: &[C],
    heads: usize,
    n_cores: usize,
    rank: usize,
    prev: Option<(&[f64], &[f64])>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    crate::dims::nonzero(OP, "cores", "H", heads)?;
    crate::dims::nonzero(OP, "cores", "Cn", n_cores)?;
    crate::dims::nonzero(OP, "cores", "R", rank)?;
    if rank > MAX_PROXY_RANK {
        return Err(Error::Unsupported {
            op: OP,
            backend: crate::backend::Backend::Cpu,
            reason: format!("R = {rank} exceeds the host solver's limit of {MAX_PROXY_RANK}"),
        });
    }
    check_len(OP, "cores", cores, heads * n_cores * rank * rank)?;
    check_finite(OP, "cores", cores)?;
    if let Some((pu, pv)) = prev {
        check_len(OP, "prev.u", pu, heads * rank)?;
        check_len(OP, "prev.v", pv, heads * rank)?;
    }
    let mut u_all = Vec::with_capacity(heads * rank);
    let mut v_all = Vec::with_capacity(heads * rank);
    for h in 0..heads {
        // C̄ = Σ_c C_c, row-major R×R.
        let mut cbar = vec![0.0; rank * rank];
        for c in 0..n_cores {
            let base = (h * n_cores + c) * rank * rank;
            for (acc, x) in cbar.iter_mut().zip(&cores[base..base + rank * rank]) {
                *acc += x.to_f64();
            }
        }
        // Singular vectors do not depend on scale: solve for C̄ / max|C̄| so that C̄C̄ᵀ neither
        // overflows (cores of 1e200) nor underflows to zero (cores of 1e-170).
        let largest = cbar.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let undefined = |why: &str| Error::InvalidArgument {
            op: OP,
            arg: "cores",
            reason: format!("head {h}: the sum of the cores {why}, so (u, v) is undefined"),
        };
        if !largest.is_finite() {
            return Err(undefined("overflows f64"));
        }
        if largest == 0.0 {
            return Err(undefined("is zero"));
        }
        cbar.iter_mut().for_each(|x| *x /= largest);
        let (mut u, mut v) = top_singular_pair(&cbar, rank).ok_or_else(|| undefined("is zero"))?;
        let prev_h = prev
            .map(|(pu, pv)| (&pu[h * rank..(h + 1) * rank], &pv[h * rank..(h + 1) * rank]))
            .filter(|(pu, pv)| pu.iter().chain(pv.iter()).any(|&x| x != 0.0));
        let flip = match prev_h {
            Some((pu, pv)) => {
                let dist = |s: f64| -> f64 {
                    u.iter()
                        .zip(pu)
                        .map(|(a, b)| (s * a - b).abs())
                        .sum::<f64>()
                        + v.iter()
                            .zip(pv)
                            .map(|(a, b)| (s * a - b).abs())
                            .sum::<f64>()
                };
                dist(-1.0) < dist(1.0)
            }
            None => {
                let lead =
                    u.iter().enumerate().fold(
                        0,
                        |best, (i, x)| if x.abs() > u[best].abs() { i } else { best },
                    );
                u[lead] < 0.0
            }
        };
        if flip {
            u.iter_mut().chain(v.iter_mut()).for_each(|x| *x = -*x);
        }
        u_all.extend(u);
        v_all.extend(v);
    }
    Ok((u_all, v_all))
}

/// The top singular pair `(u, v)` of the `r × r` matrix `c`, or `None` if `c` is zero.
fn top_singular_pair(c: &[f64], r: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    // A = C Cᵀ is symmetric positive semi-definite; its top eigenvector is u.
    let mut a = vec![0.0; r * r];
    for i in 0..r {
        for j in 0..r {
            a[i * r + j] = (0..r).map(|k| c[i * r + k] * c[j * r + k]).sum();
        }
    }
    let u = if r == 2 {
        top_eigvec_2x2(&a)
    } else {
        top_eigvec_jacobi(&a, r)
    };
    // v = Cᵀu / ‖Cᵀu‖.
    let ctu: Vec<f64> = (0..r)
        .map(|j| (0..r).map(|i| c[i * r + j] * u[i]).sum())
        .collect();
    let norm = ctu.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    Some((u, ctu.iter().map(|x| x / norm).collect()))
}

/// Closed form for `[[a, b], [b, d]]`: `λ = (a+d)/2 + sqrt(((a−d)/2)² + b²)`, eigenvector
/// `(b, λ−a)` or `(λ−d, b)`, whichever is longer (the other can vanish by cancellation).
pub(crate) fn top_eigvec_2x2(m: &[f64]) -> Vec<f64> {
    let (a, b, d) = (m[0], m[1], m[3]);
    let lambda = 0.5 * (a + d) + (0.25 * (a - d) * (a - d) + b * b).sqrt();
    let x = [b, lambda - a];
    let y = [lambda - d, b];
    let (nx, ny) = (x[0].hypot(x[1]), y[0].hypot(y[1]));
    if nx == 0.0 && ny == 0.0 {
        // A multiple of the identity: every direction is top; take e1.
        return vec![1.0, 0.0];
    }
    let (w, nw) = if nx >= ny { (x, nx) } else { (y, ny) };
    vec![w[0] / nw, w[1] / nw]
}

/// Cyclic Jacobi eigensolver for a small symmetric matrix: the eigenvector of the largest
/// eigenvalue (the lowest index among equal ones).
pub(crate) fn top_eigvec_jacobi(m: &[f64], r: usize) -> Vec<f64> {
    let mut a = m.to_vec();
    let mut vecs = vec![0.0; r * r];
    (0..r).for_each(|i| vecs[i * r + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..r)
            .flat_map(|i| (0..r).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * r + j] * a[i * r + j])
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..r {
            for q in p + 1..r {
                let apq = a[p * r + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * r + q] - a[p * r + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (cs, sn) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                // A ← Jᵀ A J, V ← V J with the rotation in the (p, q) plane.
                for k in 0..r {
                    let (akp, akq) = (a[k * r + p], a[k * r + q]);
                    a[k * r + p] = cs * akp - sn * akq;
                    a[k * r + q] = sn * akp + cs * akq;
                }
                for k in 0..r {
                    let (apk, aqk) = (a[p * r + k], a[q * r + k]);
                    a[p * r + k] = cs * apk - sn * aqk;
                    a[q * r + k] = sn * apk + cs * aqk;
                }
                for k in 0..r {
                    let (vkp, vkq) = (vecs[k * r + p], vecs[k * r + q]);
                    vecs[k * r + p] = cs * vkp - sn * vkq;
                    vecs[k * r + q] = sn * vkp + cs * vkq;
                }
            }
        }
    }
    let top = (0..r).fold(0, |best, i| {
        if a[i * r + i] > a[best * r + best] {
            i
        } else {
            best
        }
    });
    (0..r).map(|k| vecs[k * r + top]).collect()
}
