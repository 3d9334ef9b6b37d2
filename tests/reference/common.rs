//! Helpers shared by the reference tests: random inputs, tolerances, finite differences.

use ultramem::rng::SplitMix64;
use ultramem::{Device, Element, Tensor};

/// A tensor on the CPU.
pub fn cpu<T: Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::from_vec(&Device::cpu(), shape, data).expect("shape and data agree")
}

/// `len` standard normal draws.
pub fn normals(rng: &mut SplitMix64, len: usize) -> Vec<f64> {
    rng.normals(len, 1.0)
}

/// `len` f32 normal draws.
pub fn normals_f32(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    normals(rng, len).into_iter().map(|x| x as f32).collect()
}

/// A named bound on `|actual − expected| <= abs + rel·|expected|`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rel: f64,
    pub abs: f64,
}

impl Tolerance {
    /// The f32 outputs of the public API against the f64 reference: one f32 rounding of the
    /// result (2^-24 relative) plus the rounding of intermediates stored as f32 between ops,
    /// a few ulps; 1e-5 relative leaves a margin of ~100 ulps.
    pub const F32_OUTPUT: Tolerance = Tolerance {
        rel: 1e-5,
        abs: 1e-6,
    };

    /// Asserts every element, printing index, actual, expected, difference and tolerance.
    pub fn assert_close(&self, what: &str, actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let diff = (a - e).abs();
            let bound = self.abs + self.rel * e.abs();
            assert!(
                diff <= bound || (a.is_nan() && e.is_nan()),
                "{what}[{i}]: actual {a:e}, expected {e:e}, diff {diff:e} > tolerance {bound:e}"
            );
        }
    }
}

/// Widens f32 to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Central finite differences of `loss` around `x`, against `analytic`. Returns the normwise
/// relative error `max|a − fd| / max|fd|`, prints it, and fails above `bound`.
pub fn check_gradient(
    name: &str,
    x: &[f64],
    analytic: &[f64],
    bound: f64,
    mut loss: impl FnMut(&[f64]) -> f64,
) -> f64 {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let mut worst = 0.0f64;
    let mut scale = 0.0f64;
    let mut at = 0;
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        let h = 1e-6 * x[i].abs().max(1.0);
        xp[i] = x[i] + h;
        let up = loss(&xp);
        xp[i] = x[i] - h;
        let down = loss(&xp);
        xp[i] = x[i];
        let fd = (up - down) / (2.0 * h);
        scale = scale.max(fd.abs());
        let err = (fd - analytic[i]).abs();
        if err > worst {
            worst = err;
            at = i;
        }
    }
    let rel = worst / scale.max(1e-300);
    println!(
        "gradient {name}: {} entries, max relative error {rel:.2e} (at {at})",
        x.len()
    );
    assert!(
        scale > 0.0 || analytic.iter().all(|&a| a == 0.0),
        "{name}: finite differences are all zero but the analytic gradient is not"
    );
    assert!(
        rel <= bound,
        "{name}: relative error {rel:e} > {bound:e} at entry {at}: analytic {}",
        analytic[at]
    );
    rel
}

/// `Σ_i a_i·b_i`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
