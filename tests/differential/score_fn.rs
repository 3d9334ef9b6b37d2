//! `score_fn` on the GPUs against the CPU reference.
//!
//! Tolerance: softmax is a max, a sum of k exponentials and a division. Each exp(x − max) is
//! within a few ulps of its f32 argument (the PTX uses ex2.approx, 2⁻²² relative; WGSL allows
//! 3 + 2·|x| ulps), and its argument, x − max scaled by log2(e), is itself rounded: a relative
//! error of about |x − max|·2⁻²⁴ in the exponential. So the values are within
//! (k + 8 + 2·span)·2⁻²² relative of the reference, where span is the largest |x − max| of the
//! token's scores, and the backward within twice that of its magnitude scale. The elementwise
//! functions (sigmoid's exp included) obey the same bound, which is far below a wrong formula's
//! error. A CI run found the span term missing (a softmax weight of 2.4e−15, exponent −33).

use crate::common::{assert_within, device_proptests, host, on};
use proptest::prelude::*;
use ultramem::reference::score_fn as reference;
use ultramem::*;

fn case() -> impl Strategy<Value = (ScoreFnDims, ScoreFn, Vec<f32>, Vec<f32>)> {
    let func = prop_oneof![
        Just(ScoreFn::Raw),
        Just(ScoreFn::Softmax),
        Just(ScoreFn::Relu),
        Just(ScoreFn::Sigmoid)
    ];
    (
        0usize..4,
        1usize..3,
        prop_oneof![1usize..9, 120usize..300],
        1usize..3,
        func,
    )
        .prop_flat_map(|(t, h, k, cn, f)| {
            let d = ScoreFnDims {
                tokens: t,
                heads: h,
                k,
                cores: cn,
            };
            let n = t * h * k * cn;
            (
                Just(d),
                Just(f),
                proptest::collection::vec(-20.0f32..20.0, n),
                proptest::collection::vec(-2.0f32..2.0, n),
            )
        })
}

fn run(dev: &Device, d: &ScoreFnDims, f: ScoreFn, x: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let shape = [d.tokens, d.heads, d.k, d.cores];
    let (xt, dt) = (on(dev, &shape, x), on(dev, &shape, dy));
    let args = ScoreFnArgs {
        score: &xt,
        func: f,
    };
    (
        host(&score_fn(&args).unwrap()),
        host(&score_fn_backward(&args, &dt).unwrap()),
    )
}

fn check(dev: &Device, d: &ScoreFnDims, f: ScoreFn, x: &[f32], dy: &[f32]) {
    let (y, g) = run(dev, d, f, x, dy);
    let want_y = reference::forward(d, f, x).unwrap();
    let want_g = reference::backward(d, f, x, dy).unwrap();
    // The span of each token-head's scores (all cores together: a conservative bound).
    let group = d.k * d.cores;
    let span: Vec<f64> = x
        .chunks(group.max(1))
        .flat_map(|row| {
            let hi = row.iter().fold(f32::MIN, |a, &b| a.max(b));
            let lo = row.iter().fold(f32::MAX, |a, &b| a.min(b));
            let s = f64::from(hi) - f64::from(lo);
            std::iter::repeat_n(
                s.max(f64::from(hi.abs()).max(f64::from(lo.abs()))),
                row.len(),
            )
        })
        .collect();
    let by = |v: &[f64]| -> Vec<f64> {
        v.iter()
            .zip(&span)
            .map(|(w, s)| (d.k as f64 + 8.0 + 2.0 * s) * 2f64.powi(-22) * w.abs() + 1e-30)
            .collect()
    };
    assert_within(
        &format!("{f:?} forward on {}", dev),
        &y,
        &want_y,
        &by(&want_y),
    );
    // The backward's terms can cancel: bound by |y|·(|dy| + Σ|y·dy|), the softmax VJP's scale.
    let scale: Vec<f64> = want_y
        .iter()
        .zip(dy)
        .map(|(w, &g)| w.abs() * (f64::from(g).abs() + 2.0) + f64::from(g).abs())
        .collect();
    assert_within(
        &format!("{f:?} backward on {}", dev),
        &g,
        &want_g,
        &by(&scale).iter().map(|b| 2.0 * b).collect::<Vec<_>>(),
    );
}

device_proptests!(matches_reference, 32, (d, f, x, dy) in case(), |dev| {
    check(dev, &d, f, &x, &dy);
});
