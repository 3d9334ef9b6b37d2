//! `matmul` on the GPUs against the CPU reference.
//!
//! Tolerance: each output sums K f32 products in f32 (fma), so it is within
//! (K + 2)·2⁻²⁴·(Σ_k |a_mk b_kn| + |c0|) of the exact value (the classic γ_K bound for
//! recursive summation, plus the rounding of the addend and of the result); the reference is
//! exact to f64.

use crate::common::{assert_within, cuda, host, on, wgpu};
use crate::interp::Interp;
use crate::runner::Runner;
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
            let d = MatmulDims {
                m,
                n,
                k,
                transpose_a: ta,
                transpose_b: tb,
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
    let a = if d.transpose_a {
        [d.k, d.m]
    } else {
        [d.m, d.k]
    };
    let b = if d.transpose_b {
        [d.n, d.k]
    } else {
        [d.k, d.n]
    };
    (a, b)
}

fn run(r: Runner<'_>, c: &Case) -> Vec<f64> {
    let d = &c.d;
    match r {
        Runner::Device(dev) => {
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
        Runner::Interp => {
            let ip = Interp::new();
            let (a, b) = (ip.upload_pod(&c.a), ip.upload_pod(&c.b));
            let addend = c.addend.as_ref().map(|v| ip.upload_pod(v));
            let out = ultramem::gpu::matmul::forward(&ip, d, &a, &b, addend.as_ref()).unwrap();
            ip.read_f32(&out, d.m * d.n)
        }
    }
}

fn check(r: Runner<'_>, c: &Case) {
    let got = run(r, c);
    let want = ultramem::reference::matmul::forward(&c.d, &c.a, &c.b, c.addend.as_deref()).unwrap();
    let mag = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    let c0 = c.addend.as_deref().map(mag);
    let scale =
        ultramem::reference::matmul::forward(&c.d, &mag(&c.a), &mag(&c.b), c0.as_deref()).unwrap();
    let u = (c.d.k + 2) as f64 * 2f64.powi(-24);
    let bound: Vec<f64> = scale.iter().map(|s| u * s + 1e-30).collect();
    assert_within(
        &format!("matmul {:?} on {}", c.d, r.name()),
        &got,
        &want,
        &bound,
    );
}

proptest! {
    #![proptest_config(crate::common::cases(48))]

    #[test]
    fn matmul_matches_reference_on_wgpu(c in case()) {
        if let Some(dev) = wgpu() { check(Runner::Device(dev), &c); }
    }

    #[test]
    fn matmul_matches_reference_on_cuda(c in case()) {
        if let Some(dev) = cuda() { check(Runner::Device(dev), &c); }
    }

    #[test]
    fn matmul_matches_reference_in_ptx_interpreter(c in case()) {
        check(Runner::Interp, &c);
    }
}

/// The layer's three products at a scaled-down 1B/7B projection (`x Wᵀ`, `dY W`, `dYᵀ X`),
/// fixed, so every tile edge case of a real shape runs on every device.
#[test]
fn matmul_layer_products_match_reference_on_every_device() {
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
                transpose_a: false,
                transpose_b: true,
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
                transpose_a: false,
                transpose_b: false,
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
                transpose_a: true,
                transpose_b: false,
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
        check(Runner::Interp, &c);
        if let Some(dev) = wgpu() {
            check(Runner::Device(dev), &c);
        }
        if let Some(dev) = cuda() {
            check(Runner::Device(dev), &c);
        }
    }
}
