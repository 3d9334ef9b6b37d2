//! Deferred checks (`Device::set_deferred_checks`): a layer's forward and backward run with no
//! host synchronisation, give bitwise the results of the immediate mode, and a bad input is
//! still reported — by `check_errors`, every failing op with the immediate mode's position and
//! index.

use crate::common::{device_tests, normals};
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
use ultramem::*;

/// Output and every gradient of one forward + backward (immediate checks), on the host.
fn layer_step(
    dev: &Device,
    layer: &UltraMemV2Layer,
    x: &Tensor<f32>,
    dout: &Tensor<f32>,
) -> Vec<Vec<f32>> {
    let fwd = layer.forward(x).unwrap();
    let g = layer
        .backward(x, &fwd.cache, dout, BackwardMode::Deterministic)
        .unwrap();
    dev.check_errors().unwrap();
    let g = g.to_host().unwrap();
    let mut all = vec![fwd.out.to_vec().unwrap(), g.dx.clone()];
    all.extend(g.params().iter().map(|(_, v)| v.to_vec()));
    all
}

fn check(dev: &Device) {
    let cfg = UltraMemV2Config::new(64, 32, 16, 8, 16, 32);
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 4).unwrap();
    let layer = UltraMemV2Layer::new(dev, &cfg, &p).unwrap();
    let x = Tensor::from_vec(dev, &[5, 64], normals(1, 5 * 64, 1.0)).unwrap();
    let dout = Tensor::from_vec(dev, &[5, 64], normals(2, 5 * 64, 1.0)).unwrap();
    let immediate = layer_step(dev, &layer, &x, &dout);

    dev.set_deferred_checks(true);
    let syncs = dev.host_syncs();
    let fwd = layer.forward(&x).unwrap();
    let grads = layer
        .backward(&x, &fwd.cache, &dout, BackwardMode::Deterministic)
        .unwrap();
    assert_eq!(
        dev.host_syncs(),
        syncs,
        "the layer's forward and backward waited for {dev} with deferred checks"
    );
    dev.check_errors().unwrap();
    let g = grads.to_host().unwrap();
    let mut deferred = vec![fwd.out.to_vec().unwrap(), g.dx.clone()];
    deferred.extend(g.params().iter().map(|(_, v)| v.to_vec()));
    assert_eq!(deferred, immediate, "deferred checks changed a result");

    // A bad row, then a good op: the error surfaces at check_errors, as in immediate mode.
    let table = Tensor::from_vec(dev, &[4, 2], normals(3, 8, 1.0)).unwrap();
    let rows = Tensor::from_vec(dev, &[2, 3], vec![0u32, 1, 2, 3, 9, 1]).unwrap();
    let w = Tensor::from_vec(dev, &[2, 3, 1], normals(4, 6, 1.0)).unwrap();
    let args = WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    };
    assert!(weighted_gather(&args).is_ok(), "queued, not checked");
    let fine = Tensor::from_vec(dev, &[1, 1], vec![3u32]).unwrap();
    let w1 = Tensor::from_vec(dev, &[1, 1, 1], vec![1.0f32]).unwrap();
    weighted_gather(&WeightedGatherArgs {
        rows: &fine,
        weights: &w1,
        table: &table,
    })
    .unwrap();
    drop(rows); // the queued check keeps its own copy of the indices
    let e = dev.check_errors().unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                op: "weighted_gather",
                arg: "rows",
                position: 4,
                index: 9,
                bound: 4,
            }
        ),
        "{e}"
    );
    dev.check_errors().unwrap(); // reported once

    // Two independent failing ops between a good one: both are reported, oldest first.
    let bad_row = Tensor::from_vec(dev, &[1, 1], vec![7u32]).unwrap();
    let bad_args = |rows| WeightedGatherArgs {
        rows,
        weights: &w1,
        table: &table,
    };
    assert!(weighted_gather(&bad_args(&bad_row)).is_ok(), "queued");
    weighted_gather(&bad_args(&fine)).unwrap();
    let other_table = Tensor::from_vec(dev, &[2, 2], normals(5, 4, 1.0)).unwrap();
    assert!(weighted_gather(&WeightedGatherArgs {
        rows: &fine,
        weights: &w1,
        table: &other_table,
    })
    .is_ok());
    match dev.check_errors().unwrap_err() {
        Error::Several { errors } => {
            let found: Vec<(i64, u64)> = errors
                .iter()
                .map(|e| match e {
                    Error::IndexOutOfRange { index, bound, .. } => (*index, *bound),
                    other => panic!("{other}"),
                })
                .collect();
            assert_eq!(found, [(7, 4), (3, 2)]);
        }
        e => panic!("expected both failures, got {e}"),
    }
    dev.check_errors().unwrap();

    // A non-finite query reaches the layer's top-k: reported by synchronize too.
    let mut bad = normals(1, 5 * 64, 1.0);
    bad[70] = f32::NAN;
    let xb = Tensor::from_vec(dev, &[5, 64], bad).unwrap();
    assert!(layer.forward(&xb).is_ok(), "queued, not checked");
    let e = dev.synchronize().unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                op: "tucker_topk",
                arg: "q",
                ..
            }
        ),
        "{e}"
    );
    dev.set_deferred_checks(false);
    assert!(layer.forward(&xb).is_err(), "immediate again");
}

// Each test opens a device of its own: deferred mode is per device, and the shared test device
// is used by the other tests at the same time, which expect their errors at once (a stress run
// with many proptest cases caught four of them seeing the deferred mode).
device_tests!(own, skip_every_host_sync_and_still_report_errors, |dev| {
    check(dev);
});
