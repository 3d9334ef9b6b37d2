//! Reference PEER per-slot FFN, forward and backward.

use super::activation::{apply, derivative};
use super::{check_indices, check_len, dot};
use crate::dims::peer_ffn::{Activation, PeerFfnDims};
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "peer_ffn";

fn check_inputs<S: Float, Z: Float, V: Float>(
    d: &PeerFfnDims,
    rows: &[u32],
    s: &[S],
    z: &[Z],
    down: &[V],
    up: &[V],
) -> Result<()> {
    d.check()?;
    check_len(OP, "rows", rows, d.tokens * d.slots)?;
    check_len(OP, "scores", s, rows.len() * d.cores)?;
    check_len(OP, "z", z, d.tokens * d.dp)?;
    check_len(OP, "down", down, d.table_rows * d.dp)?;
    check_len(OP, "up", up, d.table_rows * d.dv)?;
    check_indices(OP, "rows", rows, d.table_rows as u64)
}

/// `out[t, slice c] = Σ_k s[t,k,c]·φ(<down[ρ], z[t]>)·up[ρ, slice c]`.
///
/// # Errors
/// Bad dims, wrong slice lengths, a row `>= N`.
pub fn forward<S: Float, Z: Float, V: Float>(
    d: &PeerFfnDims,
    act: Activation,
    rows: &[u32],
    s: &[S],
    z: &[Z],
    down: &[V],
    up: &[V],
) -> Result<Vec<f64>> {
    check_inputs(d, rows, s, z, down, up)?;
    let width = d.dv / d.cores;
    let mut out = crate::alloc::zeros(OP, d.tokens * d.dv)?;
    for (slot, &row) in rows.iter().enumerate() {
        let (t, r) = (slot / d.slots, row as usize);
        let phi = apply(
            act,
            dot(
                &down[r * d.dp..(r + 1) * d.dp],
                &z[t * d.dp..(t + 1) * d.dp],
            ),
        );
        for col in 0..d.dv {
            let w = s[slot * d.cores + col / width].to_f64() * phi;
            out[t * d.dv + col] += w * up[r * d.dv + col].to_f64();
        }
    }
    Ok(out)
}

/// Gradients of the PEER FFN, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerGrads {
    /// `[T, Dp]`.
    pub dz: Vec<f64>,
    /// `[T, M, Cn]`.
    pub dscores: Vec<f64>,
    /// `[N, Dp]`.
    pub ddown: Vec<f64>,
    /// `[N, Dv]`.
    pub dup: Vec<f64>,
}

/// Backward given `dout[T, Dv]` (Part II §2.6): `dw_c = <up[ρ, c], dout[c]>`,
/// `ds_c = dw_c·φ(α)`, `dα = φ'(α)·Σ_c dw_c·s_c`, `ddown[ρ] += dα·z`, `dz += dα·down[ρ]`,
/// `dup[ρ, c] += s_c·φ(α)·dout[c]`; slots in (token, slot) order.
///
/// # Errors
/// Bad dims, wrong slice lengths, a row `>= N`.
#[allow(
    clippy::too_many_arguments,
    reason = "one slice per tensor of the op, as in the spec"
)]
pub fn backward<S: Float, Z: Float, V: Float, G: Float>(
    d: &PeerFfnDims,
    act: Activation,
    rows: &[u32],
    s: &[S],
    z: &[Z],
    down: &[V],
    up: &[V],
    dout: &[G],
) -> Result<PeerGrads> {
    check_inputs(d, rows, s, z, down, up)?;
    check_len(OP, "dout", dout, d.tokens * d.dv)?;
    let width = d.dv / d.cores;
    let mut g = PeerGrads {
        dz: crate::alloc::zeros(OP, z.len())?,
        dscores: crate::alloc::zeros(OP, s.len())?,
        ddown: crate::alloc::zeros(OP, down.len())?,
        dup: crate::alloc::zeros(OP, up.len())?,
    };
    for (slot, &row) in rows.iter().enumerate() {
        let (t, r) = (slot / d.slots, row as usize);
        let zt = &z[t * d.dp..(t + 1) * d.dp];
        let alpha = dot(&down[r * d.dp..(r + 1) * d.dp], zt);
        let phi = apply(act, alpha);
        let mut dw = vec![0.0; d.cores];
        for col in 0..d.dv {
            let c = col / width;
            let go = dout[t * d.dv + col].to_f64();
            dw[c] += up[r * d.dv + col].to_f64() * go;
            g.dup[r * d.dv + col] += s[slot * d.cores + c].to_f64() * phi * go;
        }
        let mut dphi = 0.0;
        for c in 0..d.cores {
            g.dscores[slot * d.cores + c] = dw[c] * phi;
            dphi += dw[c] * s[slot * d.cores + c].to_f64();
        }
        let dalpha = derivative(act, alpha) * dphi;
        for e in 0..d.dp {
            g.ddown[r * d.dp + e] += dalpha * zt[e].to_f64();
            g.dz[t * d.dp + e] += dalpha * down[r * d.dp + e].to_f64();
        }
    }
    Ok(g)
}
