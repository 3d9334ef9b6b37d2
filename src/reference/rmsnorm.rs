//! RMSNorm over contiguous chunks, forward and backward (Part II §2.1).

/// `y = γ ⊙ x / sqrt(mean(x²) + ε)` for each chunk of `gamma.len()` elements of `x`.
pub fn forward(x: &[f64], gamma: &[f64], eps: f64) -> Vec<f64> {
    let d = gamma.len();
    let mut y = Vec::with_capacity(x.len());
    for chunk in x.chunks_exact(d) {
        let r = rms(chunk, eps);
        y.extend(chunk.iter().zip(gamma).map(|(&v, &g)| g * v / r));
    }
    y
}

/// `sqrt(mean(x²) + ε)`.
pub fn rms(x: &[f64], eps: f64) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt()
}

/// Given `dy`, returns `dx` and adds `dγ` into `dgamma`:
/// `dx = ĝ/r − x·(Σ ĝ⊙x)/(d·r³)` with `ĝ = γ⊙dy`, and `dγ += dy⊙x/r`.
pub fn backward(x: &[f64], gamma: &[f64], eps: f64, dy: &[f64], dgamma: &mut [f64]) -> Vec<f64> {
    let d = gamma.len();
    let mut dx = Vec::with_capacity(x.len());
    for (chunk, dchunk) in x.chunks_exact(d).zip(dy.chunks_exact(d)) {
        let r = rms(chunk, eps);
        let ghat_dot_x: f64 = (0..d).map(|i| gamma[i] * dchunk[i] * chunk[i]).sum();
        for i in 0..d {
            dx.push(gamma[i] * dchunk[i] / r - chunk[i] * ghat_dot_x / (d as f64 * r * r * r));
            dgamma[i] += dchunk[i] * chunk[i] / r;
        }
    }
    dx
}
