//! RMSNorm over contiguous chunks, forward and backward (Part II §2.1). Results are allocated
//! fallibly: these run behind the C ABI and the CPU device, where a size the allocator refuses
//! must be [`Error::OutOfMemory`], not an abort.

use crate::error::{Error, Result};

const OP: &str = "rmsnorm";

/// `y = γ ⊙ x / sqrt(mean(x²) + ε)` for each chunk of `gamma.len()` elements of `x`.
///
/// # Errors
/// [`Error::OutOfMemory`].
pub fn forward(x: &[f64], gamma: &[f64], eps: f64) -> Result<Vec<f64>> {
    let d = gamma.len();
    let mut y = crate::alloc::with_capacity(OP, x.len())?;
    for chunk in x.chunks_exact(d) {
        let r = rms(chunk, eps);
        y.extend(chunk.iter().zip(gamma).map(|(&v, &g)| g * v / r));
    }
    Ok(y)
}

/// `sqrt(mean(x²) + ε)`.
pub fn rms(x: &[f64], eps: f64) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt()
}

/// Given `dy`, returns `dx` and adds `dγ` into `dgamma`:
/// `dx = ĝ/r − x·(Σ ĝ⊙x)/(d·r³)` with `ĝ = γ⊙dy`, and `dγ += dy⊙x/r`.
///
/// # Errors
/// [`Error::OutOfMemory`].
pub fn backward(
    x: &[f64],
    gamma: &[f64],
    eps: f64,
    dy: &[f64],
    dgamma: &mut [f64],
) -> Result<Vec<f64>> {
    let d = gamma.len();
    let mut dx = crate::alloc::with_capacity(OP, x.len())?;
    for (chunk, dchunk) in x.chunks_exact(d).zip(dy.chunks_exact(d)) {
        let r = rms(chunk, eps);
        let ghat_dot_x: f64 = (0..d).map(|i| gamma[i] * dchunk[i] * chunk[i]).sum();
        for i in 0..d {
            dx.push(gamma[i] * dchunk[i] / r - chunk[i] * ghat_dot_x / (d as f64 * r * r * r));
            dgamma[i] += dchunk[i] * chunk[i] / r;
        }
    }
    Ok(dx)
}

/// [`forward`] writing each normalised chunk `repeat` times in a row (tied queries, once per
/// Tucker rank): `[chunks, dim]` → `[chunks, repeat, dim]`.
///
/// # Errors
/// [`Error::OutOfMemory`], also for a result past the address space.
pub fn forward_repeated(x: &[f64], gamma: &[f64], eps: f64, repeat: usize) -> Result<Vec<f64>> {
    let d = gamma.len();
    let y = forward(x, gamma, eps)?;
    let len = y.len().checked_mul(repeat).ok_or(Error::OutOfMemory {
        op: OP,
        bytes: usize::MAX,
    })?;
    let mut out = crate::alloc::with_capacity(OP, len)?;
    for c in y.chunks_exact(d) {
        out.extend(std::iter::repeat_n(c, repeat).flatten().copied());
    }
    Ok(out)
}

/// The backward of [`forward_repeated`]: sums `dy[chunks, repeat, dim]` over the copies, then
/// [`backward`]. Returns `(dx, dgamma)`.
///
/// # Errors
/// [`Error::OutOfMemory`].
pub fn backward_repeated(
    x: &[f64],
    gamma: &[f64],
    eps: f64,
    repeat: usize,
    dy: &[f64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = gamma.len();
    let mut summed = crate::alloc::with_capacity(OP, x.len())?;
    for copies in dy.chunks_exact(repeat * d) {
        summed.extend((0..d).map(|i| (0..repeat).map(|j| copies[j * d + i]).sum::<f64>()));
    }
    let mut dgamma = crate::alloc::zeros(OP, d)?;
    let dx = backward(x, gamma, eps, &summed, &mut dgamma)?;
    Ok((dx, dgamma))
}
