//! `Tensor` constructors: data that disagrees with the shape, and shapes too large to count.

use ultramem::*;

use crate::cpu;

#[test]
fn the_valid_base_is_accepted() {
    let t = Tensor::from_vec(&Device::cpu(), &[2, 3], vec![0.0f32; 6]).unwrap();
    assert_eq!(t.shape(), &[2, 3]);
    Tensor::<f32>::zeros(&Device::cpu(), &[2, 3]).unwrap();
    cpu(&[2, 3], vec![0u32; 6]).reshape(&[3, 2]).unwrap();
}

#[test]
fn from_vec_rejects_data_of_wrong_length() {
    let e = Tensor::from_vec(&Device::cpu(), &[2, 3], vec![0.0f32; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferSize {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn zeros_rejects_shape_whose_element_count_overflows() {
    let e = Tensor::<f32>::zeros(&Device::cpu(), &[1 << 33, 1 << 33]).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
}

#[test]
fn reshape_rejects_shape_of_other_element_count() {
    let e = cpu(&[2, 3], vec![0u32; 6]).reshape(&[4, 2]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferSize {
                expected: 6,
                got: 8,
                ..
            }
        ),
        "{e}"
    );
}
