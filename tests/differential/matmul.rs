//! `matmul` on the GPUs against the CPU reference.
//!
//! Tolerance: each output sums K f32 products in f32 (fma), so it is within
//! (K + 2)·2⁻²⁴·(Σ_k |a_mk b_kn| + |c0|) of the exact value (the classic γ_K bound for
//! recursive summation, plus the rounding of the addend and of the result); the reference is
//! exact to f64.

use crate::common::{assert_within, device_proptests, device_tests, host, on};
use proptest::prelude::*;
use ultramem::*;

#[derive(Clone, Debug)]
struct Case {
    d: MatmulDims,
    a: Vec<f32>,
    b: Vec<f32>,
    addend: Option<Vec<f32>>,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..4, 4usize..40, Just(16), Just(17), Just(33)]
}

fn values(len: usize) -> BoxedStrategy<Vec<f32>> {
    prop_oneof![
        proptest::collection::vec(-2.0f32..2.0, len),
        // Large magnitudes and exact zeros mixed in.
        proptest::collection::vec(prop_oneof![-1e4f32..1e4, Just(0.0f32), -1e-3f32..1e-3], len),
    ]
    .boxed()
}

fn case() -> impl Strategy<Value = Case> {
    (
        size(),
        size(),
        size(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(m, n, k, ta, tb, with_addend)| {
            let transpose = |t: bool| if t { Transpose::Yes } else { Transpose::No };
            let d = MatmulDims {
                m,
                n,
                k,
                transpose_a: transpose(ta),
                transpose_b: transpose(tb),
            };
            let addend = if with_addend {
                values(m * n).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            (Just(d), values(m * k), values(k * n), addend).prop_map(|(d, a, b, addend)| Case {
                d,
                a,
                b,
                addend,
            })
        })
}

fn shapes(d: &MatmulDims) -> ([usize; 2], [usize; 2]) {
    let a = if d.transpose_a.is_transposed() {
        [d.k, d.m]
    } else {
        [d.m, d.k]
    };
    let b = if d.transpose_b.is_transposed() {
        [d.n, d.k]
    } else {
        [d.k, d.n]
    };
    (a, b)
}

fn run(dev: &Device, c: &Case) -> Vec<f64> {
    let d = &c.d;
    let (sa, sb) = shapes(d);
    let (a, b) = (on(dev, &sa, &c.a), on(dev, &sb, &c.b));
    let addend = c.addend.as_ref().map(|v| on(dev, &[d.m, d.n], v));
    host(
        &matmul(&MatmulArgs {
            a: &a,
            b: &b,
            transpose_a: d.transpose_a,
            transpose_b: d.transpose_b,
            addend: addend.as_ref(),
        })
        .unwrap(),
    )
}

fn check(dev: &Device, c: &Case) {
    let got = run(dev, c);
    let want = ultramem::reference::matmul::forward(&c.d, &c.a, &c.b, c.addend.as_deref()).unwrap();
    let mag = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    let c0 = c.addend.as_deref().map(mag);
    let scale =
        ultramem::reference::matmul::forward(&c.d, &mag(&c.a), &mag(&c.b), c0.as_deref()).unwrap();
    let u = (c.d.k + 2) as f64 * 2f64.powi(-24);
    let bound: Vec<f64> = scale.iter().map(|s| u * s + 1e-30).collect();
    assert_within(&format!("matmul {:?} on {}", c.d, dev), &got, &want, &bound);
}

device_proptests!(matches_reference, 48, c in case(), |dev| {
    check(dev, &c);
});

/// The layer's three products at a scaled-down 1B/7B projection (`x Wᵀ`, `dY W`, `dYᵀ X`),
/// fixed, so every tile edge case of a real shape runs on every device.
fn check_layer_products(dev: &Device) {
    let (t, d_in, d_out) = (37usize, 96usize, 70usize);
    let mut rng = ultramem::rng::SplitMix64::new(21);
    let mut vals = |len: usize| -> Vec<f32> {
        rng.normals(len, 1.0)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    };
    let (x, w, dy) = (vals(t * d_in), vals(d_out * d_in), vals(t * d_out));
    let products = [
        // y = x Wᵀ
        (
            MatmulDims {
                m: t,
                n: d_out,
                k: d_in,
                transpose_a: Transpose::No,
                transpose_b: Transpose::Yes,
            },
            &x,
            &w,
        ),
        // dx = dY W
        (
            MatmulDims {
                m: t,
                n: d_in,
                k: d_out,
                transpose_a: Transpose::No,
                transpose_b: Transpose::No,
            },
            &dy,
            &w,
        ),
        // dW = dYᵀ X
        (
            MatmulDims {
                m: d_out,
                n: d_in,
                k: t,
                transpose_a: Transpose::Yes,
                transpose_b: Transpose::No,
            },
            &dy,
            &x,
        ),
    ];
    for (d, a, b) in products {
        let c = Case {
            d,
            a: a.clone(),
            b: b.clone(),
            addend: None,
        };
        check(dev, &c);
    }
}

device_tests!(layer_products_match_reference, |dev| {
    check_layer_products(dev);
});
