//! `rmsnorm` and its backward.

use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: `x[2, 4]`, `γ[4]`, ε = 1e-5, one copy of each row; for the backward, a `dy`
/// shaped like the output `[2, repeat·4] = [2, 4]`.
struct Valid {
    x: Tensor<f32>,
    gamma: Tensor<f32>,
    dy: Tensor<f32>,
}

fn valid() -> Valid {
    Valid {
        x: cpu(&[2, 4], (0..8).map(|x| x as f32 - 3.5).collect()),
        gamma: cpu(&[4], vec![1.0f32; 4]),
        dy: zeros(&[2, 4]),
    }
}

impl Valid {
    fn args(&self) -> RmsNormArgs<'_> {
        RmsNormArgs {
            x: &self.x,
            gamma: &self.gamma,
            eps: 1e-5,
            repeat: 1,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    assert_eq!(rmsnorm(&base.args()).unwrap().shape(), &[2, 4]);
    rmsnorm_backward(&base.args(), &base.dy).unwrap();
}

#[test]
fn rejects_gamma_of_other_width_than_x_rows() {
    let base = valid();
    let gamma = zeros::<f32>(&[3]);
    let e = rmsnorm(&RmsNormArgs {
        gamma: &gamma,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "rmsnorm",
                arg: "gamma",
                ..
            }
        ),
        "{e}"
    );
}

/// The base with `eps` is rejected as an invalid `eps`.
fn assert_eps_rejected(eps: f32) {
    let base = valid();
    let e = rmsnorm(&RmsNormArgs { eps, ..base.args() }).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "rmsnorm",
                arg: "eps",
                ..
            }
        ),
        "eps = {eps}: {e}"
    );
}

#[test]
fn rejects_zero_eps() {
    assert_eps_rejected(0.0);
}

#[test]
fn rejects_negative_eps() {
    assert_eps_rejected(-1.0);
}

#[test]
fn rejects_nan_eps() {
    assert_eps_rejected(f32::NAN);
}

#[test]
fn rejects_infinite_eps() {
    assert_eps_rejected(f32::INFINITY);
}

#[test]
fn rejects_zero_repeat() {
    let base = valid();
    let e = rmsnorm(&RmsNormArgs {
        repeat: 0,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { op: "rmsnorm", .. }), "{e}");
}

#[test]
fn backward_rejects_dy_not_shaped_like_the_repeated_output() {
    let base = valid();
    // With repeat = 2 the output, and so dy, is [2, 2·4]; the base's dy [2, 4] fits one copy.
    let e = rmsnorm_backward(
        &RmsNormArgs {
            repeat: 2,
            ..base.args()
        },
        &base.dy,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "rmsnorm",
                arg: "dy",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_scalar_input() {
    let base = valid();
    let scalar = zeros::<f32>(&[]);
    let e = rmsnorm(&RmsNormArgs {
        x: &scalar,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}
