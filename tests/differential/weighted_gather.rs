//! `weighted_gather` forward and backward (both modes) on the GPUs against the CPU reference.
//!
//! Tolerance, argued from f32: the kernels read the same table values (bf16/f16 widen to f32
//! exactly) and sum K products in f32, in some order. Any order of K additions of products has
//! error at most γ_{K+1}·Σ|terms| ≈ (K+1)·2⁻²⁴·Σ|terms|, so each element's bound is
//! 2·(K+1)·u·S with S the same sum over absolute values (the reference run on |inputs|), K the
//! number of summed terms (M for the output, the slice width for dw, T·M for dtable).

use crate::common::{assert_within, device_proptests, device_tests, host, on, table_of, U32};
use proptest::prelude::*;
use ultramem::reference::weighted_gather as reference;
use ultramem::*;

#[derive(Clone, Debug)]
pub struct Case {
    pub d: WeightedGatherDims,
    pub rows: Vec<u32>,
    pub w: Vec<f64>,
    pub table: Vec<f64>,
    pub dout: Vec<f64>,
}

/// Odd sizes, T = 0, widths on both sides of the 128-thread chunk, duplicate rows within a
/// token, and the last valid row.
pub fn case() -> impl Strategy<Value = Case> {
    (
        0usize..5,
        1usize..7,
        1usize..4,
        prop_oneof![1usize..9, 60usize..70, 125usize..135],
        1usize..40,
    )
        .prop_flat_map(|(t, m, cn, width, n)| {
            let d = WeightedGatherDims {
                tokens: t,
                slots: m,
                cores: cn,
                table_rows: n,
                dv: cn * width,
            };
            let row = prop_oneof![6 => 0..n as u32, 1 => Just(n as u32 - 1), 1 => Just(0u32)];
            (
                Just(d),
                proptest::collection::vec(row, t * m),
                proptest::collection::vec(-4.0f64..4.0, t * m * cn),
                proptest::collection::vec(-4.0f64..4.0, n * cn * width),
                proptest::collection::vec(-4.0f64..4.0, t * cn * width),
            )
        })
        .prop_map(|(d, rows, w, table, dout)| Case {
            d,
            rows,
            w,
            table,
            dout,
        })
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn bound(scale: &[f64], terms: usize) -> Vec<f64> {
    scale
        .iter()
        .map(|s| 2.0 * (terms + 1) as f64 * U32 * s + 1e-30)
        .collect()
}

/// What one run produced: the forward output, the gradients of each backward mode, and a second
/// deterministic run.
struct Outputs {
    out: Vec<f64>,
    grads: Vec<(BackwardMode, Vec<f64>, Vec<f64>)>,
    again: (Vec<f64>, Vec<f64>),
}

fn run<V: Float>(
    dev: &Device,
    d: &WeightedGatherDims,
    rows: &[u32],
    w: &[f32],
    table: &[V],
    dout: &[f32],
) -> ultramem::Result<Outputs> {
    let modes = [BackwardMode::Deterministic, BackwardMode::Atomic];
    let rows_t = on(dev, &[d.tokens, d.slots], rows);
    let w_t = on(dev, &[d.tokens, d.slots, d.cores], w);
    let table_t = on(dev, &[d.table_rows, d.dv], table);
    let dout_t = on(dev, &[d.tokens, d.dv], dout);
    let args = WeightedGatherArgs {
        rows: &rows_t,
        weights: &w_t,
        table: &table_t,
    };
    let out = host(&weighted_gather(&args)?);
    let mut grads = Vec::new();
    for mode in modes {
        let g = weighted_gather_backward(&args, &dout_t, mode)?;
        grads.push((mode, host(&g.dweights), host(&g.dtable)));
    }
    let g = weighted_gather_backward(&args, &dout_t, BackwardMode::Deterministic)?;
    Ok(Outputs {
        out,
        grads,
        again: (host(&g.dweights), host(&g.dtable)),
    })
}

fn check_dtype<V: Float>(dev: &Device, c: &Case) -> std::result::Result<(), TestCaseError> {
    let d = c.d;
    let table: Vec<V> = table_of(&c.table);
    let tv: Vec<f64> = table.iter().map(|x| x.to_f64()).collect();
    let w32: Vec<f32> = c.w.iter().map(|&x| x as f32).collect();
    let g32: Vec<f32> = c.dout.iter().map(|&x| x as f32).collect();
    let (w, g) = (host_f32(&w32), host_f32(&g32));
    let got = run(dev, &d, &c.rows, &w32, &table, &g32)
        .unwrap_or_else(|e| panic!("{} {:?}: {e}", dev, V::DTYPE));

    let want = reference::forward(&d, &c.rows, &w, &tv).unwrap();
    let scale = reference::forward(&d, &c.rows, &abs(&w), &abs(&tv)).unwrap();
    assert_within(
        &format!("forward {:?} on {}", V::DTYPE, dev),
        &got.out,
        &want,
        &bound(&scale, d.slots),
    );

    let (want_dw, want_dt) = reference::backward(&d, &c.rows, &w, &tv, &g).unwrap();
    let (scale_dw, scale_dt) =
        reference::backward(&d, &c.rows, &abs(&w), &abs(&tv), &abs(&g)).unwrap();
    for (mode, dw, dt) in &got.grads {
        assert_within(
            &format!("dweights {mode:?} on {}", dev),
            dw,
            &want_dw,
            &bound(&scale_dw, d.dv / d.cores),
        );
        assert_within(
            &format!("dtable {mode:?} on {}", dev),
            dt,
            &want_dt,
            &bound(&scale_dt, d.tokens * d.slots),
        );
    }
    // The deterministic backward is bitwise reproducible.
    let first = &got.grads[0];
    prop_assert_eq!(first.0, BackwardMode::Deterministic);
    prop_assert!(got
        .again
        .0
        .iter()
        .zip(&first.1)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    prop_assert!(got
        .again
        .1
        .iter()
        .zip(&first.2)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    Ok(())
}

fn host_f32(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub fn check(dev: &Device, c: &Case) -> std::result::Result<(), TestCaseError> {
    check_dtype::<f32>(dev, c)?;
    check_dtype::<f16>(dev, c)?;
    check_dtype::<bf16>(dev, c)
}

/// Rows past the table (N = 5) are the typed error on the device too, forward and backward,
/// naming the lowest bad position and its row: `rows[T, M]` over a `[5, width]` bf16 table.
fn check_bad_rows(dev: &Device, (t, m, width): (usize, usize, usize), rows: &[u32], first: usize) {
    let (w, table, dout) = (
        vec![1.0f32; t * m],
        vec![bf16::from_f32(1.0); 5 * width],
        vec![1.0f32; t * width],
    );
    let want = rows[first];
    let expect = |e: Error| {
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    arg: "rows",
                    position,
                    index,
                    bound: 5,
                    ..
                } if position == first && index == i64::from(want)
            ),
            "{e}"
        )
    };
    let (rows_t, w_t, table_t) = (
        on(dev, &[t, m], rows),
        on(dev, &[t, m, 1], &w),
        on(dev, &[5, width], &table),
    );
    let args = WeightedGatherArgs {
        rows: &rows_t,
        weights: &w_t,
        table: &table_t,
    };
    expect(weighted_gather(&args).unwrap_err());
    let dout_t = on(dev, &[t, width], &dout);
    for mode in [BackwardMode::Deterministic, BackwardMode::Atomic] {
        expect(weighted_gather_backward(&args, &dout_t, mode).unwrap_err());
    }
}

/// One bad row, on the one-column path (width 3).
fn check_bad_row(dev: &Device) {
    check_bad_rows(dev, (2, 3, 3), &[0, 4, 1, 2, 5, 4], 4);
}

device_proptests!(matches_reference, 48, c in case(), |dev| {
    check(dev, &c)?;
});

device_tests!(rejects_index_past_table_end, |dev| {
    check_bad_row(dev);
});

/// Shapes that take the forward's 16-byte path (Dv and the core slice multiples of 8, so of 4
/// too): the 1B/7B value width (Dv 768, Cn 2, 128 slots at T = 1, split into 32 slot groups)
/// and small batches whose slot count is no multiple of the 4-slot step (4, 5, 10 and 3
/// groups: 5 is no multiple of the combine's 8-group step either).
fn vector_cases() -> Vec<Case> {
    let shapes = [
        (1usize, 128usize, 2usize, 384usize, 300usize),
        (1, 13, 2, 64, 40),
        (1, 19, 2, 64, 40),
        (3, 37, 1, 128, 50),
        (5, 10, 4, 8, 9),
    ];
    let mut rng = ultramem::rng::SplitMix64::new(41);
    let mut values = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|_| (rng.below(8001) as f64 - 4000.0) / 1000.0)
            .collect()
    };
    shapes
        .iter()
        .map(|&(t, m, cn, width, n)| {
            let d = WeightedGatherDims {
                tokens: t,
                slots: m,
                cores: cn,
                table_rows: n,
                dv: cn * width,
            };
            let mut pick = ultramem::rng::SplitMix64::new((t * 1000 + m) as u64);
            Case {
                d,
                rows: (0..t * m).map(|_| pick.below(n as u64) as u32).collect(),
                w: values(t * m * cn),
                table: values(n * cn * width),
                dout: values(t * cn * width),
            }
        })
        .collect()
}

device_tests!(matches_reference_on_the_vector_path, |dev| {
    for c in vector_cases() {
        check(dev, &c).unwrap_or_else(|e| panic!("{:?}: {e}", c.d));
    }
});

/// Bad rows in two slot groups of the 16-byte path (T 2, M 9: groups of 3 slots, 8 bf16 per
/// lane): the lowest position is reported, whichever group's block runs first.
fn check_bad_rows_in_slot_groups(dev: &Device) {
    let mut rows = vec![1u32; 18];
    rows[13] = 9;
    rows[7] = 5;
    check_bad_rows(dev, (2, 9, 16), &rows, 7);
}

device_tests!(rejects_bad_rows_in_any_slot_group, |dev| {
    check_bad_rows_in_slot_groups(dev);
});
