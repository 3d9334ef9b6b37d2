//! The workloads of the report: every op of each paper-shape layer, forward and backward, each
//! profiled on its own ([`ultramem::model::Model::profile`]) with inputs made on the host.
//!
//! Indices an op reads (the chosen `idx`, the value rows) are drawn uniformly at random, distinct
//! within a token and head, as the cost model assumes ([`ultramem::cost::expected_distinct`]),
//! rather than taken from the op before: each op is predicted from its own inputs, and a layer
//! is the sum of its ops, each starting with a cold L2. The list of ops mirrors what
//! `UltraMemV2Layer::forward`/`backward` call; a test holds the two against each other.

use ultramem::cost::Cost;
use ultramem::layer::UltraMemV2Config;
use ultramem::model::{Model, OpPrediction};
use ultramem::ops::additive_topk::{additive_topk, additive_topk_backward, AdditiveTopkArgs};
use ultramem::ops::moe_ffn::{moe_ffn, MoeFfnArgs, MoeRouting};
use ultramem::ops::weighted_gather::{
    weighted_gather, weighted_gather_backward, WeightedGatherArgs,
};
use ultramem::rng::SplitMix64;
use ultramem::{
    bf16, index_map, matmul, peer_ffn, peer_ffn_backward, rmsnorm, rmsnorm_backward, score_fn,
    score_fn_backward, tucker_topk, tucker_topk_backward, Activation, BackwardMode, Device, Float,
    GateNorm, IndexMapArgs, MatmulArgs, PeerFfnArgs, Result, RmsNormArgs, ScoreFn, ScoreFnArgs,
    Tensor, TuckerTopkArgs,
};

/// Forward or backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pass {
    /// The forward.
    Forward,
    /// The backward.
    Backward,
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "fwd",
            Pass::Backward => "bwd",
        }
    }
}

/// One op of one workload at one token count, predicted.
#[derive(Clone, Debug)]
pub struct OpResult {
    /// The workload ("UltraMemV2-1B/7B", ...).
    pub family: &'static str,
    /// Forward or backward.
    pub pass: Pass,
    /// The op and what it computes ("matmul x·W_qᵀ").
    pub op: String,
    /// Tokens `T`.
    pub tokens: usize,
    /// The prediction.
    pub prediction: OpPrediction,
    /// The cost model's bytes and FLOPs, where the crate has them for this op.
    pub cost: Option<Cost>,
}

/// Host data: deterministic normals (a seeded generator), as f32.
fn normals(rng: &mut SplitMix64, len: usize, std: f64) -> Vec<f32> {
    (0..len).map(|_| (rng.normal() * std) as f32).collect()
}

/// A big table's contents: values do not change any kernel's work, so a cheap pattern.
pub fn table<V: Float>(len: usize) -> Vec<V> {
    (0..len)
        .map(|i| V::from_f64(((i % 251) as f64 - 125.0) / 1024.0))
        .collect()
}

/// `count` draws per group of `per` distinct values below `bound`, uniform.
fn distinct_indices(rng: &mut SplitMix64, groups: usize, per: usize, bound: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(groups * per);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..groups {
        seen.clear();
        while seen.len() < per.min(bound) {
            let v = rng.below(bound as u64) as u32;
            if seen.insert(v) {
                out.push(v);
            }
        }
    }
    out
}

/// One op of one workload at one token count, timed on a real device.
#[derive(Clone, Debug)]
pub struct Measured {
    pub family: &'static str,
    pub pass: Pass,
    pub op: String,
    pub tokens: usize,
    /// Wall seconds of the op, device synchronised before and after.
    pub seconds: f64,
}

/// Where a recorder runs its ops.
enum Target<'m> {
    /// Predicted by every model (card) at once: the interpreter runs once for all.
    Models(&'m [Model]),
    /// Timed on a device (the GPU check's measured side).
    Device(&'m Device),
}

/// Collects the op results of one workload.
pub struct Recorder<'m> {
    target: Target<'m>,
    family: &'static str,
    tokens: usize,
    /// Per op, one prediction per model.
    pub results: Vec<Vec<OpResult>>,
    /// Per op, its measured time (on a device).
    pub measured: Vec<Measured>,
}

impl<'m> Recorder<'m> {
    /// A recorder that predicts with `models`.
    pub fn new(models: &'m [Model], family: &'static str, tokens: usize) -> Recorder<'m> {
        Recorder {
            target: Target::Models(models),
            family,
            tokens,
            results: Vec::new(),
            measured: Vec::new(),
        }
    }

    /// A recorder that times every op on `device`.
    pub fn measuring(device: &'m Device, family: &'static str, tokens: usize) -> Recorder<'m> {
        Recorder {
            target: Target::Device(device),
            ..Recorder::new(&[], family, tokens)
        }
    }

    /// Profiles `run` after `setup`; `run` returns the op's cost-model figures if any.
    fn op<S>(
        &mut self,
        pass: Pass,
        op: &str,
        setup: impl FnOnce(&Device) -> Result<S>,
        run: impl FnOnce(&S) -> Result<Option<Cost>>,
    ) -> Result<()> {
        let mut cost = None;
        let started = std::time::Instant::now();
        let models = match self.target {
            Target::Models(m) => m,
            Target::Device(dev) => {
                let state = setup(dev)?;
                dev.synchronize()?;
                let t0 = std::time::Instant::now();
                run(&state)?;
                dev.synchronize()?;
                self.measured.push(Measured {
                    family: self.family,
                    pass,
                    op: op.to_string(),
                    tokens: self.tokens,
                    seconds: t0.elapsed().as_secs_f64(),
                });
                return Ok(());
            }
        };
        let first = &models[0];
        let recorded = first.record(setup, |_, s| {
            cost = run(s)?;
            Ok(())
        })?;
        if std::env::var_os("GPU_MODEL_VERBOSE").is_some() {
            for r in &recorded.records {
                if let ultramem::interp_backend::Record::Launch(l) = r {
                    eprintln!(
                        "    {} {} blocks of {}: {:.2} s",
                        l.entry,
                        l.profile.blocks.len(),
                        l.grid_blocks,
                        l.wall.as_secs_f64()
                    );
                }
            }
        }
        let mut predictions = Vec::new();
        for m in models {
            if !m.counts_like(first) {
                return Err(ultramem::Error::InvalidArgument {
                    op: "gpu_model",
                    arg: "--card",
                    reason: "the cards' models count differently; report them one at a time".into(),
                });
            }
            predictions.push(m.predict(&recorded)?);
        }
        drop(recorded);
        if std::env::var_os("GPU_MODEL_VERBOSE").is_some() {
            eprintln!(
                "  {} T={} {} {op}: {:.1} s",
                self.family,
                self.tokens,
                pass.name(),
                started.elapsed().as_secs_f64()
            );
        }
        self.results.push(
            predictions
                .into_iter()
                .map(|prediction| OpResult {
                    family: self.family,
                    pass,
                    op: op.to_string(),
                    tokens: self.tokens,
                    prediction,
                    cost,
                })
                .collect(),
        );
        Ok(())
    }
}

fn up(dev: &Device, shape: &[usize], data: &[f32]) -> Result<Tensor<f32>> {
    Tensor::from_slice(dev, shape, data)
}

/// Runs a matmul and returns its cost-model figures.
fn mm(a: &MatmulArgs<'_>) -> Result<Option<Cost>> {
    matmul(a)?;
    let dims = a.validate()?;
    Ok(Some(match a.addend {
        Some(_) => dims.cost_with_addend(),
        None => dims.cost(),
    }))
}

/// The value tables of one UltraMemV2 layer (the same at every token count).
pub struct LayerTables<V> {
    down: Vec<V>,
    up: Vec<V>,
}

impl<V: Float> LayerTables<V> {
    pub fn new(cfg: &UltraMemV2Config) -> LayerTables<V> {
        LayerTables {
            down: table(cfg.table_rows() * cfg.dp),
            up: table(cfg.table_rows() * cfg.dv),
        }
    }
}

/// Host-side parameters and activations of one UltraMemV2 layer at `tokens` tokens.
pub struct LayerData<'t, V> {
    cfg: UltraMemV2Config,
    tokens: usize,
    x: Vec<f32>,
    w_q: Vec<f32>,
    gamma: Vec<f32>,
    keys: Vec<f32>,
    cores: Vec<f32>,
    u: Vec<f32>,
    v: Vec<f32>,
    w_pre: Vec<f32>,
    w_out: Vec<f32>,
    down: &'t [V],
    up: &'t [V],
    shuffle: Vec<u32>,
}

impl<'t, V: Float> LayerData<'t, V> {
    pub fn new(
        cfg: &UltraMemV2Config,
        tables: &'t LayerTables<V>,
        tokens: usize,
        seed: u64,
    ) -> LayerData<'t, V> {
        let mut rng = SplitMix64::new(seed);
        let (d, h, r, dk, n) = (cfg.d_model, cfg.heads, cfg.rank, cfg.dk, cfg.n);
        LayerData {
            cfg: *cfg,
            tokens,
            x: normals(&mut rng, tokens * d, 1.0),
            w_q: normals(&mut rng, cfg.query_rows() * d, (d as f64).powf(-0.5)),
            gamma: vec![1.0; dk],
            keys: normals(&mut rng, h * 2 * r * n * dk, 1.0),
            cores: normals(&mut rng, h * cfg.cores * r * r, 1.0),
            u: normals(&mut rng, h * r, 1.0),
            v: normals(&mut rng, h * r, 1.0),
            w_pre: normals(&mut rng, cfg.dp * d, (d as f64).powf(-0.5)),
            w_out: normals(&mut rng, d * cfg.dv, (cfg.dv as f64).powf(-0.5)),
            down: &tables.down,
            up: &tables.up,
            shuffle: rng.permutation(n * n),
        }
    }
}

/// The UltraMemV2 layer's forward and backward, op by op, as `UltraMemV2Layer` calls them.
pub fn ultramem_v2_layer<V: Float>(
    rec: &mut Recorder<'_>,
    data: &LayerData<'_, V>,
    seed: u64,
) -> Result<()> {
    let cfg = &data.cfg;
    let t = data.tokens;
    let mut rng = SplitMix64::new(seed);
    let (d, h, r, dk, n) = (cfg.d_model, cfg.heads, cfg.rank, cfg.dk, cfg.n);
    let qrows = cfg.query_rows();
    let qph = cfg.queries_per_head();
    // Tied queries are normalised once and repeated over the ranks.
    let repeat = 2 * r / qph;
    let slots = h * cfg.m;
    let eps = cfg.eps as f32;
    let q_raw = normals(&mut rng, t * qrows, 1.0);
    let q = normals(&mut rng, t * h * 2 * r * dk, 1.0);
    let idx = distinct_indices(&mut rng, t * h, cfg.m, n * n);
    let rows = distinct_indices(&mut rng, t, slots, cfg.table_rows());
    let scores = normals(&mut rng, t * slots * cfg.cores, 1.0);
    let z = normals(&mut rng, t * cfg.dp, 1.0);
    let y = normals(&mut rng, t * cfg.dv, 1.0);
    let dout = normals(&mut rng, t * d, 1.0);
    let dq = normals(&mut rng, t * h * 2 * r * dk, 1.0);
    let dkeys = normals(&mut rng, h * 2 * r * n * dk, 1.0);
    let dz = normals(&mut rng, t * cfg.dp, 1.0);
    let dscore = normals(&mut rng, t * slots * cfg.cores, 1.0);
    let keys_shape = [h, 2, r, n, dk];
    let f = Pass::Forward;
    let b = Pass::Backward;

    rec.op(
        f,
        "matmul x·W_qᵀ",
        |dev| Ok((up(dev, &[t, d], &data.x)?, up(dev, &[qrows, d], &data.w_q)?)),
        |(x, w)| mm(&MatmulArgs::linear(x, w)),
    )?;
    let q_norm = |dev: &Device| -> Result<(Tensor<f32>, Tensor<f32>)> {
        Ok((
            up(dev, &[t * h * qph, dk], &q_raw)?,
            up(dev, &[dk], &data.gamma)?,
        ))
    };
    rec.op(f, "rmsnorm q", q_norm, |(x, gamma)| {
        let a = RmsNormArgs {
            x,
            gamma,
            eps,
            repeat,
        };
        rmsnorm(&a)?;
        Ok(Some(a.validate()?.cost()))
    })?;
    let key_norm = |dev: &Device| -> Result<(Tensor<f32>, Tensor<f32>)> {
        Ok((
            up(dev, &keys_shape, &data.keys)?,
            up(dev, &[dk], &data.gamma)?,
        ))
    };
    rec.op(f, "rmsnorm keys", key_norm, |(x, gamma)| {
        let a = RmsNormArgs {
            x,
            gamma,
            eps,
            repeat: 1,
        };
        rmsnorm(&a)?;
        Ok(Some(a.validate()?.cost()))
    })?;
    let topk_inputs = |dev: &Device| -> Result<[Tensor<f32>; 5]> {
        Ok([
            up(dev, &[t, h, 2, r, dk], &q)?,
            up(dev, &keys_shape, &data.keys)?,
            up(dev, &[h, cfg.cores, r, r], &data.cores)?,
            up(dev, &[h, r], &data.u)?,
            up(dev, &[h, r], &data.v)?,
        ])
    };
    rec.op(f, "tucker_topk", topk_inputs, |s| {
        let a = tucker_args(s, cfg);
        tucker_topk(&a)?;
        Ok(Some(a.validate()?.cost(4)))
    })?;
    rec.op(
        f,
        "index_map",
        |dev| {
            Ok((
                Tensor::from_slice(dev, &[t, h, cfg.m], &idx)?,
                Tensor::from_slice(dev, &[n * n], &data.shuffle)?,
            ))
        },
        |(idx, shuffle)| {
            let a = IndexMapArgs {
                idx,
                shuffle: Some(shuffle),
                map: cfg.map,
            };
            index_map(&a)?;
            Ok(Some(a.validate()?.cost()))
        },
    )?;
    rec.op(
        f,
        "matmul x·W_preᵀ",
        |dev| {
            Ok((
                up(dev, &[t, d], &data.x)?,
                up(dev, &[cfg.dp, d], &data.w_pre)?,
            ))
        },
        |(x, w)| mm(&MatmulArgs::linear(x, w)),
    )?;
    let peer_inputs = |dev: &Device| -> Result<PeerInputs<V>> {
        Ok(PeerInputs {
            rows: Tensor::from_slice(dev, &[t, slots], &rows)?,
            scores: up(dev, &[t, slots, cfg.cores], &scores)?,
            z: up(dev, &[t, cfg.dp], &z)?,
            down: Tensor::from_slice(dev, &[cfg.table_rows(), cfg.dp], data.down)?,
            up: Tensor::from_slice(dev, &[cfg.table_rows(), cfg.dv], data.up)?,
            dout: up(dev, &[t, cfg.dv], &y)?,
        })
    };
    rec.op(f, "peer_ffn", peer_inputs, |p| {
        let a = p.args(cfg.activation);
        peer_ffn(&a)?;
        let dims = a.validate()?;
        Ok(Some(dims.cost(
            V::DTYPE.size_bytes(),
            dims.expected_distinct_rows(),
        )))
    })?;
    rec.op(
        f,
        "matmul y·W_outᵀ",
        |dev| {
            Ok((
                up(dev, &[t, cfg.dv], &y)?,
                up(dev, &[d, cfg.dv], &data.w_out)?,
            ))
        },
        |(y, w)| mm(&MatmulArgs::linear(y, w)),
    )?;

    // The backward, in the order UltraMemV2Layer::backward runs it.
    let weight_grad =
        |rec: &mut Recorder<'_>, name: &str, dy: (&[usize], &[f32]), x: (&[usize], &[f32])| {
            rec.op(
                b,
                name,
                |dev| Ok((up(dev, dy.0, dy.1)?, up(dev, x.0, x.1)?)),
                |(dy, x)| mm(&MatmulArgs::linear_weight_grad(dy, x)),
            )
        };
    weight_grad(
        rec,
        "matmul dW_out = doutᵀ·y",
        (&[t, d], &dout),
        (&[t, cfg.dv], &y),
    )?;
    rec.op(
        b,
        "matmul dy = dout·W_out",
        |dev| {
            Ok((
                up(dev, &[t, d], &dout)?,
                up(dev, &[d, cfg.dv], &data.w_out)?,
            ))
        },
        |(dout, w)| mm(&MatmulArgs::linear_input_grad(dout, w, None)),
    )?;
    rec.op(b, "peer_ffn backward", peer_inputs, |p| {
        let a = p.args(cfg.activation);
        peer_ffn_backward(&a, &p.dout, BackwardMode::Deterministic)?;
        let dims = a.validate()?;
        Ok(Some(dims.backward_cost(
            V::DTYPE.size_bytes(),
            dims.expected_distinct_rows(),
        )))
    })?;
    weight_grad(
        rec,
        "matmul dW_pre = dzᵀ·x",
        (&[t, cfg.dp], &dz),
        (&[t, d], &data.x),
    )?;
    rec.op(
        b,
        "matmul dx = dz·W_pre",
        |dev| {
            Ok((
                up(dev, &[t, cfg.dp], &dz)?,
                up(dev, &[cfg.dp, d], &data.w_pre)?,
            ))
        },
        |(dz, w)| mm(&MatmulArgs::linear_input_grad(dz, w, None)),
    )?;
    rec.op(
        b,
        "tucker_topk backward",
        |dev| {
            Ok((
                topk_inputs(dev)?,
                Tensor::from_slice(dev, &[t, h, cfg.m], &idx)?,
                up(dev, &[t, h, cfg.m, cfg.cores], &dscore)?,
            ))
        },
        |(s, idx, dscore)| {
            tucker_topk_backward(
                &tucker_args(s, cfg),
                idx,
                dscore,
                BackwardMode::Deterministic,
            )?;
            Ok(None)
        },
    )?;
    rec.op(
        b,
        "rmsnorm q backward",
        |dev| Ok((q_norm(dev)?, up(dev, &[t * h * qph, repeat * dk], &dq)?)),
        |((x, gamma), dy)| {
            rmsnorm_backward(
                &RmsNormArgs {
                    x,
                    gamma,
                    eps,
                    repeat,
                },
                dy,
            )?;
            Ok(None)
        },
    )?;
    weight_grad(
        rec,
        "matmul dW_q = dq_rawᵀ·x",
        (&[t, qrows], &q_raw),
        (&[t, d], &data.x),
    )?;
    rec.op(
        b,
        "matmul dx += dq_raw·W_q",
        |dev| {
            Ok((
                up(dev, &[t, qrows], &q_raw)?,
                up(dev, &[qrows, d], &data.w_q)?,
                up(dev, &[t, d], &data.x)?,
            ))
        },
        |(dq, w, acc)| mm(&MatmulArgs::linear_input_grad(dq, w, Some(acc))),
    )?;
    rec.op(
        b,
        "rmsnorm keys backward",
        |dev| Ok((key_norm(dev)?, up(dev, &keys_shape, &dkeys)?)),
        |((x, gamma), dy)| {
            rmsnorm_backward(
                &RmsNormArgs {
                    x,
                    gamma,
                    eps,
                    repeat: 1,
                },
                dy,
            )?;
            Ok(None)
        },
    )?;
    Ok(())
}

/// The PEER op's inputs on the device.
pub struct PeerInputs<V: Float> {
    rows: Tensor<u32>,
    scores: Tensor<f32>,
    z: Tensor<f32>,
    down: Tensor<V>,
    up: Tensor<V>,
    dout: Tensor<f32>,
}

impl<V: Float> PeerInputs<V> {
    fn args(&self, activation: Activation) -> PeerFfnArgs<'_, V> {
        PeerFfnArgs {
            rows: &self.rows,
            scores: &self.scores,
            z: &self.z,
            down: &self.down,
            up: &self.up,
            activation,
        }
    }
}

/// The Tucker top-k's arguments from `[q, keys, cores, u, v, ..]`.
fn tucker_args<'a>(t: &'a [Tensor<f32>], cfg: &UltraMemV2Config) -> TuckerTopkArgs<'a, f32> {
    TuckerTopkArgs {
        q: &t[0],
        keys: &t[1],
        cores: &t[2],
        u: &t[3],
        v: &t[4],
        k1: Some(cfg.k1),
        m: cfg.m,
    }
}

/// The Tucker top-k alone (forward and backward) at a layer's shape.
pub fn tucker_topk_only(rec: &mut Recorder<'_>, cfg: &UltraMemV2Config, seed: u64) -> Result<()> {
    let t = rec.tokens;
    let mut rng = SplitMix64::new(seed);
    let (h, r, dk, n) = (cfg.heads, cfg.rank, cfg.dk, cfg.n);
    let q = normals(&mut rng, t * h * 2 * r * dk, 1.0);
    let keys = normals(&mut rng, h * 2 * r * n * dk, 1.0);
    let cores = normals(&mut rng, h * cfg.cores * r * r, 1.0);
    let proxy = normals(&mut rng, 2 * h * r, 1.0);
    let idx = distinct_indices(&mut rng, t * h, cfg.m, n * n);
    let dscore = normals(&mut rng, t * h * cfg.m * cfg.cores, 1.0);
    let inputs = |dev: &Device| -> Result<[Tensor<f32>; 6]> {
        Ok([
            up(dev, &[t, h, 2, r, dk], &q)?,
            up(dev, &[h, 2, r, n, dk], &keys)?,
            up(dev, &[h, cfg.cores, r, r], &cores)?,
            up(dev, &[h, r], &proxy[..h * r])?,
            up(dev, &[h, r], &proxy[h * r..])?,
            up(dev, &[t, h, cfg.m, cfg.cores], &dscore)?,
        ])
    };
    rec.op(Pass::Forward, "tucker_topk", inputs, |s| {
        let a = tucker_args(s, cfg);
        tucker_topk(&a)?;
        Ok(Some(a.validate()?.cost(4)))
    })?;
    rec.op(
        Pass::Backward,
        "tucker_topk backward",
        |dev| Ok((inputs(dev)?, Tensor::from_slice(dev, &[t, h, cfg.m], &idx)?)),
        |(s, idx)| {
            tucker_topk_backward(
                &tucker_args(s, cfg),
                idx,
                &s[5],
                BackwardMode::Deterministic,
            )?;
            Ok(None)
        },
    )
}

/// A PKM memory's sizes.
#[derive(Clone, Copy, Debug)]
pub struct PkmShape {
    /// Model width `D` (the value rows' width).
    pub d_model: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Query width per head `Dk`.
    pub dk: usize,
    /// Sub-keys per side `n` (`n²` value rows).
    pub n: usize,
    /// Slots per head `k` (= K1).
    pub k: usize,
}

/// The gather's inputs on the device: rows, weights, the value table, `dout`.
type GatherInputs = (Tensor<u32>, Tensor<f32>, Tensor<bf16>, Tensor<f32>);

/// The PKM memory (Lample et al.): additive top-k, softmax over each head's k, weighted gather
/// of `D`-wide value rows from an `n²`-row bf16 table `values`; forward and backward.
pub fn pkm(rec: &mut Recorder<'_>, shape: PkmShape, values: &[bf16], seed: u64) -> Result<()> {
    let PkmShape {
        d_model,
        heads,
        dk,
        n,
        k,
    } = shape;
    let t = rec.tokens;
    let mut rng = SplitMix64::new(seed);
    let q = normals(&mut rng, t * heads * dk, 1.0);
    let keys = normals(&mut rng, heads * 2 * n * dk / 2, 1.0);
    let idx = distinct_indices(&mut rng, t * heads, k, n * n);
    let score = normals(&mut rng, t * heads * k, 1.0);
    let weights: Vec<f32> = normals(&mut rng, t * heads * k, 0.1);
    let dout = normals(&mut rng, t * d_model, 1.0);
    let topk = |dev: &Device| -> Result<(Tensor<f32>, Tensor<f32>)> {
        Ok((
            up(dev, &[t, heads, dk], &q)?,
            up(dev, &[heads, 2, n, dk / 2], &keys)?,
        ))
    };
    let f = Pass::Forward;
    let b = Pass::Backward;
    rec.op(f, "additive_topk", topk, |(q, keys)| {
        let a = AdditiveTopkArgs {
            q,
            keys,
            k,
            k1: Some(k),
        };
        additive_topk(&a)?;
        Ok(Some(a.validate()?.cost(4)))
    })?;
    let scores = |dev: &Device| up(dev, &[t, heads, k], &score);
    rec.op(f, "score_fn softmax", scores, |s| {
        let a = ScoreFnArgs {
            score: s,
            func: ScoreFn::Softmax,
        };
        score_fn(&a)?;
        Ok(Some(a.validate()?.cost()))
    })?;
    let gather = |dev: &Device| -> Result<GatherInputs> {
        Ok((
            Tensor::from_slice(dev, &[t, heads * k], &idx)?,
            up(dev, &[t, heads * k, 1], &weights)?,
            Tensor::from_slice(dev, &[n * n, d_model], values)?,
            up(dev, &[t, d_model], &dout)?,
        ))
    };
    rec.op(f, "weighted_gather", gather, |(rows, weights, table, _)| {
        let a = WeightedGatherArgs {
            rows,
            weights,
            table,
        };
        weighted_gather(&a)?;
        let dims = a.validate()?;
        Ok(Some(dims.cost(2, dims.expected_distinct_rows())))
    })?;
    rec.op(
        b,
        "weighted_gather backward",
        gather,
        |(rows, weights, table, dout)| {
            let a = WeightedGatherArgs {
                rows,
                weights,
                table,
            };
            weighted_gather_backward(&a, dout, BackwardMode::Deterministic)?;
            let dims = a.validate()?;
            Ok(Some(dims.backward_cost(2, dims.expected_distinct_rows())))
        },
    )?;
    rec.op(
        b,
        "score_fn softmax backward",
        |dev| Ok((scores(dev)?, up(dev, &[t, heads, k], &weights)?)),
        |(s, dy)| {
            score_fn_backward(
                &ScoreFnArgs {
                    score: s,
                    func: ScoreFn::Softmax,
                },
                dy,
            )?;
            Ok(None)
        },
    )?;
    rec.op(
        b,
        "additive_topk backward",
        |dev| {
            Ok((
                topk(dev)?,
                Tensor::from_slice(dev, &[t, heads, k], &idx)?,
                up(dev, &[t, heads, k], &weights)?,
            ))
        },
        |((q, keys), idx, dscore)| {
            let a = AdditiveTopkArgs {
                q,
                keys,
                k,
                k1: Some(k),
            };
            additive_topk_backward(&a, idx, dscore, BackwardMode::Deterministic)?;
            Ok(Some(a.validate()?.backward_cost(4)))
        },
    )
}

/// Host weights of an MoE layer: `W1`, `W3` `[E, F, D]`, `W2` `[E, D, F]` in bf16, router.
pub struct MoeData {
    pub d_model: usize,
    pub experts: usize,
    pub top_k: usize,
    pub ffn: usize,
    w: Vec<bf16>,
    router: Vec<f32>,
}

impl MoeData {
    pub fn new(d_model: usize, experts: usize, top_k: usize, ffn: usize, seed: u64) -> MoeData {
        let mut rng = SplitMix64::new(seed);
        MoeData {
            d_model,
            experts,
            top_k,
            ffn,
            w: table(experts * ffn * d_model),
            router: normals(&mut rng, experts * d_model, (d_model as f64).powf(-0.5)),
        }
    }
}

/// The MoE layer forward: the router's logits (a matmul) and the expert FFN with softmax top-k
/// routing.
pub fn moe_layer(rec: &mut Recorder<'_>, m: &MoeData, seed: u64) -> Result<()> {
    let t = rec.tokens;
    let mut rng = SplitMix64::new(seed);
    let (d, e, f) = (m.d_model, m.experts, m.ffn);
    let x = normals(&mut rng, t * d, 1.0);
    let logits = normals(&mut rng, t * e, 1.0);
    rec.op(
        Pass::Forward,
        "matmul router x·W_rᵀ",
        |dev| Ok((up(dev, &[t, d], &x)?, up(dev, &[e, d], &m.router)?)),
        |(x, w)| mm(&MatmulArgs::linear(x, w)),
    )?;
    rec.op(
        Pass::Forward,
        "moe_ffn",
        |dev| {
            Ok((
                up(dev, &[t, d], &x)?,
                up(dev, &[t, e], &logits)?,
                Tensor::from_slice(dev, &[e, f, d], &m.w)?,
                Tensor::from_slice(dev, &[e, f, d], &m.w)?,
                Tensor::from_slice(dev, &[e, d, f], &m.w)?,
            ))
        },
        |(x, logits, w1, w3, w2)| {
            let a = MoeFfnArgs {
                x,
                routing: MoeRouting::Softmax {
                    logits,
                    k: m.top_k,
                    gates: GateNorm::Renormalized,
                },
                w1,
                w3,
                w2,
            };
            moe_ffn(&a)?;
            let dims = a.validate()?;
            Ok(Some(dims.cost(2, dims.expected_distinct_experts())))
        },
    )
}
