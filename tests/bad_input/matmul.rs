//! `matmul`: inner sizes, ranks and addends; empty products are valid.

use ultramem::*;

use crate::zeros;

/// Valid inputs: `[2, 3] × [3, 5]`, neither transposed, no addend; an addend `[2, 5]` fits.
struct Valid {
    a: Tensor<f32>,
    b: Tensor<f32>,
    addend: Tensor<f32>,
}

fn valid() -> Valid {
    Valid {
        a: zeros(&[2, 3]),
        b: zeros(&[3, 5]),
        addend: zeros(&[2, 5]),
    }
}

impl Valid {
    fn args(&self) -> MatmulArgs<'_> {
        MatmulArgs {
            a: &self.a,
            b: &self.b,
            transpose_a: Transpose::No,
            transpose_b: Transpose::No,
            addend: None,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    assert_eq!(matmul(&base.args()).unwrap().shape(), &[2, 5]);
    let with_addend = MatmulArgs {
        addend: Some(&base.addend),
        ..base.args()
    };
    assert_eq!(matmul(&with_addend).unwrap().shape(), &[2, 5]);
}

#[test]
fn rejects_b_whose_rows_disagree_with_a_columns() {
    let base = valid();
    let b = zeros::<f32>(&[4, 5]);
    let e = matmul(&MatmulArgs {
        b: &b,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "matmul",
                arg: "b",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_a_of_rank_one() {
    let base = valid();
    let vector = zeros::<f32>(&[3]);
    let e = matmul(&MatmulArgs {
        a: &vector,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "matmul",
                arg: "a",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_addend_of_other_shape_than_the_product() {
    let base = valid();
    let addend = zeros::<f32>(&[5, 2]);
    let e = matmul(&MatmulArgs {
        addend: Some(&addend),
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "matmul",
                arg: "addend",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn accepts_zero_rows_and_returns_an_empty_product() {
    let base = valid();
    // [0, 3] x [3, 5] is [0, 5].
    let a = zeros::<f32>(&[0, 3]);
    let out = matmul(&MatmulArgs {
        a: &a,
        ..base.args()
    })
    .unwrap();
    assert_eq!(out.shape(), &[0, 5]);
}

#[test]
fn accepts_zero_inner_size_and_returns_zeros() {
    let base = valid();
    // K = 0 in both factors: [2, 0] x [0, 5] is [2, 5] of zeros.
    let (a, b) = (zeros::<f32>(&[2, 0]), zeros::<f32>(&[0, 5]));
    let out = matmul(&MatmulArgs {
        a: &a,
        b: &b,
        ..base.args()
    })
    .unwrap();
    assert_eq!(out.to_vec().unwrap(), vec![0.0; 10]);
}
