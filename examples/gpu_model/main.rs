//! The GPU performance model's report: every kernel of every op at the paper shapes, predicted
//! on an H200 or H100 by `ultramem::model`. **Predictions of a model, not measurements.**
//!
//! ```text
//! cargo run --release --example gpu_model -- [--card h200|h100|all] [--tokens 1,64,4096]
//!     [--out DIR] [--graph] [--check DIR]
//! cargo run --release --example gpu_model -- --measure [--tokens ...] [--out DIR]
//! cargo run --release --example gpu_model -- --measure-on cpu --tokens 1 --out DIR
//! ```
//!
//! Writes `report.txt` (tables), `launches.csv` (one row per kernel launch) and `ops.csv` (one
//! row per op) to `DIR/<date>-model-<card>/` (default `benches/results/`). `--check DIR`
//! compares with a committed report instead and exits non-zero when any launch is predicted
//! more than 10% slower (the regression gate; `tests.rs` runs the same comparison).
//! `--measure` runs the same ops on the CUDA device instead and writes their wall times to
//! `DIR/measured_ops.csv` (the GPU check runs it, also under `ncu` for per-kernel times and DRAM
//! bytes, and joins both with the committed predictions: `scripts/model_vs_measured.py`).

use std::path::PathBuf;
use std::process::ExitCode;

mod cases;
mod report;
#[cfg(test)]
mod tests;

use ultramem::model::{Card, Model};

struct Options {
    cards: Vec<Card>,
    tokens: Vec<usize>,
    out: PathBuf,
    graph: bool,
    check: Option<PathBuf>,
    measure: Option<String>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        cards: vec![Card::h200()],
        tokens: report::PAPER_TOKENS.to_vec(),
        out: PathBuf::from("benches/results"),
        graph: false,
        check: None,
        measure: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--card" => {
                let v = value()?;
                o.cards = if v == "all" {
                    vec![Card::h200(), Card::h100_sxm()]
                } else {
                    vec![Card::by_name(&v).ok_or(format!("--card {v}: expected h200, h100 or all"))?]
                };
            }
            "--tokens" => {
                o.tokens = value()?
                    .split(',')
                    .map(|t| t.trim().parse().map_err(|e| format!("--tokens {t}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--out" => o.out = PathBuf::from(value()?),
            "--graph" => o.graph = true,
            "--check" => o.check = Some(PathBuf::from(value()?)),
            "--measure" => o.measure = Some("cuda".into()),
            "--measure-on" => o.measure = Some(value()?),
            "--help" | "-h" => {
                return Err("usage: gpu_model [--card h200|h100|all] [--tokens 1,64,4096] \
                            [--out DIR] [--graph] [--check DIR] | --measure [--tokens ..] [--out DIR]"
                    .into())
            }
            other => return Err(format!("unknown argument {other}")),
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
    if let Some(on) = &o.measure {
        return measure(&o, on);
    }
    let models: Vec<Model> = o
        .cards
        .iter()
        .map(|card| {
            let mut m = Model::new(card.clone());
            m.graph = o.graph;
            m
        })
        .collect();
    let start = std::time::Instant::now();
    let reports = match report::run(&models, &o.tokens, |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("the model failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("predicted in {:.0} s", start.elapsed().as_secs_f64());
    for r in reports {
        if let Some(dir) = &o.check {
            match report::check(&r, dir) {
                Ok(summary) => println!("{summary}"),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
        match report::write(&r, &o.out) {
            Ok(dir) => {
                println!("{}", r.text());
                println!("written to {}", dir.display());
            }
            Err(e) => {
                eprintln!("writing the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `--measure`: the report's ops timed on the CUDA device (`--measure-on cpu|wgpu|cuda` picks
/// another, to try the path where there is no GPU).
fn measure(o: &Options, on: &str) -> ExitCode {
    let device = match on {
        "cuda" => ultramem::Device::cuda(0),
        "wgpu" => ultramem::Device::wgpu(),
        "cpu" => Ok(ultramem::Device::cpu()),
        other => {
            eprintln!("--measure-on {other}: expected cuda, wgpu or cpu");
            return ExitCode::from(2);
        }
    };
    let device = match device {
        Ok(d) => d,
        Err(e) => {
            eprintln!("--measure needs a {on} device: {e}");
            return ExitCode::FAILURE;
        }
    };
    let measured = match report::measure(&device, &o.tokens, |line| eprintln!("{line}")) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("measuring failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match report::write_measured(&measured, &format!("{:?}", device.backend()), &o.out) {
        Ok(path) => {
            println!(
                "measured {} ops; written to {}",
                measured.len(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("writing: {e}");
            ExitCode::FAILURE
        }
    }
}
