//! Reference weighted gather with core split, forward and backward.

use super::{check_indices, check_len};
use crate::dims::weighted_gather::WeightedGatherDims;
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "weighted_gather";

fn check_inputs<W: Float, V: Float>(
    d: &WeightedGatherDims,
    rows: &[u32],
    w: &[W],
    table: &[V],
) -> Result<()> {
    d.check()?;
    check_len(OP, "rows", rows, d.tokens * d.slots)?;
    check_len(OP, "weights", w, rows.len() * d.cores)?;
    check_len(OP, "table", table, d.table_rows * d.dv)?;
    check_indices(OP, "rows", rows, d.table_rows as u64)
}

/// `out[t, slice c] = Σ_k w[t,k,c]·table[rows[t,k], slice c]`, summed over `k` in order.
///
/// # Errors
/// Bad dims, wrong slice lengths, a row `>= N`.
pub fn forward<W: Float, V: Float>(
    d: &WeightedGatherDims,
    rows: &[u32],
    w: &[W],
    table: &[V],
) -> Result<Vec<f64>> {
    check_inputs(d, rows, w, table)?;
    let width = d.dv / d.cores;
    let mut out = crate::alloc::zeros(OP, d.tokens * d.dv)?;
    for (slot, &row) in rows.iter().enumerate() {
        let t = slot / d.slots;
        let src = &table[row as usize * d.dv..(row as usize + 1) * d.dv];
        let dst = &mut out[t * d.dv..(t + 1) * d.dv];
        for (col, (o, v)) in dst.iter_mut().zip(src).enumerate() {
            *o += w[slot * d.cores + col / width].to_f64() * v.to_f64();
        }
    }
    Ok(out)
}

/// Returns `(dw[T,M,Cn], dtable[N,Dv])`: `dw[t,k,c] = <table[ρ, slice c], dout[t, slice c]>`
/// and `dtable[ρ, slice c] += w[t,k,c]·dout[t, slice c]`, summed in (token, slot) order.
///
/// # Errors
/// Bad dims, wrong slice lengths, a row `>= N`.
pub fn backward<W: Float, V: Float, G: Float>(
    d: &WeightedGatherDims,
    rows: &[u32],
    w: &[W],
    table: &[V],
    dout: &[G],
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_inputs(d, rows, w, table)?;
    check_len(OP, "dout", dout, d.tokens * d.dv)?;
    let width = d.dv / d.cores;
    let mut dw = crate::alloc::zeros(OP, w.len())?;
    let mut dtable = crate::alloc::zeros(OP, table.len())?;
    for (slot, &row) in rows.iter().enumerate() {
        let t = slot / d.slots;
        let base = row as usize * d.dv;
        for col in 0..d.dv {
            let c = col / width;
            let g = dout[t * d.dv + col].to_f64();
            dw[slot * d.cores + c] += table[base + col].to_f64() * g;
            dtable[base + col] += w[slot * d.cores + c].to_f64() * g;
        }
    }
    Ok((dw, dtable))
}
