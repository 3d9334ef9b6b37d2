//! `rmsnorm` forward and backward on the GPUs against the CPU reference.
//!
//! Tolerance (u = 2⁻²⁴): the f32 sum of squares is within (dim + 1)·u relative, so r within
//! (dim/2 + 3)·u and each y = γx/r within (dim/2 + 6)·u of |y|; bound (dim + 8)·u·|y|. The
//! backward's two terms can cancel, so dx is bounded by (dim + repeat + 12)·u times the sum of
//! their magnitudes, and dγ, a sum over chunks of those per-chunk terms, by
//! (chunks + dim + repeat + 12)·u times the sum of their magnitudes.

use crate::common::{assert_within, device_proptests, host, on};
use proptest::prelude::*;
use ultramem::reference::rmsnorm as reference;
use ultramem::*;

const EPS: f32 = 1e-5;

#[derive(Clone, Debug)]
struct Case {
    d: RmsNormDims,
    x: Vec<f32>,
    gamma: Vec<f32>,
    dy: Vec<f32>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![0usize..3, 3usize..40],
        prop_oneof![1usize..5, 5usize..200, Just(128), Just(129), Just(512)],
        1usize..4,
        any::<bool>(),
    )
        .prop_flat_map(|(chunks, dim, repeat, zero_chunk)| {
            let d = RmsNormDims {
                chunks,
                dim,
                repeat,
            };
            let x = proptest::collection::vec(
                prop_oneof![-3.0f32..3.0, -300.0f32..300.0, Just(0.0f32)],
                chunks * dim,
            )
            .prop_map(move |mut x| {
                // An all-zero row: r = sqrt(ε), the largest gain the norm ever applies.
                if zero_chunk && chunks > 0 {
                    x[..dim].iter_mut().for_each(|v| *v = 0.0);
                }
                x
            });
            (
                Just(d),
                x,
                proptest::collection::vec(-2.0f32..2.0, dim),
                proptest::collection::vec(-2.0f32..2.0, chunks * repeat * dim),
            )
                .prop_map(|(d, x, gamma, dy)| Case { d, x, gamma, dy })
        })
}

fn run(dev: &Device, c: &Case) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = &c.d;
    let x = on(dev, &[d.chunks, d.dim], &c.x);
    let gamma = on(dev, &[d.dim], &c.gamma);
    let dy = on(dev, &[d.chunks, d.repeat * d.dim], &c.dy);
    let args = RmsNormArgs {
        x: &x,
        gamma: &gamma,
        eps: EPS,
        repeat: d.repeat,
    };
    let y = rmsnorm(&args).unwrap();
    let g = rmsnorm_backward(&args, &dy).unwrap();
    (host(&y), host(&g.dx), host(&g.dgamma))
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn check(dev: &Device, c: &Case) {
    let d = &c.d;
    let (x, gamma, dy) = (widen(&c.x), widen(&c.gamma), widen(&c.dy));
    let eps = f64::from(EPS);
    let (y, dx, dgamma) = run(dev, c);
    let u = 2f64.powi(-24);
    let want_y = reference::forward_repeated(&x, &gamma, eps, d.repeat).unwrap();
    let bound: Vec<f64> = want_y
        .iter()
        .map(|w| (d.dim + 8) as f64 * u * w.abs() + 1e-30)
        .collect();
    assert_within(
        &format!("rmsnorm {d:?} forward on {}", dev),
        &y,
        &want_y,
        &bound,
    );

    let (want_dx, want_dgamma) =
        reference::backward_repeated(&x, &gamma, eps, d.repeat, &dy).unwrap();
    // Magnitudes of each term: |γ·dy|/r + |x|·Σ|γ·dy·x|/(dim·r³) per element, and |dy·x|/r
    // summed over chunks per column.
    let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<f64>>();
    let dy_sum_abs: Vec<f64> = abs(&dy)
        .chunks_exact(d.repeat * d.dim)
        .flat_map(|c| (0..d.dim).map(move |i| (0..d.repeat).map(|j| c[j * d.dim + i]).sum::<f64>()))
        .collect();
    let mut dx_scale = Vec::with_capacity(x.len());
    let mut dg_scale = vec![0.0; d.dim];
    for (g, row) in x.chunks_exact(d.dim.max(1)).enumerate() {
        let r = reference::rms(row, eps);
        let dys = &dy_sum_abs[g * d.dim..(g + 1) * d.dim];
        let s: f64 = (0..d.dim).map(|i| (gamma[i] * dys[i] * row[i]).abs()).sum();
        for i in 0..d.dim {
            dx_scale.push(
                (gamma[i] * dys[i]).abs() / r + row[i].abs() * s / (d.dim as f64 * r * r * r),
            );
            dg_scale[i] += (dys[i] * row[i]).abs() / r;
        }
    }
    let k = (d.dim + d.repeat + 12) as f64 * u;
    let bound: Vec<f64> = dx_scale.iter().map(|s| k * s + 1e-30).collect();
    assert_within(
        &format!("rmsnorm {d:?} dx on {}", dev),
        &dx,
        &want_dx,
        &bound,
    );
    let k = (d.chunks + d.dim + d.repeat + 12) as f64 * u;
    let bound: Vec<f64> = dg_scale.iter().map(|s| k * s + 1e-30).collect();
    assert_within(
        &format!("rmsnorm {d:?} dgamma on {}", dev),
        &dgamma,
        &want_dgamma,
        &bound,
    );
}

device_proptests!(matches_reference, 48, c in case(), |dev| {
    check(dev, &c);
});
