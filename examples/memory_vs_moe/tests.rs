//! The memory-vs-MoE report: its bytes and FLOPs columns are the cost model's, its CSV parses
//! back, its plot has one line per layer, and its index draws follow the stated distribution.

use std::time::Duration;

use crate::sweep::{draw, run_sweep, IndexDist, SweepConfig};
use ultramem::cost::MoeShape;
use ultramem::layer::UltraMemV2Config;
use ultramem::rng::SplitMix64;
use ultramem::{Device, Error};

fn tiny() -> SweepConfig {
    SweepConfig {
        memory: UltraMemV2Config::new(32, 16, 12, 4, 8, 16),
        moe: MoeShape {
            d_model: 32,
            experts: 8,
            top_k: 2,
            ffn: 16,
            shared: 0,
        },
        batches: vec![1, 3, 16],
        dist: IndexDist::Uniform,
        min_time: Duration::ZERO,
        seed: 5,
    }
}

#[test]
fn report_bytes_and_flops_columns_are_the_cost_model() {
    let cfg = tiny();
    let report = run_sweep(&Device::cpu(), &cfg, |_| {}).unwrap();
    assert_eq!(report.rows.len(), 3 * cfg.batches.len());
    let csv = report.to_csv();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (layer, batch, bytes, flops, seconds) = (
        col("layer"),
        col("batch"),
        col("model_bytes"),
        col("flops"),
        col("seconds"),
    );
    let mut seen = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let b: usize = f[batch].parse().unwrap();
        let got: f64 = f[bytes].parse().unwrap();
        let got_flops: f64 = f[flops].parse().unwrap();
        assert!(f[seconds].parse::<f64>().unwrap() > 0.0, "{line}");
        let (want, want_flops) = match f[layer] {
            "ultramem_v2" => {
                let s = cfg.memory.cost_shape();
                (s.step_bytes(b, 2).total(), s.flops_per_token() * b as f64)
            }
            "moe" => (
                cfg.moe.step_bytes(b, 2).total(),
                cfg.moe.flops_per_token() * b as f64,
            ),
            "ultramem_v2_values" => continue,
            other => panic!("unknown layer {other}"),
        };
        // The CSV prints 7 significant digits.
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "{line}: bytes {got} vs model {want}"
        );
        assert!(
            (got_flops - want_flops).abs() <= 1e-6 * want_flops,
            "{line}: FLOPs {got_flops} vs model {want_flops}"
        );
        seen += 1;
    }
    assert_eq!(seen, 2 * cfg.batches.len());
    let svg = report.to_svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 6, "3 layers × 2 panels");
    let table = report.table();
    assert!(table.contains("MoE/memory time"), "{table}");
}

#[test]
fn report_rejects_empty_batches_and_bad_zipf() {
    let mut cfg = tiny();
    cfg.batches.clear();
    assert!(matches!(
        run_sweep(&Device::cpu(), &cfg, |_| {}),
        Err(Error::InvalidArgument { arg: "batches", .. })
    ));
    let mut cfg = tiny();
    cfg.dist = IndexDist::Zipf(-1.0);
    assert!(matches!(
        run_sweep(&Device::cpu(), &cfg, |_| {}),
        Err(Error::InvalidArgument { arg: "dist", .. })
    ));
}

#[test]
fn draws_follow_the_stated_distribution() {
    let mut rng = SplitMix64::new(9);
    let n = 100;
    let count = 200_000;
    let mut hist = vec![0usize; n];
    for i in draw(&mut rng, IndexDist::Uniform, n, count) {
        hist[i as usize] += 1;
    }
    // Uniform: every bin within 5 standard deviations of count/n.
    let mean = count as f64 / n as f64;
    let sd = (mean * (1.0 - 1.0 / n as f64)).sqrt();
    assert!(
        hist.iter().all(|&h| (h as f64 - mean).abs() <= 5.0 * sd),
        "{hist:?}"
    );
    // Zipf(1): the most frequent row holds 1/H_n of the draws (H_100 ≈ 5.187), the second half.
    let mut hist = vec![0usize; n];
    for i in draw(&mut rng, IndexDist::Zipf(1.0), n, count) {
        hist[i as usize] += 1;
    }
    hist.sort_unstable_by(|a, b| b.cmp(a));
    let top = hist[0] as f64 / count as f64;
    let harmonic: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
    assert!((top - 1.0 / harmonic).abs() < 0.01, "top share {top}");
    let ratio = hist[0] as f64 / hist[1] as f64;
    assert!((ratio - 2.0).abs() < 0.1, "rank 1 / rank 2 = {ratio}");
}
