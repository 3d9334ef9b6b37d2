//! Criterion benches of the CPU reference: the baseline line every backend is held against.
//! Throughput is the cost model's minimum bytes, so criterion prints GB/s; FLOPs are printed
//! once per case. Inputs are built outside the timed region.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ultramem::cost::count_distinct;
use ultramem::rng::SplitMix64;
use ultramem::*;

fn weighted_gather_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("weighted_gather/cpu");
    let dev = Device::cpu();
    // Uniform random rows: the honest worst case for locality.
    for &(tokens, slots, rows, dv) in &[
        (1usize, 128usize, 65_536usize, 768usize),
        (64, 32, 65_536, 256),
    ] {
        let mut rng = SplitMix64::new(1);
        let idx: Vec<u32> = (0..tokens * slots)
            .map(|_| rng.below(rows as u64) as u32)
            .collect();
        let distinct = count_distinct(&idx) as f64;
        let rows_t = Tensor::from_vec(&dev, &[tokens, slots], idx).unwrap();
        let w =
            Tensor::from_vec(&dev, &[tokens, slots, 2], vec![0.5f32; tokens * slots * 2]).unwrap();
        let table =
            Tensor::from_vec(&dev, &[rows, dv], vec![bf16::from_f32(0.25); rows * dv]).unwrap();
        let args = WeightedGatherArgs {
            rows: &rows_t,
            weights: &w,
            table: &table,
        };
        let cost = args.validate().unwrap().cost(2, distinct);
        println!("weighted_gather T={tokens} M={slots} N={rows} Dv={dv} bf16: {:.3e} bytes, {:.3e} FLOPs", cost.bytes(), cost.flops);
        group.throughput(Throughput::Bytes(cost.bytes() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("T{tokens}_M{slots}_Dv{dv}")),
            &args,
            |b, a| b.iter(|| weighted_gather(a).unwrap()),
        );
    }
    group.finish();
}

fn tucker_topk_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tucker_topk/cpu");
    let dev = Device::cpu();
    // UltraMemV2-227M/1.2B scoring shape: n 360, Dk 192, m = K1 = 32, R = Cn = 2.
    let (tokens, n, dk, m) = (4usize, 360usize, 192usize, 32usize);
    let mut rng = SplitMix64::new(2);
    let mut tensor = |shape: &[usize]| {
        let len = shape.iter().product();
        Tensor::from_vec(
            &dev,
            shape,
            rng.normals(len, 1.0)
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        )
        .unwrap()
    };
    let q = tensor(&[tokens, 1, 2, 2, dk]);
    let keys = tensor(&[1, 2, 2, n, dk]);
    let cores = tensor(&[1, 2, 2, 2]);
    let u = tensor(&[1, 2]);
    let v = tensor(&[1, 2]);
    let args = TuckerTopkArgs {
        q: &q,
        keys: &keys,
        cores: &cores,
        u: &u,
        v: &v,
        k1: None,
        m,
    };
    let cost = args.validate().unwrap().cost(4);
    println!(
        "tucker_topk T={tokens} n={n} Dk={dk} m={m}: {:.3e} bytes, {:.3e} FLOPs",
        cost.bytes(),
        cost.flops
    );
    group.throughput(Throughput::Bytes(cost.bytes() as u64));
    group.bench_function("paper_227m_1_2b_T4", |b| {
        b.iter(|| tucker_topk(&args).unwrap())
    });
    group.finish();
}

criterion_group!(benches, weighted_gather_bench, tucker_topk_bench);
criterion_main!(benches);
