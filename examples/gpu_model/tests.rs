//! The report's own checks: its op lists follow the layer, and the regression gate.

use std::path::Path;

use ultramem::interp_backend::Record;
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
use ultramem::model::compile::{cuobjdump, ptxas};
use ultramem::model::{Card, Model, Sampling};
use ultramem::{bf16, BackwardMode, Tensor};

use crate::cases::{self, LayerData, LayerTables, Recorder};
use crate::report;

/// Whether the model can run here: ptxas and cuobjdump (the committed report used both). Says
/// so loudly when it cannot, and fails where CI requires ptxas.
fn tools() -> bool {
    let required = std::env::var("ULTRAMEM_REQUIRE_PTXAS").is_ok_and(|v| v == "1");
    let missing: Vec<&str> = [
        ("ptxas", ptxas().is_some()),
        ("cuobjdump", cuobjdump().is_some()),
    ]
    .into_iter()
    .filter(|(_, found)| !found)
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required,
        "ULTRAMEM_REQUIRE_PTXAS=1 but {missing:?} not found (pip install nvidia-cuda-nvcc-cu12 \
         nvidia-cuda-cuobjdump)"
    );
    eprintln!("SKIPPED: the performance model needs {missing:?}");
    false
}

fn entries(records: &[Record]) -> Vec<&'static str> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Launch(l) => Some(l.entry),
            _ => None,
        })
        .collect()
}

#[test]
fn the_reports_layer_ops_launch_what_the_layer_launches() {
    if !tools() {
        return;
    }
    let mut model = Model::new(Card::h200());
    model.sampling = Sampling::none();
    let cfg = UltraMemV2Config::new(32, 16, 8, 4, 8, 16);
    let tokens = 3;
    // The layer itself, forward then backward, on a profiling device.
    let (params, _) = init_params(&cfg, InitScheme::ReleasedCode, 7).unwrap();
    let params = params.cast::<f32, bf16>();
    let recorded = model
        .record(
            |dev| {
                let layer = UltraMemV2Layer::<bf16>::new(dev, &cfg, &params)?;
                let x = Tensor::from_vec(dev, &[tokens, 32], vec![0.5f32; tokens * 32])?;
                let dout = Tensor::from_vec(dev, &[tokens, 32], vec![1.0f32; tokens * 32])?;
                Ok((layer, x, dout))
            },
            |_, (layer, x, dout)| {
                let fwd = layer.forward(x)?;
                layer.backward(x, &fwd.cache, dout, BackwardMode::Deterministic)?;
                Ok(())
            },
        )
        .unwrap();
    let layer_entries = entries(&recorded.records);
    // The report's op list at the same shape.
    let models = [model];
    let mut rec = Recorder::new(&models, report::LAYER, tokens);
    let tables = LayerTables::<bf16>::new(&cfg);
    cases::ultramem_v2_layer(&mut rec, &LayerData::new(&cfg, &tables, tokens, 1), 2).unwrap();
    let report_entries: Vec<&str> = rec
        .results
        .iter()
        .flat_map(|per_model| per_model[0].prediction.launches().map(|l| l.entry))
        .collect();
    assert!(!layer_entries.is_empty());
    assert_eq!(report_entries, layer_entries);
}

#[test]
fn predictions_at_the_paper_shapes_are_no_slower_than_the_committed_report() {
    if !tools() {
        return;
    }
    // Every paper shape at T = 1 and 64, both cards (the interpreter runs once for both). T = 4096
    // takes about 5 minutes in this debug build, so `.ci/run` gates it with the release build
    // (`gpu_model --check`, the same comparison at every T).
    let models = [Model::new(Card::h200()), Model::new(Card::h100_sxm())];
    let reports = report::run(&models, &[1, 64], |line| eprintln!("{line}")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    for r in &reports {
        match report::check(r, &root) {
            Ok(summary) => println!("{summary}"),
            Err(e) => panic!("{e}"),
        }
    }
}
