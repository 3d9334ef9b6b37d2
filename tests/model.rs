//! Validation of the GPU performance model (`ultramem::model`) on micro-kernels whose behaviour
//! on an H100 or H200 is published (`tests/model_kernels/*.ptx`, used only here and by the
//! report's "best copy"). Each test prints the model's prediction next to the published figure
//! and its source, and fails outside ±20% (bandwidths, latencies, throughputs) or when a
//! qualitative rule breaks (wavefront counts, which of two variants is faster).
//!
//! Several published figures are also card parameters (the DRAM roof is a measured copy, the
//! L2 roof a measured L2 read, the launch cost a measured empty launch): there the test checks
//! that the model's composition leaves them alone — that no other term (issue, bytes in flight,
//! latency) wrongly limits the kernel. The others are independent checks of the model's rules:
//! Little's law at low occupancy, sector efficiency, the L2's capacity, the dependent chain,
//! bank conflicts, FP32 and tensor-core issue.
//!
//! These are predictions. Nothing here ran on a GPU.

use ultramem::model::compile::ptxas;
use ultramem::model::{Card, KernelMemory, LaunchPrediction, Limit, Model};

const READ: &str = include_str!("model_kernels/read.ptx");
const COPY: &str = include_str!("model_kernels/copy.ptx");
const COMPUTE: &str = include_str!("model_kernels/compute.ptx");
const GATHER: &str = include_str!("model_kernels/gather.ptx");

/// The model of `card`, or `None` (printed loudly) without ptxas unless CI requires it.
fn model(card: Card) -> Option<Model> {
    if ptxas().is_none() {
        assert!(
            std::env::var("ULTRAMEM_REQUIRE_PTXAS").map_or(true, |v| v != "1"),
            "ULTRAMEM_REQUIRE_PTXAS=1 but no ptxas was found (pip install nvidia-cuda-nvcc-cu12)"
        );
        eprintln!("SKIPPED: the performance model needs ptxas (pip install nvidia-cuda-nvcc-cu12)");
        return None;
    }
    Some(Model::new(card))
}

fn u64s(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn u32s(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Prints and checks `predicted` against `published` within `tolerance` (relative).
fn check(what: &str, predicted: f64, published: f64, unit: &str, source: &str, tolerance: f64) {
    let ratio = predicted / published;
    println!(
        "{what}: predicted {predicted:.1} {unit}, published {published:.1} {unit} ({:+.1}%) [{source}]",
        (ratio - 1.0) * 100.0
    );
    assert!(
        (ratio - 1.0).abs() <= tolerance,
        "{what}: predicted {predicted:.1} {unit} is not within {:.0}% of {published:.1} {unit} ({source})",
        tolerance * 100.0
    );
}

/// Prints a prediction's terms, so a failing check shows why.
fn show(p: &LaunchPrediction) {
    let terms: Vec<String> = p
        .prediction
        .terms
        .iter()
        .map(|(l, t)| format!("{} {:.2} us", l.name(), t * 1e6))
        .collect();
    println!(
        "  {}: {} blocks ({} run), {} regs, {} blocks/SM, SASS/PTX {:.2}, issues {:.3e}; {}",
        p.entry,
        p.counts.blocks,
        p.counts.sampled_blocks,
        p.resources.registers,
        p.occupancy.blocks_per_sm,
        p.resources.sass_per_ptx(),
        p.counts.total_issues(),
        terms.join(", ")
    );
}

fn run(
    m: &Model,
    source: &str,
    entry: &'static str,
    blocks: u32,
    threads: u32,
    setup: impl FnOnce(&mut KernelMemory) -> Vec<Vec<u8>>,
) -> LaunchPrediction {
    let p = m
        .predict_kernel(entry, source, entry, blocks, threads, setup)
        .unwrap_or_else(|e| panic!("{entry}: {e}"));
    show(&p);
    p
}

/// A copy of `bytes` with 16-byte loads, one per thread.
fn copy_v4(m: &Model, bytes: usize) -> LaunchPrediction {
    let n4 = bytes / 16;
    run(m, COPY, "copy_v4", n4.div_ceil(256) as u32, 256, |mem| {
        let (s, d) = (mem.alloc(bytes), mem.alloc(bytes));
        vec![u64s(s), u64s(d), u32s(n4 as u32)]
    })
}

#[test]
fn copies_reach_the_measured_copy_bandwidth_with_16_and_4_byte_loads() {
    for (card, published, source) in [
        (
            Card::h100_sxm(),
            3008.0,
            "J mem_bw.log: float4 copy on an H100 SXM",
        ),
        (
            Card::h200(),
            3888.0,
            "GB gpu-l2-cache/h200.txt: reads of >= 90 MB on an H200",
        ),
    ] {
        let Some(m) = model(card) else { return };
        let bytes = 512usize << 20;
        let p = copy_v4(&m, bytes);
        assert_eq!(p.prediction.limit, Limit::Dram, "{:?}", p.prediction.terms);
        let gbs = 2.0 * bytes as f64 / p.prediction.seconds / 1e9;
        check(
            &format!("{}: copy, 16-byte loads, 512 MiB", m.card.name),
            gbs,
            published,
            "GB/s",
            source,
            0.2,
        );
        // Four independent 4-byte loads per thread.
        let threads = (bytes / 4 / 4) as u32;
        let p = run(&m, COPY, "copy_ilp4", threads / 256, 256, |mem| {
            let (s, d) = (mem.alloc(bytes), mem.alloc(bytes));
            vec![u64s(s), u64s(d), u32s(threads)]
        });
        assert_eq!(p.prediction.limit, Limit::Dram, "{:?}", p.prediction.terms);
        let gbs = 2.0 * bytes as f64 / p.prediction.seconds / 1e9;
        check(
            &format!("{}: copy, 4-byte loads x4, 512 MiB", m.card.name),
            gbs,
            published,
            "GB/s",
            source,
            0.2,
        );
    }
}

#[test]
fn few_bytes_in_flight_limit_bandwidth_by_littles_law() {
    // GB's `read` kernel on an H200: 2 blocks per SM, one 8-byte load in flight per thread.
    // 256 threads per block calibrated the loaded latency (card.rs); 128 and 512 check it.
    let Some(m) = model(Card::h200()) else { return };
    for (threads, published) in [(128u32, 485.0), (256, 935.0), (512, 1707.0)] {
        let blocks = 2 * m.card.sms;
        let iters = ((256u64 << 20) / (u64::from(blocks * threads) * 8)) as u32;
        let bytes = (blocks * threads) as usize * iters as usize * 8;
        let p = run(&m, READ, "read_f64", blocks, threads, |mem| {
            let (s, o) = (mem.alloc(bytes), mem.alloc((blocks * threads) as usize * 8));
            vec![u64s(s), u64s(o), u32s(iters)]
        });
        assert_eq!(
            p.prediction.limit,
            Limit::InFlight,
            "{:?}",
            p.prediction.terms
        );
        let gbs = bytes as f64 / p.prediction.seconds / 1e9;
        let note = if threads == 256 {
            " (calibration point)"
        } else {
            ""
        };
        check(
            &format!("H200: read, {threads} threads x 2 blocks/SM, 8 B in flight per thread{note}"),
            gbs,
            published,
            "GB/s",
            "GB gpu-small-kernels/h200: read kernel",
            0.2,
        );
    }
}

#[test]
fn a_strided_copy_moves_a_whole_sector_per_element() {
    let Some(m) = model(Card::h200()) else { return };
    let n = 16u32 << 20;
    let stride = 8u32;
    let p = run(&m, READ, "copy_strided", n / 256, 256, |mem| {
        let s = mem.alloc(n as usize * stride as usize * 4);
        let d = mem.alloc(n as usize * 4);
        vec![u64s(s), u64s(d), u32s(stride)]
    });
    // Loads use 4 of 32 bytes per sector, stores all: (4 + 4) / (32 + 4).
    let efficiency = p.counts.sector_efficiency();
    println!("strided copy (stride 8 x 4 B): sector efficiency {efficiency:.3}, expected 8/36");
    assert!((efficiency - 8.0 / 36.0).abs() < 1e-3, "{efficiency}");
    let useful = 8.0 * f64::from(n) / p.prediction.seconds / 1e9;
    check(
        "H200: strided copy, useful bytes",
        useful,
        m.card.dram_bytes_per_s / 1e9 * 8.0 / 36.0,
        "GB/s",
        "derived: the sustained figure x 8/36 (32-byte sectors, PG)",
        0.2,
    );
}

/// A read of `iters` x 4 loads per thread over a buffer of `words` words, wrapping around.
fn read_wrap(m: &Model, words: u32, passes: u32) -> (LaunchPrediction, f64) {
    let blocks = m.card.sms * 8;
    let threads = 256u32;
    let per_iter = blocks * threads * 4;
    let iters = (u64::from(words) * u64::from(passes) / u64::from(per_iter)).max(1) as u32;
    let p = run(m, READ, "read_wrap", blocks, threads, |mem| {
        let s = mem.alloc(words as usize * 4);
        let o = mem.alloc((blocks * threads) as usize * 4);
        vec![u64s(s), u64s(o), u32s(iters), u32s(words - 1)]
    });
    let bytes = f64::from(iters) * f64::from(per_iter) * 4.0;
    (p, bytes)
}

#[test]
fn a_working_set_that_fits_l2_reads_at_l2_speed_and_one_that_does_not_at_dram_speed() {
    let Some(m) = model(Card::h200()) else { return };
    // 16 MiB read 8 times: DRAM once, L2 every time.
    let (p, bytes) = read_wrap(&m, 4 << 20, 8);
    let dram = p.counts.dram_read_bytes;
    println!("16 MiB x 8: DRAM reads {:.1} MB", dram / 1e6);
    assert!((dram / (16u64 << 20) as f64 - 1.0).abs() < 0.05, "{dram}");
    assert_eq!(p.prediction.limit, Limit::L2, "{:?}", p.prediction.terms);
    check(
        "H200: read of a 16 MiB working set",
        bytes / p.prediction.seconds / 1e9,
        9700.0,
        "GB/s",
        "GB gpu-l2-cache/h200.txt: 9.7-10.2 TB/s for 5-40 MB",
        0.2,
    );
    // 256 MiB read once: all DRAM.
    let (p, bytes) = read_wrap(&m, 64 << 20, 1);
    assert_eq!(p.prediction.limit, Limit::Dram, "{:?}", p.prediction.terms);
    check(
        "H200: read of a 256 MiB working set",
        bytes / p.prediction.seconds / 1e9,
        3888.0,
        "GB/s",
        "GB gpu-l2-cache/h200.txt: >= 90 MB",
        0.2,
    );
}

#[test]
fn a_pointer_chase_takes_one_dram_latency_per_step() {
    let Some(m) = model(Card::h100_sxm()) else {
        return;
    };
    let steps = 1000u32;
    let nodes = 4096usize;
    let p = run(&m, READ, "chase", 1, 1, |mem| {
        // Nodes 4 KiB apart in a random cycle (each step a new sector, as in J's chase).
        let bytes = nodes * 4096;
        let base = mem.alloc(bytes);
        let mut order: Vec<usize> = (0..nodes).collect();
        let mut state = 7u64;
        for i in (1..nodes).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let mut image = vec![0u8; bytes];
        for w in 0..nodes {
            let from = order[w] * 4096;
            let to = base + (order[(w + 1) % nodes] * 4096) as u64;
            image[from..from + 8].copy_from_slice(&to.to_le_bytes());
        }
        mem.write(base, &image);
        vec![
            u64s(base + (order[0] * 4096) as u64),
            u64s(mem.alloc(8)),
            u32s(steps),
        ]
    });
    let ns_per_step = p.prediction.seconds * 1e9 / f64::from(steps);
    check(
        "H100 SXM: pointer chase, per step",
        ns_per_step * m.card.clock_hz / 1e9,
        484.0,
        "cycles",
        "J mem_lat_dram.log: 484 cycles (L24 H800: 478.8)",
        0.2,
    );
    assert_eq!(p.prediction.limit, Limit::Latency);
}

#[test]
fn a_one_warp_chain_of_shared_loads_is_latency_bound() {
    let Some(m) = model(Card::h100_sxm()) else {
        return;
    };
    let steps = 2000u32;
    let p = run(&m, COMPUTE, "shared_chain", 1, 32, |mem| {
        vec![u64s(mem.alloc(4)), u32s(steps)]
    });
    assert_eq!(
        p.prediction.limit,
        Limit::Latency,
        "{:?}",
        p.prediction.terms
    );
    let per_step = p.prediction.seconds * m.card.clock_hz / f64::from(steps);
    check(
        "H100 SXM: one warp, dependent shared loads, per step",
        per_step,
        29.0,
        "cycles",
        "J: shared-memory latency 29.0 cycles (L24 H800: 29)",
        0.2,
    );
}

#[test]
fn an_empty_kernel_costs_the_launch() {
    for graph in [false, true] {
        let Some(mut m) = model(Card::h200()) else {
            return;
        };
        m.graph = graph;
        let p = run(&m, READ, "empty", 1, 32, |_| Vec::new());
        assert_eq!(p.prediction.limit, Limit::Launch);
        let (published, source) = if graph {
            (
                1.31,
                "GB gpu-small-kernels/h200_graph.txt: 1.26-1.37 us per node",
            )
        } else {
            (
                1.63,
                "KW launch-overhead.md: 1.55-1.72 us per launch (H200)",
            )
        };
        check(
            &format!(
                "H200: empty kernel, {}",
                if graph { "in a graph" } else { "plain" }
            ),
            p.prediction.seconds * 1e6,
            published,
            "us",
            source,
            0.2,
        );
    }
}

#[test]
fn a_transpose_without_padding_has_32_way_bank_conflicts() {
    let Some(m) = model(Card::h200()) else { return };
    let tiles = 4096u32;
    let transpose = |pad: u32| {
        run(&m, COMPUTE, "transpose", tiles, 1024, |mem| {
            let bytes = tiles as usize * 1024 * 4;
            vec![u64s(mem.alloc(bytes)), u64s(mem.alloc(bytes)), u32s(pad)]
        })
    };
    let (plain, padded) = (transpose(0), transpose(1));
    // Rows are written (1 wavefront) and columns read: 32 wavefronts, or 1 with padding.
    let per_request = |p: &LaunchPrediction| p.counts.shared_wavefronts / p.counts.shared_requests;
    println!(
        "transpose: wavefronts per shared request {:.1} without padding, {:.1} with (PG: 32 banks of 4 bytes)",
        per_request(&plain),
        per_request(&padded)
    );
    assert_eq!(per_request(&plain), 16.5);
    assert_eq!(per_request(&padded), 1.0);
    assert_eq!(
        plain.prediction.limit,
        Limit::Shared,
        "{:?}",
        plain.prediction.terms
    );
    println!(
        "transpose: predicted {:.1} us without padding, {:.1} us with",
        plain.prediction.seconds * 1e6,
        padded.prediction.seconds * 1e6
    );
    assert!(plain.prediction.seconds > 1.5 * padded.prediction.seconds);
}

#[test]
fn an_fma_loop_reaches_the_measured_fp32_rate() {
    let Some(m) = model(Card::h100_sxm()) else {
        return;
    };
    let (blocks, threads, iters) = (m.card.sms * 8, 256u32, 256u32);
    let p = run(&m, COMPUTE, "fma_loop", blocks, threads, |mem| {
        vec![
            u64s(mem.alloc((blocks * threads) as usize * 4)),
            u32s(iters),
        ]
    });
    assert_eq!(p.prediction.limit, Limit::Issue, "{:?}", p.prediction.terms);
    let flops = f64::from(blocks * threads) * f64::from(iters) * 32.0 * 2.0;
    check(
        "H100 SXM: FP32 FMA loop (32 chains per thread)",
        flops / p.prediction.seconds / 1e12,
        64.9,
        "TFLOP/s",
        "J MaxFlops.log: 248.3 FLOP/clk/SM at 1.98 GHz",
        0.2,
    );
}

#[test]
fn an_mma_sync_loop_reaches_the_measured_tensor_rate() {
    let Some(m) = model(Card::h100_sxm()) else {
        return;
    };
    let (blocks, threads, iters) = (m.card.sms * 4, 128u32, 1024u32);
    let p = run(&m, COMPUTE, "mma_loop", blocks, threads, |mem| {
        vec![
            u64s(mem.alloc((blocks * threads) as usize * 4)),
            u32s(iters),
        ]
    });
    let warps = f64::from(blocks * threads / 32);
    let flops = warps * f64::from(iters) * 4.0 * 4096.0;
    check(
        "H100 SXM: mma.sync m16n8k16 bf16 loop (4 chains per warp)",
        flops / p.prediction.seconds / 1e12,
        713.7,
        "TFLOP/s",
        "J mma_m16n8k16.log: 713.7 TFLOP/s with ILP 4",
        0.2,
    );
}

/// Gathers 16384 random rows of 1024 f32 from a 256 MiB table with `entry` (the kernels store
/// nothing for a zero table: the test is about the reads).
fn gather(m: &Model, entry: &'static str, threads: u32) -> LaunchPrediction {
    let (width, table_rows, rows) = (1024u32, 1u32 << 16, 1u32 << 14);
    run(m, GATHER, entry, rows, threads, |mem| {
        let table = mem.alloc(table_rows as usize * width as usize * 4);
        let mut state = 11u64;
        let picks: Vec<u8> = (0..rows)
            .flat_map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((state >> 33) as u32) % table_rows).to_le_bytes()
            })
            .collect();
        let idx = mem.upload(&picks);
        let out = mem.alloc(width as usize * 4);
        vec![u64s(table), u64s(idx), u64s(out), u32s(width)]
    })
}

#[test]
fn a_gather_with_16_byte_loads_is_predicted_faster_and_an_uncoalesced_one_slower() {
    let Some(m) = model(Card::h200()) else { return };
    let scalar = gather(&m, "gather_scalar", 1024);
    let v4 = gather(&m, "gather_v4", 256);
    let strided = gather(&m, "gather_strided", 1024);
    for (name, p) in [
        ("scalar", &scalar),
        ("16-byte", &v4),
        ("uncoalesced", &strided),
    ] {
        println!(
            "gather, {name} loads: predicted {:.1} us, {} bound, {:.1} KB in flight per SM, DRAM {:.1} MB",
            p.prediction.seconds * 1e6,
            p.prediction.limit.name(),
            p.prediction.bytes_in_flight_per_sm / 1024.0,
            p.counts.dram_bytes() / 1e6
        );
    }
    // The same bytes from DRAM either way.
    assert!((v4.counts.dram_bytes() / scalar.counts.dram_bytes() - 1.0).abs() < 0.02);
    // The uncoalesced warps touch 8x the sectors, but the block's other warps use the rest of
    // each sector from L1: L2 sees what the coalesced gather sends it.
    println!(
        "uncoalesced: {:.2}x the sectors requested, {:.2}x the L2 sectors of the scalar gather",
        strided.counts.requested_sectors / scalar.counts.requested_sectors,
        strided.counts.l2_sectors / scalar.counts.l2_sectors
    );
    assert!(strided.counts.requested_sectors > 4.0 * scalar.counts.requested_sectors);
    assert!((strided.counts.l2_sectors / scalar.counts.l2_sectors - 1.0).abs() < 0.1);
    assert!(v4.prediction.seconds < 0.8 * scalar.prediction.seconds);
    assert!(strided.prediction.seconds > 1.25 * scalar.prediction.seconds);
}
