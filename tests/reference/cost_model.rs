//! The cost model against the spec's worked example (Part II §6.1) and its own bounds.

use ultramem::cost::{count_distinct, expected_distinct, MoeShape, UltraMemV2Shape};
use ultramem::layer::UltraMemV2Config;
use ultramem::{PeerFfnDims, WeightedGatherDims};

fn within(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want;
    println!("{what}: model {got:.4e}, spec {want:.4e}, relative difference {err:.3}");
    assert!(err <= rel, "{what}: {got} vs {want} ({err:.3} > {rel})");
}

#[test]
fn worked_example_ultramem_v2_1b_7b_vs_olmoe_1b_7b_in_bf16() {
    let mem = UltraMemV2Shape::paper_1b_7b();
    let moe = MoeShape::olmoe_1b_7b();
    // Spec table: B → weight bytes read per step (UltraMemV2, MoE), one layer, bf16. The table
    // counts weights only; the model's totals add the shuffle table and activations on top.
    for (b, mem_mb, moe_mb) in [
        (1, 15.6, 100.9),
        (8, 17.6, 528.9),
        (64, 33.9, 805.0),
        (512, 150.0, 806.0),
        (4096, 561.0, 806.0),
    ] {
        let (m, e) = (mem.step_bytes(b, 2), moe.step_bytes(b, 2));
        within(
            &format!("UltraMemV2 B={b}"),
            m.weights() / 1e6,
            mem_mb,
            0.02,
        );
        within(&format!("MoE B={b}"), e.weights() / 1e6, moe_mb, 0.02);
        println!(
            "  totals with index and activations: {:.2} MB vs {:.2} MB",
            m.total() / 1e6,
            e.total() / 1e6
        );
    }
    let ratio = moe.step_bytes(1, 2).weights() / mem.step_bytes(1, 2).weights();
    within("MoE / memory at B=1", ratio, 6.5, 0.02);
    // The notes under the table: dense part 15.27 MB, sparse 295 KB per token, 12.58 MB per expert.
    within("dense part", mem.step_bytes(1, 2).dense / 1e6, 15.27, 0.01);
    within(
        "sparse per token",
        mem.step_bytes(1, 2).sparse / 1e3,
        295.0,
        0.01,
    );
    within(
        "one expert",
        moe.step_bytes(1, 2).sparse / moe.top_k as f64 / 1e6,
        12.58,
        0.01,
    );
    // The layer config gives the same shape and a dense parameter count that matches.
    let cfg = UltraMemV2Config::paper_1b_7b();
    assert_eq!(cfg.cost_shape(), mem);
    assert_eq!(cfg.param_count().0, mem.dense_params());
    assert_eq!(cfg.param_count().1, mem.sparse_params());
    // Part II §4.1: 528² rows × (768 + 384) × 16 layers = 5.14B sparse parameters.
    within(
        "sparse params × 16 layers",
        (mem.sparse_params() * 16) as f64 / 1e9,
        5.14,
        0.01,
    );
}

#[test]
fn expected_distinct_rows_stays_within_its_bounds() {
    for (p, c, b) in [
        (1000.0, 10.0, 1.0),
        (1000.0, 10.0, 50.0),
        (64.0, 8.0, 4096.0),
        (5.0, 5.0, 3.0),
    ] {
        let u = expected_distinct(p, c, b);
        assert!(
            u <= (b * c).min(p) + 1e-9 && u >= c.min(p) - 1e-9,
            "U({p},{c},{b}) = {u}"
        );
    }
    assert!((expected_distinct(1000.0, 10.0, 1.0) - 10.0).abs() < 1e-9);
    assert_eq!(expected_distinct(100.0, 1.0, 0.0), 0.0);
    assert_eq!(count_distinct(&[3, 1, 3, 7, 1]), 3);
}

#[test]
fn op_costs_count_each_distinct_row_once() {
    // 4 tokens × 8 slots over 1000 rows of 64 bf16 values, 2 cores, 20 distinct rows.
    let g = WeightedGatherDims {
        tokens: 4,
        slots: 8,
        cores: 2,
        table_rows: 1000,
        dv: 64,
    };
    let c = g.cost(2, 20.0);
    // rows 4·32 + weights 4·32·2 + 20 rows·64·2 bytes; output 4·64·4; 2·64 FLOPs per slot.
    assert_eq!(c.bytes_read, (32 * 4 + 32 * 2 * 4 + 20 * 64 * 2) as f64);
    assert_eq!(c.bytes_written, (4 * 64 * 4) as f64);
    assert_eq!(c.flops, (32 * 2 * 64) as f64);
    let p = PeerFfnDims {
        tokens: 4,
        slots: 8,
        cores: 2,
        table_rows: 1000,
        dp: 16,
        dv: 64,
    };
    let c = p.cost(2, 20.0);
    assert_eq!(
        c.bytes_read,
        (32 * 4 + 32 * 2 * 4 + 4 * 16 * 4 + 20 * 80 * 2) as f64
    );
    assert_eq!(c.flops, (32 * 2 * 80) as f64);
}
