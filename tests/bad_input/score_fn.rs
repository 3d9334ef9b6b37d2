//! `score_fn` and its backward.

use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: scores `[T, H, k] = [1, 2, 3]` and a `dout` of the same shape.
pub(crate) struct Valid {
    score: Tensor<f32>,
    dout: Tensor<f32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        score: cpu(&[1, 2, 3], (0..6).map(|x| x as f32 * 0.5).collect()),
        dout: zeros(&[1, 2, 3]),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> ScoreFnArgs<'_> {
        ScoreFnArgs {
            score: &self.score,
            func: ScoreFn::Softmax,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    assert_eq!(score_fn(&base.args()).unwrap().shape(), &[1, 2, 3]);
    score_fn_backward(&base.args(), &base.dout).unwrap();
}

#[test]
fn rejects_scores_of_rank_two() {
    let base = valid();
    let score = zeros::<f32>(&[2, 3]);
    let e = score_fn(&ScoreFnArgs {
        score: &score,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "score", .. }),
        "{e}"
    );
}

#[test]
fn backward_rejects_dout_of_other_shape_than_the_scores() {
    let base = valid();
    let dout = zeros::<f32>(&[1, 2, 4]);
    let e = score_fn_backward(&base.args(), &dout).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "dout", .. }), "{e}");
}
