//! Runs the workloads, rolls them up, and writes or checks the report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ultramem::cost::{MoeShape, UltraMemV2Shape};
use ultramem::layer::UltraMemV2Config;
use ultramem::model::{Card, KernelMemory, LaunchPrediction, Model, Step};
use ultramem::{bf16, Device, Result};

use crate::cases::{self, LayerData, Measured, MoeData, OpResult, Pass, PkmShape, Recorder};

/// The token counts of the report.
pub const PAPER_TOKENS: [usize; 3] = [1, 64, 4096];

/// Workload names.
pub const LAYER: &str = "UltraMemV2-1B/7B";
pub const TOPK_227M: &str = "UltraMemV2-227M/1.2B top-k";
pub const PKM: &str = "PKM H4 n512 Dk512 k32";
pub const MOE: &str = "OLMoE-1B/7B";

/// A launch slower than the committed one by more than this fails the gate.
pub const GATE_SLOWDOWN: f64 = 1.10;

/// The copy kernel the report measures throughput against (the model's own best copy).
pub const COPY_PTX: &str = include_str!("../../tests/model_kernels/copy.ptx");

/// Everything the report holds.
pub struct Report {
    pub card: Card,
    pub graph: bool,
    pub tokens: Vec<usize>,
    pub ops: Vec<OpResult>,
    /// The model's best copy: a 16-byte-per-thread copy of 1 GiB, predicted.
    pub best_copy: LaunchPrediction,
    pub best_copy_bytes: f64,
}

impl Report {
    /// Bytes per second of the model's best copy (read + write over predicted time).
    pub fn best_copy_bytes_per_s(&self) -> f64 {
        self.best_copy_bytes / self.best_copy.prediction.seconds
    }
}

/// The model's prediction of the 16-byte copy over `bytes` bytes (read `bytes`, write `bytes`).
pub fn best_copy(model: &Model, bytes: usize) -> Result<LaunchPrediction> {
    let threads = 256u32;
    let n4 = bytes / 16;
    let blocks = n4.div_ceil(threads as usize) as u32;
    model.predict_kernel(
        "copy",
        COPY_PTX,
        "copy_v4",
        blocks,
        threads,
        |m: &mut KernelMemory| {
            let src = m.alloc(bytes);
            let dst = m.alloc(bytes);
            vec![
                src.to_le_bytes().to_vec(),
                dst.to_le_bytes().to_vec(),
                (n4 as u32).to_le_bytes().to_vec(),
            ]
        },
    )
}

/// Runs every workload at every token count, each into a recorder `recorder` makes for its
/// family and token count; returns the recorders in order (token count, then workload).
/// `workers` threads take the (token count, workload) jobs in turn: each job has its own
/// profiling devices, so they do not share state (a measuring run uses one).
fn workloads<'m>(
    tokens: &[usize],
    workers: usize,
    recorder: impl Fn(&'static str, usize) -> Recorder<'m> + Sync,
    progress: impl FnMut(String) + Send,
) -> Result<Vec<Recorder<'m>>> {
    let layer_cfg = UltraMemV2Config::paper_1b_7b();
    let small_cfg = UltraMemV2Config::paper_227m_1_2b();
    let olmoe = MoeShape::olmoe_1b_7b();
    let moe = MoeData::new(olmoe.d_model, olmoe.experts, olmoe.top_k, olmoe.ffn, 11);
    let pkm = PkmShape {
        d_model: 1024,
        heads: 4,
        dk: 512,
        n: 512,
        k: 32,
    };
    let pkm_values: Vec<bf16> = cases::table(pkm.n * pkm.n * pkm.d_model);
    let layer_tables = cases::LayerTables::<bf16>::new(&layer_cfg);
    // The jobs, the costliest (the layer at large T) first so the workers finish together.
    let mut jobs: Vec<(usize, usize, &'static str)> = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        for family in [LAYER, TOPK_227M, PKM, MOE] {
            jobs.push((i, t, family));
        }
    }
    let order =
        |&(_, t, family): &(usize, usize, &'static str)| std::cmp::Reverse((t, family == LAYER));
    jobs.sort_by_key(order);
    let run_job = |t: usize, family: &'static str| -> Result<Recorder<'m>> {
        let mut rec = recorder(family, t);
        match family {
            LAYER => {
                let data = LayerData::new(&layer_cfg, &layer_tables, t, 1);
                cases::ultramem_v2_layer(&mut rec, &data, 2)?;
            }
            TOPK_227M => cases::tucker_topk_only(&mut rec, &small_cfg, 3)?,
            PKM => cases::pkm(&mut rec, pkm, &pkm_values, 4)?,
            _ => cases::moe_layer(&mut rec, &moe, 5)?,
        }
        Ok(rec)
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let progress = std::sync::Mutex::new(progress);
    let done: std::sync::Mutex<Vec<(usize, usize, Recorder<'m>)>> = Default::default();
    let failed: std::sync::Mutex<Option<ultramem::Error>> = Default::default();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(ti, t, family)) = jobs.get(j) else {
                    break;
                };
                if failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                    break;
                }
                let started = std::time::Instant::now();
                match run_job(t, family) {
                    Ok(rec) => {
                        let fi = [LAYER, TOPK_227M, PKM, MOE]
                            .iter()
                            .position(|f| *f == family);
                        done.lock().unwrap_or_else(|e| e.into_inner()).push((
                            ti,
                            fi.unwrap_or(0),
                            rec,
                        ));
                        (progress.lock().unwrap_or_else(|e| e.into_inner()))(format!(
                            "{family}, T = {t}: {:.1} s",
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|&(ti, fi, _)| (ti, fi));
    Ok(done.into_iter().map(|(_, _, rec)| rec).collect())
}

/// Predicts every workload at every token count, one report per model (the interpreter runs
/// once for all of them).
pub fn run(
    models: &[Model],
    tokens: &[usize],
    progress: impl FnMut(String) + Send,
) -> Result<Vec<Report>> {
    let copy_bytes = 1usize << 30;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let recorders = workloads(
        tokens,
        workers,
        |family, t| Recorder::new(models, family, t),
        progress,
    )?;
    let ops: Vec<&Vec<OpResult>> = recorders.iter().flat_map(|r| &r.results).collect();
    models
        .iter()
        .enumerate()
        .map(|(i, model)| {
            Ok(Report {
                card: model.card.clone(),
                graph: model.graph,
                tokens: tokens.to_vec(),
                ops: ops.iter().map(|per_model| per_model[i].clone()).collect(),
                best_copy: best_copy(model, copy_bytes)?,
                best_copy_bytes: 2.0 * copy_bytes as f64,
            })
        })
        .collect()
}

/// Times every workload's ops on `device` (the GPU check's measured side), in the report's
/// order.
pub fn measure(
    device: &Device,
    tokens: &[usize],
    progress: impl FnMut(String) + Send,
) -> Result<Vec<Measured>> {
    let recorders = workloads(
        tokens,
        1,
        |family, t| Recorder::measuring(device, family, t),
        progress,
    )?;
    Ok(recorders.into_iter().flat_map(|r| r.measured).collect())
}

/// `measured_ops.csv`: the measured times next to nothing else (the GPU check joins them with
/// the committed predictions).
pub fn write_measured(measured: &[Measured], device: &str, out: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let mut csv = format!("# measured on {device}: wall time per op, device synchronised\nfamily,tokens,pass,op,measured_us\n");
    for m in measured {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            m.family,
            m.tokens,
            m.pass.name(),
            m.op,
            us(m.seconds)
        );
    }
    let path = out.join("measured_ops.csv");
    std::fs::write(&path, csv)?;
    Ok(path)
}

fn us(s: f64) -> String {
    format!("{:.2}", s * 1e6)
}

fn mb(b: f64) -> String {
    format!("{:.3}", b / 1e6)
}

/// One row per launch (and per copy / read-back), keyed for the gate.
pub struct LaunchRow {
    pub key: String,
    pub seconds: f64,
    pub line: String,
}

pub const LAUNCH_HEADER: &str = "family,tokens,pass,op,step,kernel,entry,grid_blocks,sampled_blocks,threads,registers,shared_bytes,blocks_per_sm,occupancy_limit,waves,predicted_us,limit,issue_us,dram_us,l1_us,l2_us,shared_us,in_flight_us,latency_us,launch_us,warp_issues,sass_per_ptx,dram_read_bytes,dram_write_bytes,compulsory_bytes,request_bytes,l2_sectors,sector_efficiency,shared_wavefronts_per_request,bytes_in_flight_per_sm,critical_path_cycles,sampling_error";

pub fn launch_rows(r: &Report) -> Vec<LaunchRow> {
    let mut rows = Vec::new();
    for o in &r.ops {
        for (i, step) in o.prediction.steps.iter().enumerate() {
            let base = format!("{},{},{},{},{}", o.family, o.tokens, o.pass.name(), o.op, i);
            let (kernel, entry, body) = match step {
                Step::Launch(l) => {
                    let c = &l.counts;
                    let p = &l.prediction;
                    let term = |name: &str| {
                        p.terms
                            .iter()
                            .find(|(lim, _)| lim.name() == name)
                            .map_or(0.0, |t| t.1)
                    };
                    let wf = if c.shared_requests > 0.0 {
                        c.shared_wavefronts / c.shared_requests
                    } else {
                        0.0
                    };
                    (
                        l.kernel.clone(),
                        l.entry.to_string(),
                        format!(
                            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.0},{:.3},{:.0},{:.0},{:.0},{:.0},{:.0},{:.4},{:.2},{:.0},{:.0},{:.4}",
                            c.blocks,
                            c.sampled_blocks,
                            c.threads_per_block,
                            l.resources.registers,
                            l.resources.shared_bytes,
                            l.occupancy.blocks_per_sm,
                            l.occupancy.limiter,
                            p.waves,
                            us(p.seconds),
                            p.limit.name(),
                            us(term("issue")),
                            us(term("dram")),
                            us(term("l1")),
                            us(term("l2")),
                            us(term("shared")),
                            us(term("in-flight")),
                            us(term("latency")),
                            us(term("launch")),
                            c.total_issues(),
                            l.resources.sass_per_ptx(),
                            c.dram_read_bytes,
                            c.dram_write_bytes,
                            c.compulsory_bytes,
                            c.request_bytes,
                            c.l2_sectors,
                            c.sector_efficiency(),
                            wf,
                            p.bytes_in_flight_per_sm,
                            c.critical_path_cycles,
                            c.sampling_error,
                        ),
                    )
                }
                Step::Copy { bytes, seconds } => (
                    "copy".into(),
                    "device copy".into(),
                    format!(",,,,,,,,{},copy,,,,,,,,,,,0,{bytes},,,,,,,,", us(*seconds)),
                ),
                Step::HostRead { bytes, seconds } => (
                    "host".into(),
                    "host read".into(),
                    format!(",,,,,,,,{},host,,,,,,,,,,,{bytes},0,,,,,,,,", us(*seconds)),
                ),
            };
            rows.push(LaunchRow {
                key: format!("{base},{kernel},{entry}"),
                seconds: step.seconds(),
                line: format!("{base},{kernel},{entry},{body}"),
            });
        }
    }
    rows
}

/// Sum of the predicted seconds of the ops of `family` and `pass` at `tokens` whose name passes
/// `keep`.
fn total(r: &Report, family: &str, pass: Pass, tokens: usize, keep: impl Fn(&str) -> bool) -> f64 {
    r.ops
        .iter()
        .filter(|o| o.family == family && o.pass == pass && o.tokens == tokens && keep(&o.op))
        .map(|o| o.prediction.seconds())
        .sum()
}

/// The batch's sparse path: top-k → index map → values.
pub fn sparse_path(op: &str) -> bool {
    matches!(op, "tucker_topk" | "index_map" | "peer_ffn")
}

impl Report {
    /// The text report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let copy = self.best_copy_bytes_per_s();
        let _ = writeln!(
            s,
            "GPU PERFORMANCE MODEL — PREDICTIONS, NOT MEASUREMENTS\ncard: {} (model parameters and sources: src/model/card.rs); launches {}\n\
             model's best copy (tests/model_kernels/copy.ptx, 16-byte loads, 1 GiB): {:.0} GB/s predicted \
             ({:.0}% of the {:.0} GB/s the card's sustained-bandwidth source reports)\n",
            self.card.name,
            if self.graph { "in a CUDA graph" } else { "one by one" },
            copy / 1e9,
            100.0 * copy / self.card.dram_bytes_per_s,
            self.card.dram_bytes_per_s / 1e9,
        );
        let tool = |t: Option<&std::path::Path>| {
            t.and_then(ultramem::model::compile::version)
                .unwrap_or_else(|| "not found".into())
        };
        let _ = writeln!(
            s,
            "ptxas: {}; cuobjdump: {}\n",
            tool(ultramem::model::compile::ptxas()),
            tool(ultramem::model::compile::cuobjdump())
        );
        let _ = writeln!(s, "## Roll-ups (predicted µs)\n");
        let _ = writeln!(
            s,
            "{:>6} {:>12} {:>12} {:>14} {:>12} {:>14} {:>14}",
            "T",
            "layer fwd",
            "layer bwd",
            "sparse path",
            "MoE fwd",
            "mem/MoE time",
            "mem/MoE bytes"
        );
        let shape = UltraMemV2Shape::paper_1b_7b();
        let moe = MoeShape::olmoe_1b_7b();
        for &t in &self.tokens {
            let fwd = total(self, LAYER, Pass::Forward, t, |_| true);
            let bwd = total(self, LAYER, Pass::Backward, t, |_| true);
            let sparse = total(self, LAYER, Pass::Forward, t, sparse_path);
            let moe_t = total(self, MOE, Pass::Forward, t, |_| true);
            let bytes = shape.step_bytes(t, 2).total() / moe.step_bytes(t, 2).total();
            let _ = writeln!(
                s,
                "{t:>6} {:>12} {:>12} {:>14} {:>12} {:>14.3} {:>14.3}",
                us(fwd),
                us(bwd),
                us(sparse),
                us(moe_t),
                fwd / moe_t,
                bytes
            );
        }
        let _ = writeln!(
            s,
            "\nsparse path = tucker_topk + index_map + peer_ffn (forward). mem/MoE bytes: the cost \
             model's bytes of one step (src/cost.rs, bf16 weights).\n"
        );
        let _ = writeln!(s, "## Ops (predicted)\n");
        let _ = writeln!(
            s,
            "{:<28} {:>5} {:<4} {:<28} {:>3} {:>11} {:>10} {:>10} {:>8} {:>9} {:>7}",
            "workload",
            "T",
            "pass",
            "op",
            "n",
            "µs",
            "DRAM MB",
            "cost MB",
            "DRAM/cost",
            "cost GB/s",
            "of copy"
        );
        for o in &self.ops {
            let secs = o.prediction.seconds();
            let dram = o.prediction.dram_bytes();
            let (cost_mb, ratio, gbs, of_copy) = match &o.cost {
                Some(c) => (
                    mb(c.bytes()),
                    format!("{:.2}", dram / c.bytes()),
                    format!("{:.0}", c.bytes() / secs / 1e9),
                    format!("{:.3}", c.bytes() / secs / copy),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "{:<28} {:>5} {:<4} {:<28} {:>3} {:>11} {:>10} {:>10} {:>8} {:>9} {:>7}",
                o.family,
                o.tokens,
                o.pass.name(),
                o.op,
                o.prediction.launches().count(),
                us(secs),
                mb(dram),
                cost_mb,
                ratio,
                gbs,
                of_copy
            );
        }
        let _ = writeln!(s, "\n## Launches (predicted)\n");
        let _ = writeln!(
            s,
            "{:<5} {:<4} {:<28} {:<34} {:>8} {:>4} {:>6} {:>5} {:>10} {:<9} {:>9} {:>6} {:>8} {:>6} {:>6}",
            "T", "pass", "op", "entry", "blocks", "reg", "occ", "waves", "µs", "limit", "DRAM MB",
            "sect", "KB/SM", "S/P", "err"
        );
        for o in &self.ops {
            if o.family != LAYER && o.family != TOPK_227M && o.family != PKM && o.family != MOE {
                continue;
            }
            for l in o.prediction.launches() {
                let c = &l.counts;
                let _ = writeln!(
                    s,
                    "{:<5} {:<4} {:<28} {:<34} {:>8} {:>4} {:>6} {:>5} {:>10} {:<9} {:>9} {:>6.3} {:>8.1} {:>6.2} {:>6.3}",
                    o.tokens,
                    o.pass.name(),
                    format!("{}:{}", short(o.family), o.op),
                    l.entry,
                    c.blocks,
                    l.resources.registers,
                    format!("{}/{}", l.occupancy.blocks_per_sm, l.occupancy.warps_per_sm),
                    l.prediction.waves,
                    us(l.prediction.seconds),
                    l.prediction.limit.name(),
                    mb(c.dram_bytes()),
                    c.sector_efficiency(),
                    l.prediction.bytes_in_flight_per_sm / 1024.0,
                    l.resources.sass_per_ptx(),
                    c.sampling_error
                );
            }
        }
        let _ = writeln!(
            s,
            "\nocc = resident blocks/warps per SM; sect = useful bytes / sector bytes; KB/SM = bytes \
             in flight per SM at that occupancy; S/P = static SASS/PTX instruction ratio; err = \
             relative standard error of the sampled issue count (0: every block ran)."
        );
        s
    }
}

fn short(family: &str) -> &str {
    match family {
        LAYER => "1B/7B",
        TOPK_227M => "227M",
        PKM => "PKM",
        MOE => "OLMoE",
        f => f,
    }
}

/// Today's date, `YYYY-MM-DD` (UTC).
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The report's folder name for `card`: `<date>-model-<card>`.
pub fn folder(card: &Card) -> String {
    let name = card.name.to_ascii_lowercase().replace(' ', "-");
    format!("{}-model-{name}", today())
}

/// Writes `report.txt`, `launches.csv`, `ops.csv` under `out/<date>-model-<card>/`.
pub fn write(r: &Report, out: &Path) -> std::io::Result<PathBuf> {
    let dir = out.join(folder(&r.card));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.txt"), r.text())?;
    let mut csv = format!(
        "# GPU performance model: predictions for {}, not measurements\n{LAUNCH_HEADER}\n",
        r.card.name
    );
    for row in launch_rows(r) {
        csv.push_str(&row.line);
        csv.push('\n');
    }
    std::fs::write(dir.join("launches.csv"), csv)?;
    let mut ops = format!(
        "# GPU performance model: predictions for {}, not measurements\nfamily,tokens,pass,op,launches,predicted_us,dram_bytes,cost_bytes,cost_flops\n",
        r.card.name
    );
    for o in &r.ops {
        let _ = writeln!(
            ops,
            "{},{},{},{},{},{},{:.0},{},{}",
            o.family,
            o.tokens,
            o.pass.name(),
            o.op,
            o.prediction.launches().count(),
            us(o.prediction.seconds()),
            o.prediction.dram_bytes(),
            o.cost
                .map_or(String::new(), |c| format!("{:.0}", c.bytes())),
            o.cost.map_or(String::new(), |c| format!("{:.0}", c.flops)),
        );
    }
    std::fs::write(dir.join("ops.csv"), ops)?;
    Ok(dir)
}

/// The newest committed report folder for `card` under `root`.
pub fn committed(root: &Path, card: &Card) -> Option<PathBuf> {
    let suffix = format!(
        "-model-{}",
        card.name.to_ascii_lowercase().replace(' ', "-")
    );
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
                && p.join("launches.csv").exists()
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The regression gate: every launch predicted at most 10% slower than in the newest committed
/// report under `root`; steps that appear or vanish fail too (the report must be updated with
/// the change). Returns a summary.
pub fn check(r: &Report, root: &Path) -> std::result::Result<String, String> {
    let dir = committed(root, &r.card).ok_or_else(|| {
        format!(
            "no committed report for {} under {}",
            r.card.name,
            root.display()
        )
    })?;
    let text = std::fs::read_to_string(dir.join("launches.csv")).map_err(|e| e.to_string())?;
    let mut old: HashMap<String, f64> = HashMap::new();
    let key_fields = 7;
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() <= 15 {
            continue;
        }
        let key = fields[..key_fields].join(",");
        let us: f64 = fields[15].parse().map_err(|e| format!("{line}: {e}"))?;
        old.insert(key, us * 1e-6);
    }
    let mut problems = Vec::new();
    let mut compared = 0;
    let mut seen = std::collections::HashSet::new();
    for row in launch_rows(r) {
        if !r
            .tokens
            .iter()
            .any(|t| row.key.split(',').nth(1) == Some(&t.to_string()))
        {
            continue;
        }
        seen.insert(row.key.clone());
        match old.get(&row.key) {
            Some(&before) => {
                compared += 1;
                // Times are written with 0.01 µs resolution.
                if row.seconds > before * GATE_SLOWDOWN + 0.005e-6 {
                    problems.push(format!(
                        "{}: predicted {:.2} µs, committed {:.2} µs (+{:.0}%)",
                        row.key,
                        row.seconds * 1e6,
                        before * 1e6,
                        100.0 * (row.seconds / before - 1.0)
                    ));
                }
            }
            None => problems.push(format!("{}: not in the committed report", row.key)),
        }
    }
    for key in old.keys() {
        let tokens_listed = r
            .tokens
            .iter()
            .any(|t| key.split(',').nth(1) == Some(&t.to_string()));
        if tokens_listed && !seen.contains(key) {
            problems.push(format!("{key}: in the committed report, not predicted now"));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "gate: {compared} steps within {:.0}% of {}",
            (GATE_SLOWDOWN - 1.0) * 100.0,
            dir.display()
        ))
    } else {
        Err(format!(
            "gate against {}: {} problem(s); if intended, regenerate the report \
             (cargo run --release --example gpu_model -- --card all) and say so in the commit:\n{}",
            dir.display(),
            problems.len(),
            problems.join("\n")
        ))
    }
}
