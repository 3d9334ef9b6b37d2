//! Memory layer vs MoE: times one forward step of each over a sweep of batch sizes on the best
//! device (or the one asked for), next to the cost model's bytes and FLOPs and the device's
//! measured copy bandwidth; prints the table and writes `report.csv`, `report.svg` (bytes and
//! time per token vs batch size) and `report.txt`.
//!
//! ```text
//! cargo run --release --example memory_vs_moe -- [--device best|cpu|wgpu|cuda]
//!     [--shape paper|scaled] [--batches 1,2,4,...] [--dist uniform|zipf:S]
//!     [--min-time-ms MS] [--out DIR]
//! cargo run --release --example memory_vs_moe -- --model-only [--shape paper|scaled]
//! cargo run --release --example memory_vs_moe -- --single-step ultramem_v2|moe --batches B
//! ```
//!
//! `--model-only` prints the cost model's table (no device). `--single-step` runs one forward of
//! one layer and nothing else, for a profiler that sums DRAM traffic over the process (the GPU
//! check runs it under `ncu`).
//!
//! Defaults: the paper's pair (UltraMemV2-1B/7B vs OLMoE-1B/7B, bf16) over B = 1…4096 on CUDA;
//! elsewhere the pair scaled by 8 in width (`sweep::SweepConfig::scaled`) over B = 1…64, since
//! the CPU reference and software Vulkan would take hours at the paper's shape. Output goes to
//! `target/memory_vs_moe/` unless `--out` says otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod plot;
mod sweep;
#[cfg(test)]
mod tests;

use sweep::{run_sweep, IndexDist, SweepConfig};
use ultramem::{Backend, Device};

struct Options {
    device: String,
    shape: Option<String>,
    batches: Option<Vec<usize>>,
    dist: IndexDist,
    min_time: Option<Duration>,
    out: PathBuf,
    model_only: bool,
    single_step: Option<String>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        device: "best".into(),
        shape: None,
        batches: None,
        dist: IndexDist::Uniform,
        min_time: None,
        out: PathBuf::from("target/memory_vs_moe"),
        model_only: false,
        single_step: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => o.device = value()?,
            "--shape" => o.shape = Some(value()?),
            "--batches" => {
                let list = value()?
                    .split(',')
                    .map(|b| b.trim().parse::<usize>().map_err(|e| format!("--batches {b}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                o.batches = Some(list);
            }
            "--dist" => {
                let v = value()?;
                o.dist = match v.strip_prefix("zipf:") {
                    Some(s) => IndexDist::Zipf(s.parse().map_err(|e| format!("--dist {v}: {e}"))?),
                    None if v == "uniform" => IndexDist::Uniform,
                    None => return Err(format!("--dist {v}: expected uniform or zipf:S")),
                };
            }
            "--min-time-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--min-time-ms: {e}"))?;
                o.min_time = Some(Duration::from_millis(ms));
            }
            "--out" => o.out = PathBuf::from(value()?),
            "--model-only" => o.model_only = true,
            "--single-step" => o.single_step = Some(value()?),
            "-h" | "--help" => {
                return Err("usage: memory_vs_moe [--device best|cpu|wgpu|cuda] [--shape paper|scaled] [--batches 1,2,...] [--dist uniform|zipf:S] [--min-time-ms MS] [--out DIR] [--model-only] [--single-step ultramem_v2|moe]".into())
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if o.model_only {
        let mut cfg = match o.shape.as_deref() {
            Some("scaled") => SweepConfig::scaled(),
            _ => SweepConfig::paper(),
        };
        if let Some(b) = o.batches {
            cfg.batches = b;
        }
        println!(
            "cost model, bf16 weights and activations, uniform routing: {:?} vs {:?}\n",
            cfg.memory.cost_shape(),
            cfg.moe
        );
        print!("{}", sweep::model_table(&cfg));
        return ExitCode::SUCCESS;
    }
    let device = match o.device.as_str() {
        "best" => {
            let (d, skipped) = Device::best_with_report();
            for (b, why) in skipped {
                println!("skipped {b}: {why}");
            }
            Ok(d)
        }
        "cpu" => Ok(Device::cpu()),
        "wgpu" => Device::wgpu(),
        "cuda" => Device::cuda(0),
        other => {
            eprintln!("--device {other}: expected best, cpu, wgpu or cuda");
            return ExitCode::from(2);
        }
    };
    let device = match device {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let paper = match o.shape.as_deref() {
        Some("paper") => true,
        Some("scaled") => false,
        Some(other) => {
            eprintln!("--shape {other}: expected paper or scaled");
            return ExitCode::from(2);
        }
        None => device.backend() == Backend::Cuda,
    };
    let mut cfg = if paper {
        SweepConfig::paper()
    } else {
        SweepConfig::scaled()
    };
    cfg.dist = o.dist;
    if let Some(b) = o.batches {
        cfg.batches = b;
    }
    if let Some(t) = o.min_time {
        cfg.min_time = t;
    }
    if let Some(layer) = &o.single_step {
        let b = cfg.batches.first().copied().unwrap_or(1);
        return match sweep::single_step(&device, &cfg, layer, b) {
            Ok(bytes) => {
                println!(
                    "single step: {layer} at B = {b} on {device}; model bytes {:.6e} (weights {:.6e})",
                    bytes.total(),
                    bytes.weights()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "memory layer {:?} vs MoE {:?}, batches {:?}, indices {}",
        cfg.memory.cost_shape(),
        cfg.moe,
        cfg.batches,
        cfg.dist
    );
    let report = match run_sweep(&device, &cfg, |line| println!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = report.table();
    println!("\n{table}");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&o.out)?;
        std::fs::write(o.out.join("report.csv"), report.to_csv())?;
        std::fs::write(o.out.join("report.svg"), report.to_svg())?;
        let args: Vec<String> = std::env::args().collect();
        std::fs::write(
            o.out.join("report.txt"),
            format!("command: {}\n\n{table}", args.join(" ")),
        )
    };
    match write() {
        Ok(()) => {
            println!(
                "wrote {0}/report.csv, {0}/report.svg, {0}/report.txt",
                o.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error writing {}: {e}", o.out.display());
            ExitCode::FAILURE
        }
    }
}
