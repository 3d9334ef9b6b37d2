//! The main job: build a small UltraMemV2 layer, run it on the best device found
//! (CUDA > wgpu > CPU), check it against the CPU reference, and count the bytes it moves next to
//! an MoE layer of the same size.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::process::ExitCode;

use ultramem::cost::MoeShape;
use ultramem::layer::compose::forward_with_ops;
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::UltraMemV2Config;
use ultramem::reference::ultramem_v2_layer;
use ultramem::rng::SplitMix64;
use ultramem::Device;

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
        cfg.d_model, cfg.dk, cfg.n, cfg.rows(), cfg.m, cfg.k1, cfg.dp, cfg.dv, cfg.rank, cfg.cores,
        init.gain, init.score_var, init.value_std
    );

    let tokens = 8;
    let x: Vec<f32> = SplitMix64::new(1)
        .normals(tokens * cfg.d_model, 1.0)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    // The sparse ops (Tucker top-k, index map, PEER values) on the device; the dense
    // projections on the host.
    let composed = forward_with_ops(&device, &device, &cfg, &params, &x)?;
    println!(
        "ran: top-k, index map and PEER values on {}",
        composed.values_device
    );
    let out = composed.out;
    let checksum: f64 = out.iter().map(|&o| f64::from(o)).sum();
    let abs_sum: f64 = out.iter().map(|&o| f64::from(o).abs()).sum();
    println!(
        "output [{tokens}, {}]: checksum {checksum:.6e}, sum|o| {abs_sum:.6e}",
        cfg.d_model
    );

    // The check: the f64 end-to-end reference. The op path rounds intermediates to f32, so a
    // relative error near 1e-7 is expected; 1e-5 of the largest output is the bound.
    let reference = ultramem_v2_layer::forward(&cfg, &params, &x)?;
    let scale = reference.out.iter().fold(0.0f64, |m, o| m.max(o.abs()));
    let max_diff = out
        .iter()
        .zip(&reference.out)
        .fold(0.0f64, |m, (&a, b)| m.max((f64::from(a) - b).abs()));
    let ok = max_diff <= 1e-5 * scale;
    println!(
        "check vs CPU reference (f64): max |diff| {max_diff:.3e} ({:.2e} of max |o|): {}",
        max_diff / scale,
        if ok { "PASS" } else { "FAIL" }
    );
    if composed.values_device.backend() == ultramem::Backend::Cpu {
        println!("note: no GPU was found, so the op path ran on the CPU reference itself and the check covers composition and f32 rounding only");
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
