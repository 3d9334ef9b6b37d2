//! The measured sweep: one forward step of each layer per batch size, timed on a device.
//!
//! For a memory layer and an MoE layer (by default UltraMemV2-1B/7B and OLMoE-1B/7B, the
//! paper's equal-parameter pair, bf16 weights) it times one forward step per batch size `B` on a
//! device, next to the bytes and FLOPs of the cost model (`ultramem::cost`) and the device's
//! measured copy bandwidth, and renders the result as a text table, CSV and an SVG plot.
//!
//! Three rows per batch size:
//! - `ultramem_v2`: the whole layer forward ([`UltraMemV2Layer::forward`]): projections, norms,
//!   Tucker top-k, index map, PEER values, `W_out`. Its rows are the ones its top-k chooses on
//!   random inputs (close to uniform).
//! - `ultramem_v2_values`: its value read alone ([`peer_ffn`]) with rows drawn from the stated
//!   distribution: the sparse part the byte model counts.
//! - `moe`: the routed experts ([`moe_ffn`], given routing drawn from the stated distribution;
//!   the router's `D×E` product is not timed).
//!
//! "Model bytes" are always the cost model's (expected distinct rows or experts under uniform
//! routing); the actual distinct rows or experts of the drawn indices are reported next to them.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ultramem::cost::{count_distinct, MoeShape, StepBytes};
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
use ultramem::rng::SplitMix64;
use ultramem::{
    bf16, moe_ffn, peer_ffn, Backend, Device, Error, MoeFfnArgs, MoeRouting, PeerFfnArgs, Result,
    Tensor,
};

/// How the drawn indices (value rows, experts) are distributed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IndexDist {
    /// Every row or expert equally likely (the honest worst case for caches).
    Uniform,
    /// Zipf with exponent `s > 0` over a random permutation of the rows or experts.
    Zipf(f64),
}

impl std::fmt::Display for IndexDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexDist::Uniform => f.write_str("uniform"),
            IndexDist::Zipf(s) => write!(f, "zipf(s={s})"),
        }
    }
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The memory layer.
    pub memory: UltraMemV2Config,
    /// The MoE layer.
    pub moe: MoeShape,
    /// Batch sizes, in order.
    pub batches: Vec<usize>,
    /// The distribution of drawn rows and experts.
    pub dist: IndexDist,
    /// Minimum measuring time per case (at least 3 timed runs, after one warm-up).
    pub min_time: Duration,
    /// Seed of every random draw.
    pub seed: u64,
}

/// The batch sizes of the issue: 1 to 4096.
pub const PAPER_BATCHES: [usize; 9] = [1, 2, 4, 8, 16, 64, 256, 1024, 4096];

impl SweepConfig {
    /// UltraMemV2-1B/7B vs OLMoE-1B/7B (Part II §6.1's pair), every batch in
    /// [`PAPER_BATCHES`], uniform indices.
    pub fn paper() -> SweepConfig {
        SweepConfig {
            memory: UltraMemV2Config::paper_1b_7b(),
            moe: MoeShape::olmoe_1b_7b(),
            batches: PAPER_BATCHES.to_vec(),
            dist: IndexDist::Uniform,
            min_time: Duration::from_millis(300),
            seed: 1,
        }
    }

    /// The same pair scaled for a CPU or a software GPU: widths divided by 8 (D 256), the MoE's
    /// 64 experts of F 128 (6.3 M expert parameters) against a memory table of 209² rows of
    /// `Dp + Dv = 144` (6.3 M), `m = K1 = 16`; batches up to 64.
    pub fn scaled() -> SweepConfig {
        SweepConfig {
            memory: UltraMemV2Config::new(256, 64, 209, 16, 48, 96),
            moe: MoeShape {
                d_model: 256,
                experts: 64,
                top_k: 8,
                ffn: 128,
                shared: 0,
            },
            batches: vec![1, 2, 4, 8, 16, 64],
            dist: IndexDist::Uniform,
            min_time: Duration::from_millis(100),
            seed: 1,
        }
    }
}

/// One measured case.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `ultramem_v2`, `ultramem_v2_values` or `moe`.
    pub layer: &'static str,
    /// Tokens in the step.
    pub batch: usize,
    /// Median time of one step, seconds.
    pub seconds: f64,
    /// The cost model's bytes for the step.
    pub model_bytes: StepBytes,
    /// The cost model's FLOPs for the step.
    pub flops: f64,
    /// Distinct rows (memory) or experts (MoE) the drawn indices touched; for `ultramem_v2`,
    /// the rows its top-k chose.
    pub touched: usize,
}

impl Row {
    /// Model bytes over measured time, GB/s.
    pub fn gbps(&self) -> f64 {
        self.model_bytes.total() / self.seconds / 1e9
    }
}

/// The result of [`run_sweep`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The device, as displayed.
    pub device: String,
    /// Its measured copy bandwidth (read + write bytes per second), GB/s.
    pub copy_gbps: f64,
    /// The index distribution.
    pub dist: IndexDist,
    /// Parameters of the two layers: `(memory, moe)`.
    pub params: (usize, usize),
    /// The measured cases, by batch then layer.
    pub rows: Vec<Row>,
}

/// Times `f` (which must leave the device idle when it returns): one warm-up, then runs until
/// `min_time` has passed and at least 3 were made; the median.
fn time<T>(min_time: Duration, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || start.elapsed() < min_time {
        let t0 = Instant::now();
        let out = f()?;
        times.push(t0.elapsed().as_secs_f64());
        drop(out);
        if times.len() >= 1000 {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Read + write bandwidth of a device-to-device copy of `bytes` bytes, GB/s.
///
/// # Errors
/// The device's allocation, copy or synchronisation errors.
pub fn copy_bandwidth(dev: &Device, bytes: usize, min_time: Duration) -> Result<f64> {
    let words = bytes / 4;
    let src = Tensor::from_vec(dev, &[words], vec![1u32; words])?;
    let seconds = time(min_time, || {
        let copy = src.try_clone()?;
        dev.synchronize()?;
        Ok(copy)
    })?;
    Ok(2.0 * (4 * words) as f64 / seconds / 1e9)
}

/// `count` indices below `n` from `dist`.
pub fn draw(rng: &mut SplitMix64, dist: IndexDist, n: usize, count: usize) -> Vec<u32> {
    match dist {
        IndexDist::Uniform => (0..count).map(|_| rng.below(n as u64) as u32).collect(),
        IndexDist::Zipf(s) => {
            // Inverse-CDF sampling over ranks 1..=n, then a fixed random permutation of rank to
            // index so popular rows are scattered through the table.
            let mut cdf = Vec::with_capacity(n);
            let mut acc = 0.0;
            for r in 1..=n {
                acc += (r as f64).powf(-s);
                cdf.push(acc);
            }
            let mut perm: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                perm.swap(i, rng.below(i as u64 + 1) as usize);
            }
            (0..count)
                .map(|_| {
                    let u = rng.uniform() * acc;
                    let rank = cdf.partition_point(|&c| c < u).min(n - 1);
                    perm[rank]
                })
                .collect()
        }
    }
}

fn normals(rng: &mut SplitMix64, len: usize, std: f64) -> Vec<f32> {
    rng.normals(len, std)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

fn bf16s(rng: &mut SplitMix64, len: usize, std: f64) -> Vec<bf16> {
    rng.normals(len, std)
        .into_iter()
        .map(bf16::from_f64)
        .collect()
}

/// Runs the sweep on `dev`, printing one line per case to `progress` as it goes.
///
/// # Errors
/// Bad configs ([`Error::InvalidArgument`] for an empty batch list or a Zipf exponent that is
/// not positive), and the errors of the ops.
pub fn run_sweep(
    dev: &Device,
    cfg: &SweepConfig,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    if cfg.batches.is_empty() || cfg.batches.contains(&0) {
        return Err(Error::InvalidArgument {
            op: "run_sweep",
            arg: "batches",
            reason: "needs at least one batch size, none of them 0".into(),
        });
    }
    if let IndexDist::Zipf(s) = cfg.dist {
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::InvalidArgument {
                op: "run_sweep",
                arg: "dist",
                reason: format!("the Zipf exponent {s} must be finite and positive"),
            });
        }
    }
    let mem = &cfg.memory;
    let moe = &cfg.moe;
    let mut rng = SplitMix64::new(cfg.seed);
    let deferred = dev.backend() != Backend::Cpu;
    let copy_bytes = if dev.backend() == Backend::Cuda {
        1 << 30
    } else {
        1 << 24
    };
    let copy_gbps = copy_bandwidth(dev, copy_bytes, cfg.min_time)?;
    progress(&format!(
        "{dev}: copy bandwidth {copy_gbps:.1} GB/s ({} MB device copy)",
        copy_bytes >> 20
    ));

    // The memory layer, bf16 tables.
    let (params, _) = init_params(mem, InitScheme::ReleasedCode, cfg.seed)?;
    let layer = UltraMemV2Layer::new(dev, mem, &params.cast::<f32, bf16>())?;
    let (down, up) = (
        Tensor::from_vec(
            dev,
            &[mem.table_rows(), mem.dp],
            bf16s(&mut rng, mem.table_rows() * mem.dp, 0.02),
        )?,
        Tensor::from_vec(
            dev,
            &[mem.table_rows(), mem.dv],
            bf16s(&mut rng, mem.table_rows() * mem.dv, 0.02),
        )?,
    );
    drop(params);
    // The MoE experts, bf16.
    let (e, f, d) = (moe.experts, moe.ffn, moe.d_model);
    let w1 = Tensor::from_vec(dev, &[e, f, d], bf16s(&mut rng, e * f * d, 0.02))?;
    let w3 = Tensor::from_vec(dev, &[e, f, d], bf16s(&mut rng, e * f * d, 0.02))?;
    let w2 = Tensor::from_vec(dev, &[e, d, f], bf16s(&mut rng, e * d * f, 0.02))?;
    let (dense, sparse) = mem.param_count();
    let report_params = (dense + sparse, moe.params());

    if deferred {
        dev.set_deferred_checks(true);
    }
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        for &b in &cfg.batches {
            // The whole memory layer.
            let x = Tensor::from_vec(
                dev,
                &[b, mem.d_model],
                normals(&mut rng, b * mem.d_model, 1.0),
            )?;
            let shape = mem.cost_shape();
            let seconds = time(cfg.min_time, || {
                let fwd = layer.forward(&x)?;
                dev.synchronize()?;
                Ok(fwd)
            })?;
            let chosen = layer.forward(&x)?;
            dev.synchronize()?;
            let touched = count_distinct(&chosen.cache.rows.to_vec()?);
            rows.push(Row {
                layer: "ultramem_v2",
                batch: b,
                seconds,
                model_bytes: shape.step_bytes(b, 2),
                flops: shape.flops_per_token() * b as f64,
                touched,
            });
            // Its value read alone, rows from the distribution.
            let slots = mem.heads * mem.m;
            let ids = draw(&mut rng, cfg.dist, mem.table_rows(), b * slots);
            let touched = count_distinct(&ids);
            let value_rows = Tensor::from_vec(dev, &[b, slots], ids)?;
            let scores = Tensor::from_vec(
                dev,
                &[b, slots, mem.cores],
                normals(&mut rng, b * slots * mem.cores, 1.0),
            )?;
            let z = Tensor::from_vec(dev, &[b, mem.dp], normals(&mut rng, b * mem.dp, 1.0))?;
            let args = PeerFfnArgs {
                rows: &value_rows,
                scores: &scores,
                z: &z,
                down: &down,
                up: &up,
                activation: mem.activation,
            };
            let seconds = time(cfg.min_time, || {
                let y = peer_ffn(&args)?;
                dev.synchronize()?;
                Ok(y)
            })?;
            let full = shape.step_bytes(b, 2);
            rows.push(Row {
                layer: "ultramem_v2_values",
                batch: b,
                seconds,
                // The distinct value rows, z in and y out (f32).
                model_bytes: StepBytes {
                    dense: 0.0,
                    index: 0.0,
                    activations: (b * (mem.dp + mem.dv) * 4) as f64,
                    ..full
                },
                flops: 2.0 * (b * slots * (mem.dp + mem.dv)) as f64,
                touched,
            });
            // The MoE experts, routing from the distribution.
            let ids = draw(&mut rng, cfg.dist, e, b * moe.top_k);
            let touched = count_distinct(&ids);
            let experts = Tensor::from_vec(dev, &[b, moe.top_k], ids)?;
            let gates = Tensor::from_vec(
                dev,
                &[b, moe.top_k],
                vec![1.0 / moe.top_k as f32; b * moe.top_k],
            )?;
            let xm = Tensor::from_vec(dev, &[b, d], normals(&mut rng, b * d, 1.0))?;
            let args = MoeFfnArgs {
                x: &xm,
                routing: MoeRouting::Explicit {
                    experts: &experts,
                    gates: &gates,
                },
                w1: &w1,
                w3: &w3,
                w2: &w2,
            };
            let seconds = time(cfg.min_time, || {
                let out = moe_ffn(&args)?;
                dev.synchronize()?;
                Ok(out)
            })?;
            rows.push(Row {
                layer: "moe",
                batch: b,
                seconds,
                model_bytes: moe.step_bytes(b, 2),
                flops: moe.flops_per_token() * b as f64,
                touched,
            });
            let [m, v, o] = [
                &rows[rows.len() - 3],
                &rows[rows.len() - 2],
                &rows[rows.len() - 1],
            ];
            progress(&format!(
                "B = {b:>4}: ultramem_v2 {:>10.1} µs, values {:>10.1} µs, moe {:>10.1} µs (moe/memory {:.2}×)",
                m.seconds * 1e6,
                v.seconds * 1e6,
                o.seconds * 1e6,
                o.seconds / m.seconds
            ));
        }
        Ok(())
    })();
    if deferred {
        dev.set_deferred_checks(false);
    }
    result?;
    Ok(Report {
        device: dev.to_string(),
        copy_gbps,
        dist: cfg.dist,
        params: report_params,
        rows,
    })
}

/// The cost model's side of the comparison alone (no device): per batch size, each layer's
/// bytes per step and per token and the MoE / memory byte ratio, as a Markdown table.
pub fn model_table(cfg: &SweepConfig) -> String {
    let mem = cfg.memory.cost_shape();
    let mut s = String::from(
        "| B | memory layer MB/step | MoE MB/step | memory KB/token | MoE KB/token | MoE / memory |\n|---|---|---|---|---|---|\n",
    );
    for &b in &cfg.batches {
        let (m, o) = (mem.step_bytes(b, 2), cfg.moe.step_bytes(b, 2));
        let _ = writeln!(
            s,
            "| {b} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1}× |",
            m.total() / 1e6,
            o.total() / 1e6,
            m.per_token() / 1e3,
            o.per_token() / 1e3,
            o.total() / m.total()
        );
    }
    s
}

/// One forward step of one layer (`ultramem_v2` or `moe`) at batch `b`, with no warm-up and no
/// timing loop, for a profiler that sums the device's DRAM traffic over the process (e.g.
/// `ncu --metrics dram__bytes_read.sum,dram__bytes_write.sum`). Returns the model's bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] for another layer name, and the errors of the ops.
pub fn single_step(dev: &Device, cfg: &SweepConfig, layer: &str, b: usize) -> Result<StepBytes> {
    let mut rng = SplitMix64::new(cfg.seed);
    match layer {
        "ultramem_v2" => {
            let mem = &cfg.memory;
            let (params, _) = init_params(mem, InitScheme::ReleasedCode, cfg.seed)?;
            let l = UltraMemV2Layer::new(dev, mem, &params.cast::<f32, bf16>())?;
            drop(params);
            let x = Tensor::from_vec(
                dev,
                &[b, mem.d_model],
                normals(&mut rng, b * mem.d_model, 1.0),
            )?;
            dev.synchronize()?;
            l.forward(&x)?;
            dev.synchronize()?;
            Ok(mem.cost_shape().step_bytes(b, 2))
        }
        "moe" => {
            let moe = &cfg.moe;
            let (e, f, d) = (moe.experts, moe.ffn, moe.d_model);
            let w1 = Tensor::from_vec(dev, &[e, f, d], bf16s(&mut rng, e * f * d, 0.02))?;
            let w3 = Tensor::from_vec(dev, &[e, f, d], bf16s(&mut rng, e * f * d, 0.02))?;
            let w2 = Tensor::from_vec(dev, &[e, d, f], bf16s(&mut rng, e * d * f, 0.02))?;
            let ids = draw(&mut rng, cfg.dist, e, b * moe.top_k);
            let experts = Tensor::from_vec(dev, &[b, moe.top_k], ids)?;
            let gates = Tensor::from_vec(
                dev,
                &[b, moe.top_k],
                vec![1.0 / moe.top_k as f32; b * moe.top_k],
            )?;
            let x = Tensor::from_vec(dev, &[b, d], normals(&mut rng, b * d, 1.0))?;
            dev.synchronize()?;
            moe_ffn(&MoeFfnArgs {
                x: &x,
                routing: MoeRouting::Explicit {
                    experts: &experts,
                    gates: &gates,
                },
                w1: &w1,
                w3: &w3,
                w2: &w2,
            })?;
            dev.synchronize()?;
            Ok(moe.step_bytes(b, 2))
        }
        other => Err(Error::InvalidArgument {
            op: "single_step",
            arg: "layer",
            reason: format!("{other}: expected ultramem_v2 or moe"),
        }),
    }
}
