//! The reference functions given slices that disagree with their dims.

use ultramem::*;

/// Valid `weighted_gather` sizes: T = 2, M = 2, Cn = 1, N = 3, Dv = 2, and slices of them.
struct Valid {
    dims: WeightedGatherDims,
    rows: Vec<u32>,
    weights: Vec<f64>,
    table: Vec<f64>,
}

fn valid() -> Valid {
    Valid {
        dims: WeightedGatherDims {
            tokens: 2,
            slots: 2,
            cores: 1,
            table_rows: 3,
            dv: 2,
        },
        rows: vec![0, 1, 2, 0],
        weights: vec![1.0; 4],
        table: vec![0.0; 6],
    }
}

#[test]
fn the_valid_bases_are_accepted() {
    let base = valid();
    ultramem::reference::weighted_gather::forward(
        &base.dims,
        &base.rows,
        &base.weights,
        &base.table,
    )
    .unwrap();
    let layer = crate::layer::valid();
    let x = vec![0.0f32; layer.cfg.d_model];
    ultramem::reference::ultramem_v2_layer::forward(&layer.cfg, &layer.params, &x).unwrap();
}

#[test]
fn weighted_gather_rejects_rows_of_other_length_than_its_dims() {
    let base = valid();
    let e = ultramem::reference::weighted_gather::forward(
        &base.dims,
        &[0u32, 1, 2],
        &base.weights,
        &base.table,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferSize {
                arg: "rows",
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn weighted_gather_rechecks_its_dims() {
    let base = valid();
    // Dv = 3 does not split into Cn = 2 slices; the slices agree with these dims.
    let dims = WeightedGatherDims {
        dv: 3,
        cores: 2,
        ..base.dims
    };
    let e = ultramem::reference::weighted_gather::forward(
        &dims,
        &[0u32; 4],
        &[1.0f64; 8],
        &[0.0f64; 9],
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. }),
        "dims are re-checked: {e}"
    );
}

#[test]
fn ultramem_v2_layer_rejects_input_not_a_multiple_of_d_model() {
    let layer = crate::layer::valid();
    let x = [0.0f32; 7]; // D = 8
    let e =
        ultramem::reference::ultramem_v2_layer::forward(&layer.cfg, &layer.params, &x).unwrap_err();
    assert!(matches!(e, Error::BufferSize { arg: "x", .. }), "{e}");
}
