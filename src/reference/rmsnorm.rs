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

/// [`forward`] writing each normalised chunk `repeat` times in a row (tied queries, once per
/// Tucker rank): `[chunks, dim]` → `[chunks, repeat, dim]`.
pub fn forward_repeated(x: &[f64], gamma: &[f64], eps: f64, repeat: usize) -> Vec<f64> {
    let d = gamma.len();
    forward(x, gamma, eps)
        .chunks_exact(d)
        .flat_map(|c| std::iter::repeat_n(c, repeat).flatten().copied())
        .collect()
}

/// The backward of [`forward_repeated`]: sums `dy[chunks, repeat, dim]` over the copies, then
/// [`backward`]. Returns `(dx, dgamma)`.
pub fn backward_repeated(
    x: &[f64],
    gamma: &[f64],
    eps: f64,
    repeat: usize,
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let d = gamma.len();
    let summed: Vec<f64> = dy
        .chunks_exact(repeat * d)
        .flat_map(|copies| (0..d).map(move |i| (0..repeat).map(|j| copies[j * d + i]).sum::<f64>()))
        .collect();
    let mut dgamma = vec![0.0; d];
    let dx = backward(x, gamma, eps, &summed, &mut dgamma);
    (dx, dgamma)
}
