//! `moe_ffn` (given routing) on the GPUs against the CPU reference, f32/f16/bf16 weights.
//!
//! Tolerance (u = 2⁻²⁴, weights exact in the reference's f64 after rounding to their dtype):
//! the gate and up dot products a, b are within (D + 8)·u·A, (D + 8)·u·B of exact, with
//! A = Σ|w1||x|, B = Σ|w3||x|; silu(a)·b (|silu'| ≤ 1.1, |silu(a)| ≤ |a| ≤ A, exp within 2⁻²²)
//! is then within 2.2·(D + 16)·u·A·B. The down product adds (F + 8)·u·Σ|w2||h| on top of
//! Σ|w2|·δh, and the gated sum over k slots (k + 2)·u of its magnitude.

use crate::common::{assert_within, device_proptests, device_tests, host, on, table_of};
use proptest::prelude::*;
use ultramem::*;

#[derive(Clone, Debug)]
struct Case {
    d: MoeFfnDims,
    x: Vec<f64>,
    experts: Vec<u32>,
    gates: Vec<f64>,
    w1: Vec<f64>,
    w3: Vec<f64>,
    w2: Vec<f64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![0usize..3, 3usize..7],
        prop_oneof![1usize..9, 9usize..40],
        prop_oneof![1usize..9, 9usize..40],
        1usize..7,
        1usize..4,
    )
        .prop_flat_map(|(t, dm, f, e, k)| {
            let k = k.min(e);
            let d = MoeFfnDims {
                tokens: t,
                d_model: dm,
                ffn: f,
                experts: e,
                k,
            };
            let w = e * f * dm;
            (
                Just(d),
                proptest::collection::vec(-2.0f64..2.0, t * dm),
                // Repeats within a token are allowed: the entries are independent.
                proptest::collection::vec(0u32..e as u32, t * k),
                proptest::collection::vec(0.0f64..1.0, t * k),
                proptest::collection::vec(-1.0f64..1.0, w),
                proptest::collection::vec(-1.0f64..1.0, w),
                proptest::collection::vec(-1.0f64..1.0, w),
            )
                .prop_map(|(d, x, experts, gates, w1, w3, w2)| Case {
                    d,
                    x,
                    experts,
                    gates,
                    w1,
                    w3,
                    w2,
                })
        })
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn run<W: Float>(dev: &Device, c: &Case) -> ultramem::Result<Vec<f64>> {
    let d = &c.d;
    let (x, gates) = (f32s(&c.x), f32s(&c.gates));
    let (w1, w3, w2): (Vec<W>, Vec<W>, Vec<W>) =
        (table_of(&c.w1), table_of(&c.w3), table_of(&c.w2));
    let xt = on(dev, &[d.tokens, d.d_model], &x);
    let et = on(dev, &[d.tokens, d.k], &c.experts);
    let gt = on(dev, &[d.tokens, d.k], &gates);
    let w1t = on(dev, &[d.experts, d.ffn, d.d_model], &w1);
    let w3t = on(dev, &[d.experts, d.ffn, d.d_model], &w3);
    let w2t = on(dev, &[d.experts, d.d_model, d.ffn], &w2);
    let out = moe_ffn(&MoeFfnArgs {
        x: &xt,
        routing: MoeRouting::Explicit {
            experts: &et,
            gates: &gt,
        },
        w1: &w1t,
        w3: &w3t,
        w2: &w2t,
    })?;
    Ok(host(&out.out))
}

/// The error bound of each output element (see the module docs).
fn bounds<W: Float>(c: &Case) -> Vec<f64> {
    let d = &c.d;
    let (dm, f) = (d.d_model, d.ffn);
    let w = |v: &[f64]| -> Vec<f64> { table_of::<W>(v).iter().map(|x| x.to_f64()).collect() };
    let (w1, w3, w2) = (w(&c.w1), w(&c.w3), w(&c.w2));
    let x: Vec<f64> = f32s(&c.x).iter().map(|&v| f64::from(v)).collect();
    let u = 2f64.powi(-24);
    let mut bound = vec![0.0; d.tokens * dm];
    for (ent, &e) in c.experts.iter().enumerate() {
        let (t, e) = (ent / d.k, e as usize);
        let g = f64::from(c.gates[ent] as f32).abs();
        let xt = &x[t * dm..(t + 1) * dm];
        let mut dh = vec![0.0; f];
        let mut habs = vec![0.0; f];
        for i in 0..f {
            let row = (e * f + i) * dm;
            let a: f64 = (0..dm).map(|j| (w1[row + j] * xt[j]).abs()).sum();
            let b: f64 = (0..dm).map(|j| (w3[row + j] * xt[j]).abs()).sum();
            dh[i] = 2.2 * (dm + 16) as f64 * u * a * b;
            habs[i] = a * b;
        }
        for o in 0..dm {
            let row = (e * dm + o) * f;
            let prop: f64 = (0..f).map(|i| w2[row + i].abs() * dh[i]).sum();
            let mag: f64 = (0..f).map(|i| (w2[row + i] * habs[i]).abs()).sum();
            bound[t * dm + o] += g * (prop + (f + 8) as f64 * u * mag + (d.k + 2) as f64 * u * mag);
        }
    }
    bound.iter().map(|b| b + 1e-30).collect()
}

fn check_dtype<W: Float>(dev: &Device, c: &Case) {
    let got = run::<W>(dev, c).unwrap();
    let (w1, w3, w2): (Vec<W>, Vec<W>, Vec<W>) =
        (table_of(&c.w1), table_of(&c.w3), table_of(&c.w2));
    let want = ultramem::reference::moe_ffn::forward(
        &c.d,
        &f32s(&c.x),
        &c.experts,
        &f32s(&c.gates),
        &w1,
        &w3,
        &w2,
    )
    .unwrap();
    assert_within(
        &format!("moe_ffn {:?} {:?} on {}", c.d, W::DTYPE, dev),
        &got,
        &want,
        &bounds::<W>(c),
    );
}

fn check(dev: &Device, c: &Case) {
    check_dtype::<f32>(dev, c);
    check_dtype::<bf16>(dev, c);
    check_dtype::<f16>(dev, c);
}

device_proptests!(matches_reference, 32, c in case(), |dev| {
    check(dev, &c);
});

/// OLMoE's layer shape scaled down by 16 (D 128, F 64, 64 experts, top-8) at a batch where
/// tokens share experts: every run length from 1 up occurs.
fn check_scaled_olmoe(dev: &Device) {
    let mut rng = ultramem::rng::SplitMix64::new(17);
    let d = MoeFfnDims {
        tokens: 24,
        d_model: 128,
        ffn: 64,
        experts: 64,
        k: 8,
    };
    let w = d.experts * d.ffn * d.d_model;
    let c = Case {
        d,
        x: rng.normals(d.tokens * d.d_model, 1.0),
        experts: (0..d.tokens * d.k).map(|_| rng.below(16) as u32).collect(),
        gates: (0..d.tokens * d.k).map(|_| rng.uniform()).collect(),
        w1: rng.normals(w, 0.1),
        w3: rng.normals(w, 0.1),
        w2: rng.normals(w, 0.1),
    };
    check_dtype::<bf16>(dev, &c);
}

device_tests!(matches_reference_at_scaled_olmoe, |dev| {
    check_scaled_olmoe(dev);
});

/// An expert id past E is the reference's typed error on every device, at the first bad entry.
fn check_bad_expert(dev: &Device) {
    let d = MoeFfnDims {
        tokens: 3,
        d_model: 4,
        ffn: 5,
        experts: 4,
        k: 2,
    };
    let w = d.experts * d.ffn * d.d_model;
    let c = Case {
        d,
        x: vec![0.5; 12],
        experts: vec![0, 1, 3, 2, 9, 7],
        gates: vec![0.5; 6],
        w1: vec![0.1; w],
        w3: vec![0.1; w],
        w2: vec![0.1; w],
    };
    {
        let e = run::<f32>(dev, &c).unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "moe_ffn",
                    arg: "experts",
                    position: 4,
                    index: 9,
                    bound: 4
                }
            ),
            "{}: {e}",
            dev
        );
    }
}

device_tests!(rejects_expert_past_expert_count, |dev| {
    check_bad_expert(dev);
});
