//! `peer_ffn` forward and backward (both modes) on the GPUs against the CPU reference.
//!
//! Tolerance, argued from f32: every output is a chain of f32 sums and products, so its error
//! is at most γ_K ≈ K·u times the same chain run on absolute values, S (the reference with
//! φ = identity on |inputs|: |φ(x)| ≤ |x| and |φ'(x)| ≤ 1.13 for every φ here), where K counts
//! the roundings along the chain: α sums Dp terms, dw sums Dv/Cn, the output sums M, a table
//! gradient sums up to T·M. The bound is (2·(K + 4)·u + a)·S, with a = 4e-6 for GELU and SiLU
//! (the kernels' erf, |error| < 1.5e-7, and hardware exp/reciprocal approximations) and 0 else.

use crate::common::{assert_within, device_proptests, device_tests, host, on, table_of, U32};
use proptest::prelude::*;
use ultramem::reference::peer_ffn as reference;
use ultramem::*;

#[derive(Clone, Debug)]
pub struct Case {
    d: PeerFfnDims,
    act: Activation,
    rows: Vec<u32>,
    s: Vec<f64>,
    z: Vec<f64>,
    down: Vec<f64>,
    up: Vec<f64>,
    dout: Vec<f64>,
}

fn case() -> impl Strategy<Value = Case> {
    let act = prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        Just(Activation::Gelu),
        Just(Activation::Silu)
    ];
    (
        0usize..4,
        1usize..6,
        1usize..3,
        prop_oneof![1usize..9, 126usize..132],
        prop_oneof![1usize..7, 127usize..131],
        1usize..30,
        act,
    )
        .prop_flat_map(|(t, m, cn, width, dp, n, act)| {
            let d = PeerFfnDims {
                tokens: t,
                slots: m,
                cores: cn,
                table_rows: n,
                dp,
                dv: cn * width,
            };
            let row = prop_oneof![6 => 0..n as u32, 1 => Just(n as u32 - 1)];
            let v = |len: usize| proptest::collection::vec(-2.0f64..2.0, len);
            (
                Just(d),
                Just(act),
                proptest::collection::vec(row, t * m),
                v(t * m * cn),
                v(t * dp),
                v(n * dp),
                v(n * d.dv),
                v(t * d.dv),
            )
        })
        .prop_map(|(d, act, rows, s, z, down, up, dout)| Case {
            d,
            act,
            rows,
            s,
            z,
            down,
            up,
            dout,
        })
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

type Grads = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// What one run produced: forward output, `(dz, dscores, ddown, dup)` per backward mode, and a
/// second deterministic run.
struct Outputs {
    out: Vec<f64>,
    grads: Vec<(BackwardMode, Grads)>,
    again: Grads,
}

#[allow(clippy::too_many_arguments, reason = "one slice per tensor of the op")]
fn run<V: Float>(
    dev: &Device,
    d: &PeerFfnDims,
    act: Activation,
    rows: &[u32],
    s: &[f32],
    z: &[f32],
    down: &[V],
    up: &[V],
    dout: &[f32],
) -> ultramem::Result<Outputs> {
    let modes = [BackwardMode::Deterministic, BackwardMode::Atomic];
    let rows_t = on(dev, &[d.tokens, d.slots], rows);
    let s_t = on(dev, &[d.tokens, d.slots, d.cores], s);
    let z_t = on(dev, &[d.tokens, d.dp], z);
    let down_t = on(dev, &[d.table_rows, d.dp], down);
    let up_t = on(dev, &[d.table_rows, d.dv], up);
    let dout_t = on(dev, &[d.tokens, d.dv], dout);
    let args = PeerFfnArgs {
        rows: &rows_t,
        scores: &s_t,
        z: &z_t,
        down: &down_t,
        up: &up_t,
        activation: act,
    };
    let out = host(&peer_ffn(&args)?);
    let grads_of = |mode| -> ultramem::Result<Grads> {
        let g = peer_ffn_backward(&args, &dout_t, mode)?;
        Ok((host(&g.dz), host(&g.dscores), host(&g.ddown), host(&g.dup)))
    };
    let grads = modes
        .iter()
        .map(|&m| Ok((m, grads_of(m)?)))
        .collect::<ultramem::Result<_>>()?;
    Ok(Outputs {
        out,
        grads,
        again: grads_of(BackwardMode::Deterministic)?,
    })
}

fn check_dtype<V: Float>(dev: &Device, c: &Case) -> std::result::Result<(), TestCaseError> {
    let d = c.d;
    let (down, up): (Vec<V>, Vec<V>) = (table_of(&c.down), table_of(&c.up));
    let (dv, uv) = (widen_t(&down), widen_t(&up));
    let (s32, z32, g32) = (f32s(&c.s), f32s(&c.z), f32s(&c.dout));
    let (s, z, g) = (widen(&s32), widen(&z32), widen(&g32));
    if c.act == Activation::Relu {
        // ReLU' jumps at 0: keep α clear of it by more than f32 error.
        for (slot, &r) in c.rows.iter().enumerate() {
            let t = slot / d.slots;
            let (a, a_abs) = (0..d.dp).fold((0.0, 0.0), |(a, b), e| {
                let p = dv[r as usize * d.dp + e] * z[t * d.dp + e];
                (a + p, b + p.abs())
            });
            prop_assume!(a.abs() > 1e-4 * a_abs || a_abs == 0.0);
        }
    }
    let got = run(dev, &d, c.act, &c.rows, &s32, &z32, &down, &up, &g32)
        .unwrap_or_else(|e| panic!("{} {:?}: {e}", dev, V::DTYPE));
    let approx = if matches!(c.act, Activation::Gelu | Activation::Silu) {
        4e-6
    } else {
        0.0
    };
    let bound = |scale: &[f64], k: usize| -> Vec<f64> {
        scale
            .iter()
            .map(|x| (2.0 * (k + 4) as f64 * U32 + approx) * x + 1e-30)
            .collect()
    };
    let (dp, slice, tm) = (d.dp, d.dv / d.cores, d.tokens * d.slots);
    let id = Activation::Identity;
    let what = |name: &str| format!("{name} {:?} {:?} on {}", V::DTYPE, c.act, dev);

    let want = reference::forward(&d, c.act, &c.rows, &s, &z, &dv, &uv).unwrap();
    let scale =
        reference::forward(&d, id, &c.rows, &abs(&s), &abs(&z), &abs(&dv), &abs(&uv)).unwrap();
    assert_within(
        &what("forward"),
        &got.out,
        &want,
        &bound(&scale, dp + d.slots),
    );

    let want = reference::backward(&d, c.act, &c.rows, &s, &z, &dv, &uv, &g).unwrap();
    let scale = reference::backward(
        &d,
        id,
        &c.rows,
        &abs(&s),
        &abs(&z),
        &abs(&dv),
        &abs(&uv),
        &abs(&g),
    )
    .unwrap();
    for (mode, (dz, ds, ddown, dup)) in &got.grads {
        let what = |name: &str| format!("{name} {mode:?} {:?} {:?} on {}", V::DTYPE, c.act, dev);
        assert_within(
            &what("dz"),
            dz,
            &want.dz,
            &bound(&scale.dz, dp + slice + d.slots),
        );
        assert_within(
            &what("dscores"),
            ds,
            &want.dscores,
            &bound(&scale.dscores, dp + slice),
        );
        assert_within(
            &what("ddown"),
            ddown,
            &want.ddown,
            &bound(&scale.ddown, dp + slice + tm),
        );
        assert_within(&what("dup"), dup, &want.dup, &bound(&scale.dup, dp + tm));
    }
    let (_, first) = &got.grads[0];
    let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    prop_assert!(
        same(&got.again.0, &first.0)
            && same(&got.again.2, &first.2)
            && same(&got.again.3, &first.3),
        "deterministic backward differs between runs"
    );
    Ok(())
}

fn widen_t<V: Float>(v: &[V]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn check(dev: &Device, c: &Case) -> std::result::Result<(), TestCaseError> {
    check_dtype::<f32>(dev, c)?;
    check_dtype::<f16>(dev, c)?;
    check_dtype::<bf16>(dev, c)
}

fn check_bad_row(dev: &Device) {
    let rows = [0u32, 3, 7];
    let (s, z, table, dout) = (
        [1.0f32; 3],
        [1.0f32; 2],
        [f16::from_f32(1.0); 6],
        [1.0f32; 2],
    );
    let expect = |e: Error| {
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    arg: "rows",
                    position: 1,
                    index: 3,
                    bound: 3,
                    ..
                }
            ),
            "{e}"
        )
    };
    let modes = [BackwardMode::Deterministic, BackwardMode::Atomic];
    let (rows_t, s_t, z_t, table_t) = (
        on(dev, &[1, 3], &rows),
        on(dev, &[1, 3, 1], &s),
        on(dev, &[1, 2], &z),
        on(dev, &[3, 2], &table),
    );
    let args = PeerFfnArgs {
        rows: &rows_t,
        scores: &s_t,
        z: &z_t,
        down: &table_t,
        up: &table_t,
        activation: Activation::Gelu,
    };
    expect(peer_ffn(&args).unwrap_err());
    let dout_t = on(dev, &[1, 2], &dout);
    for mode in modes {
        expect(peer_ffn_backward(&args, &dout_t, mode).unwrap_err());
    }
}

device_proptests!(matches_reference, 48, c in case(), |dev| {
    check(dev, &c)?;
});

device_tests!(rejects_index_past_table_end, |dev| {
    check_bad_row(dev);
});
