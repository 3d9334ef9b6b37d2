//! The UltraMemV2 layer wired from the public ops, with every sparse op on a GPU, against the
//! f64 end-to-end reference layer.

use crate::common::{cuda, wgpu};
use ultramem::layer::compose::forward_with_ops;
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::UltraMemV2Config;
use ultramem::reference::ultramem_v2_layer;
use ultramem::rng::SplitMix64;
use ultramem::Device;

fn check(dev: &Device) {
    let mut cfg = UltraMemV2Config::new(64, 32, 16, 16, 16, 48);
    cfg.heads = 2;
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 11).unwrap();
    let x: Vec<f32> = SplitMix64::new(12)
        .normals(9 * cfg.d_model, 1.0)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let got = forward_with_ops(dev, dev, &cfg, &p, &x).unwrap();
    assert!(
        got.values_device.same_as(dev),
        "the values ran on {}",
        got.values_device
    );
    let want = ultramem_v2_layer::forward(&cfg, &p, &x).unwrap().out;
    // f32 between ops and inside the kernels: ~1e-7 relative per stage; 1e-5 of max |o|.
    let scale = want.iter().fold(0.0f64, |m, o| m.max(o.abs()));
    for (i, (&g, &w)) in got.out.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-5 * scale,
            "o[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn layer_with_sparse_ops_on_wgpu_matches_reference_layer() {
    if let Some(dev) = wgpu() {
        check(dev);
    }
}

#[test]
fn layer_with_sparse_ops_on_cuda_matches_reference_layer() {
    if let Some(dev) = cuda() {
        check(dev);
    }
}
