//! Criterion benches of every op with kernels, on every device found (the CPU reference is the
//! baseline line), plus the device's copy bandwidth to hold the results against.
//!
//! Throughput is the cost model's minimum bytes (distinct rows read once, outputs written once),
//! so criterion prints GB/s; the FLOPs of each case are printed once. Inputs are built and
//! uploaded outside the timed region; every timed call ends with the device synchronised (the
//! ops read their status word back). Rows are uniform random (the honest worst case).
//!
//! `ULTRAMEM_BENCH_SIZE=large` uses multi-GB bf16 tables (for a GPU; the default is small
//! enough for the CPU and lavapipe). `ULTRAMEM_BENCH_DEVICES=cuda,wgpu,cpu` picks devices.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ultramem::cost::count_distinct;
use ultramem::registry::KernelId;
use ultramem::rng::SplitMix64;
use ultramem::*;

fn devices() -> Vec<Device> {
    let wanted = std::env::var("ULTRAMEM_BENCH_DEVICES").unwrap_or_else(|_| "cuda,wgpu,cpu".into());
    let mut out = Vec::new();
    for name in wanted.split(',') {
        let dev = match name.trim() {
            "cuda" => Device::cuda(0),
            "wgpu" => Device::wgpu(),
            "cpu" => Ok(Device::cpu()),
            other => panic!("unknown device {other}"),
        };
        match dev {
            Ok(d) => out.push(d),
            Err(e) => eprintln!("bench: skipping {name}: {e}"),
        }
    }
    out
}

fn large() -> bool {
    std::env::var("ULTRAMEM_BENCH_SIZE").is_ok_and(|v| v == "large")
}

/// (tokens, slots, table rows, width) cases: batch 1 and a batch, at the 1B/7B value width.
fn shapes(dev: &Device) -> Vec<(usize, usize, usize, usize)> {
    match (large(), dev.backend()) {
        // 2^22 rows × 768 bf16 = 6.4 GB: far beyond any L2.
        (true, Backend::Cuda) => vec![
            (1, 128, 1 << 22, 768),
            (256, 128, 1 << 22, 768),
            (4096, 128, 1 << 22, 768),
        ],
        // WebGPU caps a storage binding (128 MiB on lavapipe): the f32 gradients must fit.
        (_, Backend::Wgpu) => vec![(1, 128, 16_384, 768), (64, 32, 16_384, 256)],
        _ => vec![(1, 128, 65_536, 768), (64, 32, 65_536, 256)],
    }
}

fn name(dev: &Device) -> String {
    dev.backend().to_string()
}

fn random_rows(tokens: usize, slots: usize, rows: usize) -> Vec<u32> {
    let mut rng = SplitMix64::new(7);
    (0..tokens * slots)
        .map(|_| rng.below(rows as u64) as u32)
        .collect()
}

fn weighted_gather_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("weighted_gather/{}", name(&dev)));
        for (tokens, slots, rows, dv) in shapes(&dev) {
            let idx = random_rows(tokens, slots, rows);
            let distinct = count_distinct(&idx) as f64;
            let rows_t = Tensor::from_vec(&dev, &[tokens, slots], idx).unwrap();
            let w = Tensor::from_vec(&dev, &[tokens, slots, 2], vec![0.5f32; tokens * slots * 2])
                .unwrap();
            let table =
                Tensor::from_vec(&dev, &[rows, dv], vec![bf16::from_f32(0.25); rows * dv]).unwrap();
            let dout = Tensor::from_vec(&dev, &[tokens, dv], vec![1.0f32; tokens * dv]).unwrap();
            let args = WeightedGatherArgs {
                rows: &rows_t,
                weights: &w,
                table: &table,
            };
            let dims = args.validate().unwrap();
            let id = format!("T{tokens}_M{slots}_N{rows}_Dv{dv}_bf16");
            let fwd = dims.cost(2, distinct);
            println!(
                "weighted_gather {id} on {dev}: forward {:.3e} bytes, {:.3e} FLOPs",
                fwd.bytes(),
                fwd.flops
            );
            group.throughput(Throughput::Bytes(fwd.bytes() as u64));
            group.bench_with_input(BenchmarkId::new("forward", &id), &args, |b, a| {
                b.iter(|| weighted_gather(a).unwrap())
            });
            let bwd = dims.backward_cost(2, distinct);
            group.throughput(Throughput::Bytes(bwd.bytes() as u64));
            for mode in [BackwardMode::Deterministic, BackwardMode::Atomic] {
                group.bench_with_input(
                    BenchmarkId::new(format!("backward_{mode:?}"), &id),
                    &args,
                    |b, a| b.iter(|| weighted_gather_backward(a, &dout, mode).unwrap()),
                );
            }
        }
        group.finish();
    }
}

fn peer_ffn_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("peer_ffn/{}", name(&dev)));
        for (tokens, slots, rows, dv) in shapes(&dev) {
            let dp = dv / 2;
            let idx = random_rows(tokens, slots, rows);
            let distinct = count_distinct(&idx) as f64;
            let rows_t = Tensor::from_vec(&dev, &[tokens, slots], idx).unwrap();
            let s = Tensor::from_vec(&dev, &[tokens, slots, 2], vec![0.5f32; tokens * slots * 2])
                .unwrap();
            let z = Tensor::from_vec(&dev, &[tokens, dp], vec![0.1f32; tokens * dp]).unwrap();
            let down =
                Tensor::from_vec(&dev, &[rows, dp], vec![bf16::from_f32(0.25); rows * dp]).unwrap();
            let up =
                Tensor::from_vec(&dev, &[rows, dv], vec![bf16::from_f32(0.25); rows * dv]).unwrap();
            let dout = Tensor::from_vec(&dev, &[tokens, dv], vec![1.0f32; tokens * dv]).unwrap();
            let args = PeerFfnArgs {
                rows: &rows_t,
                scores: &s,
                z: &z,
                down: &down,
                up: &up,
                activation: Activation::Identity,
            };
            let dims = args.validate().unwrap();
            let id = format!("T{tokens}_M{slots}_N{rows}_Dp{dp}_Dv{dv}_bf16");
            let fwd = dims.cost(2, distinct);
            println!(
                "peer_ffn {id} on {dev}: forward {:.3e} bytes, {:.3e} FLOPs",
                fwd.bytes(),
                fwd.flops
            );
            group.throughput(Throughput::Bytes(fwd.bytes() as u64));
            group.bench_with_input(BenchmarkId::new("forward", &id), &args, |b, a| {
                b.iter(|| peer_ffn(a).unwrap())
            });
            group.throughput(Throughput::Bytes(
                dims.backward_cost(2, distinct).bytes() as u64
            ));
            for mode in [BackwardMode::Deterministic, BackwardMode::Atomic] {
                group.bench_with_input(
                    BenchmarkId::new(format!("backward_{mode:?}"), &id),
                    &args,
                    |b, a| b.iter(|| peer_ffn_backward(a, &dout, mode).unwrap()),
                );
            }
        }
        group.finish();
    }
}

fn row_sort_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("row_sort/{}", name(&dev)));
        for (tokens, slots, rows, _) in shapes(&dev) {
            let rows_t =
                Tensor::from_vec(&dev, &[tokens, slots], random_rows(tokens, slots, rows)).unwrap();
            let args = RowSortArgs {
                rows: &rows_t,
                table_rows: rows,
            };
            group.throughput(Throughput::Bytes(
                args.validate().unwrap().cost().bytes() as u64
            ));
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("T{tokens}_M{slots}_N{rows}")),
                &args,
                |b, a| {
                    b.iter(|| {
                        let order = row_sort(a).unwrap();
                        dev.synchronize().unwrap();
                        order
                    })
                },
            );
        }
        group.finish();
    }
}

/// Device-to-device copy: the ceiling the value kernels are held against.
fn copy_bandwidth_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("copy/{}", name(&dev)));
        let words = if large() && dev.backend() == Backend::Cuda {
            1 << 28
        } else {
            1 << 22
        };
        let src = Tensor::from_vec(&dev, &[words], vec![1u32; words]).unwrap();
        // A copy reads and writes every byte.
        group.throughput(Throughput::Bytes((2 * 4 * words) as u64));
        group.bench_function(format!("{} MB", (4 * words) >> 20), |b| {
            b.iter(|| {
                let copy = src.try_clone().unwrap();
                dev.synchronize().unwrap();
                copy
            })
        });
        group.finish();
    }
}

/// The fused Tucker top-k at the paper's shapes (UltraMemV2-227M/1.2B: n 360, Dk 192,
/// m = K1 = 32; 1B/7B: n 528, Dk 512, K1 = m = 128; R = Cn = 2) for T ∈ {1, 64, 4096}; T = 4096
/// only on CUDA (the CPU reference and lavapipe would take minutes per iteration). The additive
/// op runs the same kernels.
/// Normal random f32 tensors on one device, from one seed.
struct RandomTensors<'d> {
    dev: &'d Device,
    rng: SplitMix64,
}

impl RandomTensors<'_> {
    fn make(&mut self, shape: &[usize]) -> Tensor<f32> {
        let len = shape.iter().product();
        let data = self.rng.normals(len, 1.0).into_iter().map(|x| x as f32);
        Tensor::from_vec(self.dev, shape, data.collect()).unwrap()
    }
}

/// Inputs of one Tucker selection: `q[T,1,2,2,Dk]`, `keys[1,2,2,n,Dk]`, two cores, `(u, v)`.
struct TuckerInputs {
    q: Tensor<f32>,
    keys: Tensor<f32>,
    cores: Tensor<f32>,
    u: Tensor<f32>,
    v: Tensor<f32>,
}

impl TuckerInputs {
    fn new(dev: &Device, tokens: usize, n: usize, dk: usize) -> Self {
        let mut rand = RandomTensors {
            dev,
            rng: SplitMix64::new(3),
        };
        TuckerInputs {
            q: rand.make(&[tokens, 1, 2, 2, dk]),
            keys: rand.make(&[1, 2, 2, n, dk]),
            cores: rand.make(&[1, 2, 2, 2]),
            u: rand.make(&[1, 2]),
            v: rand.make(&[1, 2]),
        }
    }

    fn args(&self, k1: usize, m: usize) -> TuckerTopkArgs<'_, f32> {
        TuckerTopkArgs {
            q: &self.q,
            keys: &self.keys,
            cores: &self.cores,
            u: &self.u,
            v: &self.v,
            k1: Some(k1),
            m,
        }
    }
}

/// The fused top-k at the paper's two Tucker shapes (R = Cn = 2, K1 = m) and, on the additive
/// path, a PKM-sized memory (512² slots, 256-wide sub-keys, K1 = k = 32).
fn product_key_topk_bench(c: &mut Criterion) {
    for dev in devices() {
        let tokens: &[usize] = match dev.backend() {
            Backend::Cuda => &[1, 64, 4096],
            _ => &[1, 64],
        };
        let mut group = c.benchmark_group(format!("tucker_topk/{}", name(&dev)));
        group.sample_size(10);
        for (label, n, dk, m) in [
            ("227m_1_2b", 360usize, 192usize, 32usize),
            ("1b_7b", 528, 512, 128),
        ] {
            for &t in tokens {
                let inputs = TuckerInputs::new(&dev, t, n, dk);
                let args = inputs.args(m, m);
                let cost = args.validate().unwrap().cost(4);
                println!(
                    "tucker_topk {label} T={t} on {dev}: {:.3e} bytes, {:.3e} FLOPs",
                    cost.bytes(),
                    cost.flops
                );
                group.throughput(Throughput::Bytes(cost.bytes() as u64));
                group.bench_with_input(BenchmarkId::new(label, format!("T{t}")), &args, |b, a| {
                    b.iter(|| tucker_topk(a).unwrap())
                });
            }
        }
        group.finish();

        let mut group = c.benchmark_group(format!("additive_topk/{}", name(&dev)));
        group.sample_size(10);
        let (n, dk, k) = (512usize, 256usize, 32usize);
        for &t in tokens {
            let mut rand = RandomTensors {
                dev: &dev,
                rng: SplitMix64::new(5),
            };
            let (q, keys) = (rand.make(&[t, 1, 2 * dk]), rand.make(&[1, 2, n, dk]));
            let args = AdditiveTopkArgs {
                q: &q,
                keys: &keys,
                k1: Some(k),
                k,
            };
            let cost = args.validate().unwrap().cost(4);
            println!(
                "additive_topk pkm_512x512 T={t} on {dev}: {:.3e} bytes, {:.3e} FLOPs",
                cost.bytes(),
                cost.flops
            );
            group.throughput(Throughput::Bytes(cost.bytes() as u64));
            group.bench_with_input(
                BenchmarkId::new("pkm_512x512", format!("T{t}")),
                &args,
                |b, a| b.iter(|| additive_topk(a).unwrap()),
            );
        }
        group.finish();
    }
}

fn score_fn_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("score_fn/{}", name(&dev)));
        let (t, k) = (256usize, 128usize);
        let s = Tensor::from_vec(
            &dev,
            &[t, 1, k, 2],
            SplitMix64::new(4)
                .normals(t * k * 2, 1.0)
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        )
        .unwrap();
        let args = ScoreFnArgs {
            score: &s,
            func: ScoreFn::Softmax,
        };
        group.throughput(Throughput::Bytes(
            args.validate().unwrap().cost().bytes() as u64
        ));
        group.bench_function(format!("softmax_T{t}_k{k}_Cn2"), |b| {
            b.iter(|| score_fn(&args).unwrap())
        });
        group.finish();
    }
}

fn index_map_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("index_map/{}", name(&dev)));
        let len = 256 * 128;
        let n2 = 528 * 528;
        let idx = Tensor::from_vec(&dev, &[len], random_rows(256, 128, n2)).unwrap();
        let shuffle = Tensor::from_vec(&dev, &[n2], SplitMix64::new(6).permutation(n2)).unwrap();
        let args = IndexMapArgs {
            idx: &idx,
            shuffle: Some(&shuffle),
            map: IndexMapConfig::plain(n2 as u64),
        };
        group.throughput(Throughput::Bytes(
            args.validate().unwrap().cost().bytes() as u64
        ));
        group.bench_function(format!("shuffled_{len}"), |b| {
            b.iter(|| {
                let rows = index_map(&args).unwrap();
                dev.synchronize().unwrap();
                rows
            })
        });
        group.finish();
    }
}

/// int64 → u32 indices as the C ABI narrows a PyTorch `rows[T, M]` tensor (T 256, M 128): the
/// kernel moves 12 bytes per index (8 read, 4 written), no FLOPs; the time also holds
/// `narrow_indices`'s upload of the int64 values from the host.
fn index_cast_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("index_cast/{}", name(&dev)));
        let len = 256 * 128;
        let n2 = 528 * 528;
        let wide: Vec<i64> = random_rows(256, 128, n2)
            .into_iter()
            .map(i64::from)
            .collect();
        println!(
            "index_cast narrow {len} on {dev}: {:.3e} bytes, 0 FLOPs",
            (len * 12) as f64
        );
        group.throughput(Throughput::Bytes(len as u64 * 12));
        group.bench_function(format!("narrow_{len}"), |b| {
            b.iter(|| {
                let rows = narrow_indices(&dev, &[len], &wide, n2 as u64).unwrap();
                dev.synchronize().unwrap();
                rows
            })
        });
        group.finish();
    }
}

/// The layer's query projection `x W_qᵀ` (227M/1.2B: D 768 → 4·192; 1B/7B on CUDA: D 2048 →
/// 4·512), as `matmul` runs it in the forward.
fn matmul_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("matmul/{}", name(&dev)));
        group.sample_size(10);
        let cases: &[(usize, usize, usize)] = match dev.backend() {
            Backend::Cuda => &[(1, 2048, 2048), (64, 2048, 2048), (4096, 2048, 2048)],
            _ => &[(1, 768, 768), (64, 768, 768)],
        };
        for &(t, d_in, d_out) in cases {
            let mut rand = RandomTensors {
                dev: &dev,
                rng: SplitMix64::new(9),
            };
            let (x, w) = (rand.make(&[t, d_in]), rand.make(&[d_out, d_in]));
            let args = MatmulArgs {
                a: &x,
                b: &w,
                transpose_a: Transpose::No,
                transpose_b: Transpose::Yes,
                addend: None,
            };
            let cost = args.validate().unwrap().cost();
            println!(
                "matmul T={t} {d_in}->{d_out} on {dev}: {:.3e} bytes, {:.3e} FLOPs",
                cost.bytes(),
                cost.flops
            );
            group.throughput(Throughput::Bytes(cost.bytes() as u64));
            let id = BenchmarkId::new(format!("x_wt_{d_in}x{d_out}"), format!("T{t}"));
            group.bench_with_input(id, &args, |b, a| b.iter(|| matmul(a).unwrap()));
        }
        group.finish();
    }
}

/// The query RMSNorm, forward and backward (chunks of Dk 512, four per token).
fn rmsnorm_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("rmsnorm/{}", name(&dev)));
        group.sample_size(10);
        let tokens: &[usize] = match dev.backend() {
            Backend::Cuda => &[1, 64, 4096],
            _ => &[1, 64],
        };
        for &t in tokens {
            let mut rand = RandomTensors {
                dev: &dev,
                rng: SplitMix64::new(10),
            };
            let (x, gamma, dy) = (
                rand.make(&[t * 4, 512]),
                rand.make(&[512]),
                rand.make(&[t * 4, 512]),
            );
            let args = RmsNormArgs {
                x: &x,
                gamma: &gamma,
                eps: 1e-5,
                repeat: 1,
            };
            let cost = args.validate().unwrap().cost();
            println!(
                "rmsnorm T={t} 4x512 on {dev}: forward {:.3e} bytes, {:.3e} FLOPs",
                cost.bytes(),
                cost.flops
            );
            group.throughput(Throughput::Bytes(cost.bytes() as u64));
            group.bench_with_input(
                BenchmarkId::new("forward", format!("T{t}")),
                &args,
                |b, a| b.iter(|| rmsnorm(a).unwrap()),
            );
            group.bench_with_input(
                BenchmarkId::new("backward", format!("T{t}")),
                &args,
                |b, a| b.iter(|| rmsnorm_backward(a, &dy).unwrap()),
            );
        }
        group.finish();
    }
}

/// The MoE expert FFN (given routing, uniform random experts), bf16 weights: OLMoE-1B/7B's layer
/// (D 2048, F 1024, 64 experts, top-8) on CUDA, scaled by 8 in width elsewhere.
fn moe_ffn_bench(c: &mut Criterion) {
    for dev in devices() {
        let mut group = c.benchmark_group(format!("moe_ffn/{}", name(&dev)));
        group.sample_size(10);
        let ((dm, f, e, k), tokens): ((usize, usize, usize, usize), &[usize]) = match dev.backend()
        {
            Backend::Cuda => ((2048, 1024, 64, 8), &[1, 64, 4096]),
            _ => ((256, 128, 64, 8), &[1, 64]),
        };
        let mut rng = SplitMix64::new(13);
        let mut weights = |len: usize| {
            let data: Vec<bf16> = rng
                .normals(len, 0.02)
                .into_iter()
                .map(bf16::from_f64)
                .collect();
            data
        };
        let (w1, w3, w2) = (
            weights(e * f * dm),
            weights(e * f * dm),
            weights(e * dm * f),
        );
        let w1 = Tensor::from_vec(&dev, &[e, f, dm], w1).unwrap();
        let w3 = Tensor::from_vec(&dev, &[e, f, dm], w3).unwrap();
        let w2 = Tensor::from_vec(&dev, &[e, dm, f], w2).unwrap();
        for &t in tokens {
            let ids = random_rows(t, k, e);
            let distinct = count_distinct(&ids) as f64;
            let experts = Tensor::from_vec(&dev, &[t, k], ids).unwrap();
            let gates = Tensor::from_vec(&dev, &[t, k], vec![1.0 / k as f32; t * k]).unwrap();
            let x = RandomTensors {
                dev: &dev,
                rng: SplitMix64::new(14),
            }
            .make(&[t, dm]);
            let args = MoeFfnArgs {
                x: &x,
                routing: MoeRouting::Explicit {
                    experts: &experts,
                    gates: &gates,
                },
                w1: &w1,
                w3: &w3,
                w2: &w2,
            };
            let cost = args.validate().unwrap().cost(2, distinct);
            println!(
                "moe_ffn T={t} D={dm} F={f} E={e} k={k} ({distinct} experts touched) on {dev}: {:.3e} bytes, {:.3e} FLOPs",
                cost.bytes(),
                cost.flops
            );
            group.throughput(Throughput::Bytes(cost.bytes() as u64));
            group.bench_with_input(BenchmarkId::new("bf16", format!("T{t}")), &args, |b, a| {
                b.iter(|| moe_ffn(a).unwrap())
            });
        }
        group.finish();
    }
}

/// Adding a kernel file does not compile until this match names its bench.
fn kernel_benches(c: &mut Criterion) {
    for &id in KernelId::ALL {
        match id {
            KernelId::WeightedGather => weighted_gather_bench(c),
            KernelId::PeerFfn => peer_ffn_bench(c),
            KernelId::RowSort => row_sort_bench(c),
            KernelId::ProductKeyTopk => product_key_topk_bench(c),
            KernelId::ScoreFn => score_fn_bench(c),
            KernelId::IndexMap => index_map_bench(c),
            KernelId::IndexCast => index_cast_bench(c),
            KernelId::Matmul => matmul_bench(c),
            KernelId::Rmsnorm => rmsnorm_bench(c),
            KernelId::MoeFfn => moe_ffn_bench(c),
        }
    }
}

/// Scoring grows as the square root of the value rows on the CPU reference: n = 256 and 1024
/// sub-keys per side are 65 536 and 1 048 576 rows (16×); the time should grow about 4× (the
/// sub-key scores) plus the fixed K1² grid, and the target is at most 4.5×.
fn tucker_topk_scaling_bench(c: &mut Criterion) {
    let dev = Device::cpu();
    let mut group = c.benchmark_group("tucker_topk_scaling/cpu");
    let (tokens, dk, m) = (16usize, 192usize, 32usize);
    for n in [256usize, 1024] {
        let inputs = TuckerInputs::new(&dev, tokens, n, dk);
        let args = inputs.args(m, m);
        let cost = args.validate().unwrap().cost(4);
        println!(
            "tucker_topk_scaling rows={} T={tokens} Dk={dk} m=K1={m}: {:.3e} bytes, {:.3e} FLOPs",
            n * n,
            cost.bytes(),
            cost.flops
        );
        group.throughput(Throughput::Bytes(cost.bytes() as u64));
        group.bench_with_input(BenchmarkId::new("rows", n * n), &args, |b, a| {
            b.iter(|| tucker_topk(a).unwrap())
        });
    }
    group.finish();
}

/// The whole UltraMemV2 layer, forward and forward + backward (Deterministic), bf16 tables;
/// on a GPU also the forward with deferred checks (no wait until one `synchronize`).
/// CUDA runs the paper's two layer shapes at T ∈ {1, 64, 4096}; the CPU and wgpu run the 1B/7B
/// shape scaled down by 8 (D 256, Dk 64, n 66, m = K1 = 16, Dp 48, Dv 96) at T ∈ {1, 64}.
fn layer_bench(c: &mut Criterion) {
    use ultramem::layer::init::{init_params, InitScheme};
    use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
    for dev in devices() {
        let (configs, tokens): (Vec<(&str, UltraMemV2Config)>, &[usize]) = match dev.backend() {
            Backend::Cuda => (
                vec![
                    ("227m_1_2b", UltraMemV2Config::paper_227m_1_2b()),
                    ("1b_7b", UltraMemV2Config::paper_1b_7b()),
                ],
                &[1, 64, 4096],
            ),
            _ => (
                vec![(
                    "1b_7b_scaled_8x",
                    UltraMemV2Config::new(256, 64, 66, 16, 48, 96),
                )],
                &[1, 64],
            ),
        };
        let mut group = c.benchmark_group(format!("ultramem_v2_layer/{}", name(&dev)));
        group.sample_size(10);
        for (label, cfg) in configs {
            let (params, _) = init_params(&cfg, InitScheme::ReleasedCode, 1).unwrap();
            let layer = UltraMemV2Layer::new(&dev, &cfg, &params.cast::<f32, bf16>()).unwrap();
            drop(params);
            for &t in tokens {
                let mut rand = RandomTensors {
                    dev: &dev,
                    rng: SplitMix64::new(11),
                };
                let (x, dout) = (rand.make(&[t, cfg.d_model]), rand.make(&[t, cfg.d_model]));
                let shape = cfg.cost_shape();
                let bytes = shape.step_bytes(t, 2);
                println!(
                    "ultramem_v2_layer {label} T={t} on {dev}: forward {:.3e} bytes (weights {:.3e}), {:.3e} FLOPs",
                    bytes.total(),
                    bytes.weights(),
                    shape.flops_per_token() * t as f64
                );
                group.throughput(Throughput::Bytes(bytes.total() as u64));
                group.bench_function(
                    BenchmarkId::new(format!("{label}/forward"), format!("T{t}")),
                    |b| b.iter(|| layer.forward(&x).unwrap()),
                );
                if dev.backend() != Backend::Cpu {
                    // The latency a framework sees: every check queued, one wait at the end.
                    dev.set_deferred_checks(true);
                    group.bench_function(
                        BenchmarkId::new(
                            format!("{label}/forward_deferred_checks"),
                            format!("T{t}"),
                        ),
                        |b| {
                            b.iter(|| {
                                let fwd = layer.forward(&x).unwrap();
                                dev.synchronize().unwrap();
                                fwd
                            })
                        },
                    );
                    dev.set_deferred_checks(false);
                }
                group.bench_function(
                    BenchmarkId::new(format!("{label}/forward_backward"), format!("T{t}")),
                    |b| {
                        b.iter(|| {
                            let fwd = layer.forward(&x).unwrap();
                            layer
                                .backward(&x, &fwd.cache, &dout, BackwardMode::Deterministic)
                                .unwrap()
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(
    benches,
    copy_bandwidth_bench,
    kernel_benches,
    layer_bench,
    tucker_topk_scaling_bench
);
criterion_main!(benches);
