//! Dense products of the layer, as plain f64 loops.

/// `y[t] = W x[t]` for `W[rows, cols]` and `x[T, cols]`: returns `[T, rows]`.
pub fn matvec_rows(w: &[f64], rows: usize, cols: usize, x: &[f64]) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len() / cols.max(1) * rows);
    for xt in x.chunks_exact(cols) {
        for r in 0..rows {
            y.push(
                w[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(xt)
                    .map(|(a, b)| a * b)
                    .sum(),
            );
        }
    }
    y
}

/// Backward of [`matvec_rows`] given `dy[T, rows]`: adds `dW += Σ_t dy[t] x[t]ᵀ` and returns
/// `dx[T, cols] = Wᵀ dy[t]`.
pub fn matvec_rows_backward(
    w: &[f64],
    rows: usize,
    cols: usize,
    x: &[f64],
    dy: &[f64],
    dw: &mut [f64],
) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for ((xt, dyt), dxt) in x
        .chunks_exact(cols)
        .zip(dy.chunks_exact(rows))
        .zip(dx.chunks_exact_mut(cols))
    {
        for r in 0..rows {
            let g = dyt[r];
            let wr = &w[r * cols..(r + 1) * cols];
            let dwr = &mut dw[r * cols..(r + 1) * cols];
            for c in 0..cols {
                dwr[c] += g * xt[c];
                dxt[c] += g * wr[c];
            }
        }
    }
    dx
}
