//! `weighted_gather` and its backward.

use proptest::prelude::*;
use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: T = 2, M = 2, Cn = 2, N = 3, Dv = 4; for the backward, a `dout` `[T, Dv]`.
pub(crate) struct Valid {
    rows: Tensor<u32>,
    weights: Tensor<f32>,
    table: Tensor<f32>,
    dout: Tensor<f32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        rows: cpu(&[2, 2], vec![0u32, 2, 1, 1]),
        weights: cpu(&[2, 2, 2], vec![1.0f32; 8]),
        table: cpu(&[3, 4], (0..12).map(|x| x as f32).collect()),
        dout: zeros(&[2, 4]),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> WeightedGatherArgs<'_, f32> {
        WeightedGatherArgs {
            rows: &self.rows,
            weights: &self.weights,
            table: &self.table,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    assert_eq!(weighted_gather(&base.args()).unwrap().shape(), &[2, 4]);
    weighted_gather_backward(&base.args(), &base.dout, BackwardMode::Atomic).unwrap();
    weighted_gather_backward(&base.args(), &base.dout, BackwardMode::Deterministic).unwrap();
}

/// `rows` with `N = 3` at position 2: row 2 is the last valid one.
fn rows_past_table_end() -> Tensor<u32> {
    cpu(&[2, 2], vec![0u32, 2, 3, 1])
}

#[test]
fn rejects_row_past_table_end() {
    let base = valid();
    let rows = rows_past_table_end();
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "rows",
                position: 2,
                index: 3,
                bound: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn backward_rejects_row_past_table_end() {
    let base = valid();
    let rows = rows_past_table_end();
    let e = weighted_gather_backward(
        &WeightedGatherArgs {
            rows: &rows,
            ..base.args()
        },
        &base.dout,
        BackwardMode::Atomic,
    )
    .unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { .. }), "{e}");
}

#[test]
fn rejects_value_width_not_divisible_by_cores() {
    let base = valid();
    let weights = zeros::<f32>(&[2, 2, 3]); // Cn = 3 does not divide Dv = 4
    let e = weighted_gather(&WeightedGatherArgs {
        weights: &weights,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { arg: "table", .. }),
        "{e}"
    );
}

#[test]
fn rejects_weights_for_other_slot_count() {
    let base = valid();
    let weights = zeros::<f32>(&[2, 3, 2]);
    let e = weighted_gather(&WeightedGatherArgs {
        weights: &weights,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "weights", .. }),
        "{e}"
    );
}

#[test]
fn rejects_zero_width_table() {
    let base = valid();
    let table = zeros::<f32>(&[3, 0]);
    let e = weighted_gather(&WeightedGatherArgs {
        table: &table,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { dim: "Dv", .. }), "{e}");
}

#[test]
fn rejects_table_with_more_rows_than_u32_indices_reach() {
    let base = valid();
    // A zero-width table has no elements, so 2^32 + 1 rows fit in memory; the row bound is
    // checked before the width, so the overflow is what is reported.
    let table = zeros::<f32>(&[(1 << 32) + 1, 0]);
    let e = weighted_gather(&WeightedGatherArgs {
        table: &table,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
}

#[test]
fn accepts_exactly_as_many_table_rows_as_u32_indices_reach() {
    let base = valid();
    // Exactly 2^32 rows is the largest table u32 indices address (checked on the sizes alone:
    // such a table does not fit in memory).
    let d = WeightedGatherDims {
        table_rows: 1 << 32,
        ..base.args().validate().unwrap()
    };
    d.check().unwrap();
}

#[test]
fn backward_rejects_dout_of_wrong_width() {
    let base = valid();
    let dout = zeros::<f32>(&[2, 5]);
    let e = weighted_gather_backward(&base.args(), &dout, BackwardMode::Deterministic).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "dout", .. }), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random shapes (zeros included), random rows (out of range included): every call returns
    /// `Ok` or a typed error, and never panics.
    #[test]
    fn never_panics_on_arbitrary_shapes(
        t in 0usize..3, m in 0usize..3, cn in 0usize..3, n in 0usize..4, dv in 0usize..5,
        m2 in 0usize..3, row_seed in any::<u64>()
    ) {
        let rows = cpu(&[t, m], (0..t * m).map(|i| ((row_seed >> (i % 60)) % 5) as u32).collect());
        let w = zeros::<f32>(&[t, m2, cn]);
        let table = zeros::<bf16>(&[n, dv]);
        let args = WeightedGatherArgs { rows: &rows, weights: &w, table: &table };
        let _ = weighted_gather(&args);
        let _ = weighted_gather_backward(&args, &zeros(&[t, dv]), BackwardMode::Atomic);
    }
}
