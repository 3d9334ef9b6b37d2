//! `tucker_topk` and its backward.

use proptest::prelude::*;
use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: T = 1, H = 1, R = 2, Dk = 2, n = 3, Cn = 2, m = 3, K1 by default; for the
/// backward, indices below n² = 9 and a `dscore` of the output's shape `[T, H, m, Cn]`.
pub(crate) struct Valid {
    q: Tensor<f32>,
    keys: Tensor<f32>,
    cores: Tensor<f32>,
    u: Tensor<f32>,
    v: Tensor<f32>,
    idx: Tensor<u32>,
    dscore: Tensor<f32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        q: cpu(&[1, 1, 2, 2, 2], (0..8).map(|x| x as f32 * 0.3).collect()),
        keys: cpu(
            &[1, 2, 2, 3, 2],
            (0..24).map(|x| (x as f32).sin()).collect(),
        ),
        cores: cpu(&[1, 2, 2, 2], vec![1.0f32, 0.2, 0.1, 0.5, 0.3, 0., 0., 0.3]),
        u: cpu(&[1, 2], vec![0.8f32, 0.6]),
        v: cpu(&[1, 2], vec![0.6f32, 0.8]),
        idx: cpu(&[1, 1, 3], vec![0u32, 4, 8]),
        dscore: zeros(&[1, 1, 3, 2]),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> TuckerTopkArgs<'_, f32> {
        TuckerTopkArgs {
            q: &self.q,
            keys: &self.keys,
            cores: &self.cores,
            u: &self.u,
            v: &self.v,
            k1: None,
            m: 3,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    let out = tucker_topk(&base.args()).unwrap();
    assert_eq!(out.score.shape(), &[1, 1, 3, 2]);
    tucker_topk_backward(
        &base.args(),
        &out.idx,
        &out.score,
        BackwardMode::Deterministic,
    )
    .unwrap();
    tucker_topk_backward(
        &base.args(),
        &base.idx,
        &base.dscore,
        BackwardMode::Deterministic,
    )
    .unwrap();
}

#[test]
fn rejects_m_larger_than_the_grid() {
    let base = valid();
    let e = tucker_topk(&TuckerTopkArgs {
        k1: Some(2),
        m: 5,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "m",
                requested: 5,
                available: 4,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_stage_one_width_past_n() {
    let base = valid();
    let e = tucker_topk(&TuckerTopkArgs {
        k1: Some(4),
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::TooManySelected { what: "K1", .. }),
        "{e}"
    );
}

#[test]
fn rejects_cores_of_other_rank() {
    let base = valid();
    let cores = zeros::<f32>(&[1, 2, 3, 3]);
    let e = tucker_topk(&TuckerTopkArgs {
        cores: &cores,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "cores", .. }),
        "{e}"
    );
}

#[test]
fn rejects_proxy_of_wrong_shape() {
    let base = valid();
    let u = zeros::<f32>(&[1, 3]);
    let e = tucker_topk(&TuckerTopkArgs {
        u: &u,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "u", .. }), "{e}");
}

#[test]
fn rejects_non_finite_core() {
    let base = valid();
    let mut data = base.cores.to_vec().unwrap();
    data[1] = f32::NAN;
    let cores = cpu(base.cores.shape(), data);
    let e = tucker_topk(&TuckerTopkArgs {
        cores: &cores,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "cores",
                position: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_non_finite_proxy() {
    let base = valid();
    let mut data = base.v.to_vec().unwrap();
    data[0] = f32::INFINITY;
    let v = cpu(base.v.shape(), data);
    let e = tucker_topk(&TuckerTopkArgs {
        v: &v,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "v",
                position: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn backward_rejects_index_past_grid() {
    let base = valid();
    let idx = cpu(base.idx.shape(), vec![0u32, 9, 8]); // n² = 9
    let e = tucker_topk_backward(
        &base.args(),
        &idx,
        &base.dscore,
        BackwardMode::Deterministic,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                index: 9,
                bound: 9,
                ..
            }
        ),
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
        k1 in 0usize..6, r in 0usize..3, cn in 0usize..3, h2 in 0usize..3
    ) {
        let q = zeros::<f32>(&[t, h, 2, r, dk]);
        let keys = zeros::<f32>(&[h2, 2, r, n, dk]);
        let cores = zeros::<f32>(&[h, cn, r, r]);
        let uv = zeros::<f32>(&[h, r]);
        let args = TuckerTopkArgs { q: &q, keys: &keys, cores: &cores, u: &uv, v: &uv, k1: Some(k1), m: k };
        let _ = tucker_topk(&args);
        let _ = tucker_topk_backward(&args, &zeros(&[t, h, k]), &zeros(&[t, h, k, cn]), BackwardMode::Deterministic);
        let _ = tucker_topk(&TuckerTopkArgs { k1: None, ..args });
    }
}

#[test]
fn m_zero_names_m_not_the_k1_it_defaults() {
    let base = valid();
    let e = tucker_topk(&TuckerTopkArgs {
        m: 0,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ZeroSized {
                arg: "m",
                dim: "m",
                ..
            }
        ),
        "{e}"
    );
}
