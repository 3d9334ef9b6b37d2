//! The main job: build a small UltraMemV2 layer, run it on the best device found
//! (CUDA > wgpu > CPU), check it against the CPU reference, and count the bytes it moves next to
//! an MoE layer of the same size.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::process::ExitCode;

use ultramem::cost::MoeShape;
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
use ultramem::reference::ultramem_v2_layer;
use ultramem::rng::SplitMix64;
use ultramem::{BackwardMode, Device, Tensor};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `max |got − want| / max |want|` (0 for an all-zero reference that is matched exactly).
fn rel_diff(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, w)| m.max((f64::from(g) - w).abs()));
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn run() -> ultramem::Result<bool> {
    let (device, skipped) = Device::best_with_report();
    for (backend, why) in &skipped {
        println!("skipped {backend}: {why}");
    }
    println!("device: {device}");

    // D 256, Dk 128, n 128 (N = 16384 rows), m = K1 = 32, Dp 64, Dv 192, R = Cn = 2.
    let cfg = UltraMemV2Config::new(256, 128, 128, 32, 64, 192);
    let scheme = InitScheme::Paper {
        ffn_ratio: 4.0,
        layers: 16,
        calibration_tokens: 256,
    };
    let (params, init) = init_params(&cfg, scheme, 0)?;
    println!(
        "layer: D {} Dk {} n {} (N {}) m {} K1 {} Dp {} Dv {} R {} Cn {}; paper init: gain {:.3}, σ_s² {:.3}, σ_V {:.4}",
        cfg.d_model, cfg.dk, cfg.n, cfg.table_rows(), cfg.m, cfg.k1, cfg.dp, cfg.dv, cfg.rank, cfg.cores,
        init.gain, init.score_var, init.value_std
    );

    let tokens = 8;
    let x: Vec<f32> = SplitMix64::new(1)
        .normals(tokens * cfg.d_model, 1.0)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let dout: Vec<f32> = SplitMix64::new(2)
        .normals(tokens * cfg.d_model, 1.0)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    // The whole layer on the device: projections, norms, Tucker top-k, index map, PEER values,
    // forward and backward.
    let layer = UltraMemV2Layer::new(&device, &cfg, &params)?;
    let x_t = Tensor::from_slice(&device, &[tokens, cfg.d_model], &x)?;
    let dout_t = Tensor::from_slice(&device, &[tokens, cfg.d_model], &dout)?;
    let fwd = layer.forward(&x_t)?;
    let grads = layer
        .backward(&x_t, &fwd.cache, &dout_t, BackwardMode::Deterministic)?
        .to_host()?;
    let out = fwd.out.to_vec()?;
    println!("ran: the UltraMemV2 layer forward and backward on {device}");
    let checksum: f64 = out.iter().map(|&o| f64::from(o)).sum();
    println!(
        "output [{tokens}, {}]: checksum {checksum:.6e}",
        cfg.d_model
    );

    // The check: the f64 end-to-end reference. The device rounds to f32 between ops and sums in
    // f32 inside them, so errors near 1e-6 of each tensor's largest value are expected; 2e-4 is
    // the bound (a wrong term would be of order 1).
    let reference = ultramem_v2_layer::forward(&cfg, &params, &x)?;
    let ref_grads = ultramem_v2_layer::backward(&cfg, &params, &x, &reference.cache, &dout)?;
    let same_slots = fwd.cache.idx.to_vec()? == reference.cache.idx;
    let mut worst = ("out", rel_diff(&out, &reference.out));
    let pairs: [(&str, &[f32], &[f64]); 10] = [
        ("dx", &grads.dx, &ref_grads.dx),
        ("dW_q", &grads.w_q, &ref_grads.w_q),
        ("dγ_q", &grads.gamma_q, &ref_grads.gamma_q),
        ("dkeys", &grads.keys, &ref_grads.keys),
        ("dγ_k", &grads.gamma_k, &ref_grads.gamma_k),
        ("dcores", &grads.cores, &ref_grads.cores),
        ("dW_pre", &grads.w_pre, &ref_grads.w_pre),
        ("ddown", &grads.down, &ref_grads.down),
        ("dup", &grads.up, &ref_grads.up),
        ("dW_out", &grads.w_out, &ref_grads.w_out),
    ];
    for (name, got, want) in pairs {
        let d = rel_diff(got, want);
        if d > worst.1 {
            worst = (name, d);
        }
    }
    let ok = same_slots && worst.1 <= 2e-4;
    println!(
        "check vs CPU reference (f64): same {} slots chosen: {same_slots}; worst max|diff|/max|ref| {:.2e} ({}): {}",
        tokens * cfg.m,
        worst.1,
        worst.0,
        if ok { "PASS" } else { "FAIL" }
    );
    if device.backend() == ultramem::Backend::Cpu {
        println!("note: no GPU was found, so the layer ran on the CPU device (the per-op reference with f32 between ops)");
    }

    // Bytes per step from the cost model, next to an MoE layer with the same total parameters
    // (64 experts, top-8, expert width chosen to match), bf16 weights.
    let (dense, sparse) = cfg.param_count();
    let experts = 64;
    let ffn = ((dense + sparse) as f64 / (3 * cfg.d_model * experts) as f64)
        .round()
        .max(1.0) as usize;
    let moe = MoeShape {
        d_model: cfg.d_model,
        experts,
        top_k: 8,
        ffn,
        shared: 0,
    };
    println!("bytes per step (weights, bf16), memory layer ({} params) vs MoE 64×top-8, F_e {ffn} ({} params):", dense + sparse, moe.params());
    for b in [1, tokens, 64] {
        let (m, e) = (cfg.cost_shape().step_bytes(b, 2), moe.step_bytes(b, 2));
        println!(
            "  B = {b:>3}: {:>8.3} MB vs {:>8.3} MB  (MoE / memory {:.1}×)",
            m.weights() / 1e6,
            e.weights() / 1e6,
            e.weights() / m.weights()
        );
    }
    let paper = ultramem::cost::UltraMemV2Shape::paper_1b_7b()
        .step_bytes(1, 2)
        .weights();
    let olmoe = MoeShape::olmoe_1b_7b().step_bytes(1, 2).weights();
    println!("paper scale, B = 1: UltraMemV2-1B/7B layer {:.1} MB vs OLMoE-1B/7B layer {:.1} MB ({:.1}×)", paper / 1e6, olmoe / 1e6, olmoe / paper);
    Ok(ok)
}
