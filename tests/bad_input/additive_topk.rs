//! `additive_topk` and its backward.

use proptest::prelude::*;
use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: T = 2, H = 1, Dk = 4, n = 3, k = 2 (so K1 = 2); for the backward, indices
/// below n² = 9 and a `dscore` of the output's shape `[T, H, k]`.
pub(crate) struct Valid {
    q: Tensor<f32>,
    keys: Tensor<f32>,
    idx: Tensor<u32>,
    dscore: Tensor<f32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        q: cpu(&[2, 1, 4], (0..8).map(|x| x as f32).collect()),
        keys: cpu(&[1, 2, 3, 2], (0..12).map(|x| x as f32 * 0.1).collect()),
        idx: cpu(&[2, 1, 2], vec![0u32, 4, 8, 1]),
        dscore: zeros(&[2, 1, 2]),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> AdditiveTopkArgs<'_, f32> {
        AdditiveTopkArgs {
            q: &self.q,
            keys: &self.keys,
            k: 2,
            k1: None,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    let out = additive_topk(&base.args()).unwrap();
    assert_eq!(out.idx.shape(), &[2, 1, 2]);
    additive_topk_backward(&base.args(), &out.idx, &out.score, BackwardMode::Atomic).unwrap();
    additive_topk_backward(&base.args(), &base.idx, &base.dscore, BackwardMode::Atomic).unwrap();
}

#[test]
fn rejects_query_of_wrong_rank() {
    let base = valid();
    let q = zeros::<f32>(&[2, 4]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "q", .. }), "{e}");
}

#[test]
fn rejects_keys_with_other_head_count() {
    let base = valid();
    let keys = zeros::<f32>(&[2, 2, 3, 2]);
    let e = additive_topk(&AdditiveTopkArgs {
        keys: &keys,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "keys", .. }), "{e}");
    assert!(
        e.to_string().contains("H=1"),
        "the message names the expected dimension: {e}"
    );
}

#[test]
fn rejects_keys_of_wrong_half_width() {
    let base = valid();
    let keys = zeros::<f32>(&[1, 2, 3, 3]);
    let e = additive_topk(&AdditiveTopkArgs {
        keys: &keys,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "keys", .. }), "{e}");
}

#[test]
fn rejects_k_larger_than_stage_one_width() {
    let base = valid();
    let e = additive_topk(&AdditiveTopkArgs {
        k: 3,
        k1: Some(2),
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "k",
                requested: 3,
                available: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_stage_one_width_past_n() {
    let base = valid();
    let e = additive_topk(&AdditiveTopkArgs {
        k1: Some(4),
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "K1",
                requested: 4,
                available: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_odd_query_width() {
    let base = valid();
    // Dk = 3 with keys of half width ⌊3/2⌋ = 1: the odd width is the only thing wrong.
    let q = zeros::<f32>(&[2, 1, 3]);
    let keys = zeros::<f32>(&[1, 2, 3, 1]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { arg: "q", .. }), "{e}");
}

#[test]
fn rejects_k_zero() {
    let base = valid();
    let e = additive_topk(&AdditiveTopkArgs {
        k: 0,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { dim: "k", .. }), "{e}");
}

#[test]
fn rejects_nan_query() {
    let base = valid();
    let mut data = base.q.to_vec().unwrap();
    data[6] = f32::NAN;
    let q = cpu(base.q.shape(), data);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "q",
                position: 6,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_n_whose_square_overflows_u32() {
    let base = valid();
    // n = 65537: ν = i·n + j reaches 65537² − 1 > u32::MAX.
    let keys = zeros::<f32>(&[1, 2, 65537, 2]);
    let e = additive_topk(&AdditiveTopkArgs {
        keys: &keys,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
}

#[test]
fn backward_rejects_index_past_grid() {
    let base = valid();
    let idx = cpu(base.idx.shape(), vec![0u32, 9, 8, 1]); // n² = 9
    let e =
        additive_topk_backward(&base.args(), &idx, &base.dscore, BackwardMode::Atomic).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 1,
                index: 9,
                bound: 9,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn backward_rejects_dscore_of_wrong_shape() {
    let base = valid();
    let dscore = zeros::<f32>(&[2, 1, 3]); // must be [T, H, k] = [2, 1, 2]
    let e =
        additive_topk_backward(&base.args(), &base.idx, &dscore, BackwardMode::Atomic).unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "dscore", .. }),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random shapes (zeros included) and selection widths: every call returns `Ok` or a typed
    /// error, and never panics.
    #[test]
    fn never_panics_on_arbitrary_shapes(
        t in 0usize..3, h in 0usize..3, dk in 0usize..5, n in 0usize..5, k in 0usize..6,
        k1 in 0usize..6, h2 in 0usize..3
    ) {
        let q = zeros::<f32>(&[t, h, dk]);
        let keys = zeros::<f32>(&[h2, 2, n, dk / 2]);
        let args = AdditiveTopkArgs { q: &q, keys: &keys, k, k1: Some(k1) };
        let _ = additive_topk(&args);
        let _ = additive_topk_backward(&args, &zeros(&[t, h, k]), &zeros(&[t, h, k]), BackwardMode::Atomic);
    }
}
