//! Every bad input of Part I §I.4 returns a typed error, never a panic or a wrong answer; `T = 0`
//! is valid and returns empty outputs. One test per case, named for what it rejects.

use proptest::prelude::*;
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::tucker_proxy::tucker_proxy;
use ultramem::layer::UltraMemV2Config;
use ultramem::*;

fn cpu<T: Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::from_vec(&Device::cpu(), shape, data).expect("test tensors are well formed")
}

fn zeros<T: Element>(shape: &[usize]) -> Tensor<T> {
    Tensor::zeros(&Device::cpu(), shape).expect("test tensors are well formed")
}

/// Additive args: T=2, H=1, Dk=4, n=3.
fn additive_inputs() -> (Tensor<f32>, Tensor<f32>) {
    (
        cpu(&[2, 1, 4], (0..8).map(|x| x as f32).collect()),
        cpu(&[1, 2, 3, 2], (0..12).map(|x| x as f32 * 0.1).collect()),
    )
}

#[test]
fn additive_topk_rejects_query_of_wrong_rank() {
    let (_, keys) = additive_inputs();
    let q = zeros::<f32>(&[2, 4]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "q", .. }), "{e}");
}

#[test]
fn additive_topk_rejects_keys_with_other_head_count() {
    let (q, _) = additive_inputs();
    let keys = zeros::<f32>(&[2, 2, 3, 2]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "keys", .. }), "{e}");
    assert!(
        e.to_string().contains("H=1"),
        "the message names the expected dimension: {e}"
    );
}

#[test]
fn additive_topk_rejects_keys_of_wrong_half_width() {
    let (q, _) = additive_inputs();
    let keys = zeros::<f32>(&[1, 2, 3, 3]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "keys", .. }), "{e}");
}

#[test]
fn additive_topk_rejects_k_larger_than_stage_one_width() {
    let (q, keys) = additive_inputs();
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 3,
        k1: Some(2),
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "k",
                requested: 3,
                available: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn additive_topk_rejects_stage_one_width_past_n() {
    let (q, keys) = additive_inputs();
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 2,
        k1: Some(4),
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "K1",
                requested: 4,
                available: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn additive_topk_rejects_odd_query_width() {
    let q = zeros::<f32>(&[1, 1, 3]);
    let keys = zeros::<f32>(&[1, 2, 3, 1]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { arg: "q", .. }), "{e}");
}

#[test]
fn additive_topk_rejects_k_zero() {
    let (q, keys) = additive_inputs();
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 0,
        k1: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { dim: "k", .. }), "{e}");
}

#[test]
fn additive_topk_rejects_nan_query() {
    let (_, keys) = additive_inputs();
    let mut data = vec![0.5f32; 8];
    data[6] = f32::NAN;
    let q = cpu(&[2, 1, 4], data);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "q",
                position: 6,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn additive_topk_rejects_n_whose_square_overflows_u32() {
    // n = 65537: ν = i·n + j reaches 65537² − 1 > u32::MAX.
    let q = zeros::<f32>(&[1, 1, 2]);
    let keys = zeros::<f32>(&[1, 2, 65537, 1]);
    let e = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    })
    .unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
}

#[test]
fn additive_topk_backward_rejects_index_past_grid() {
    let (q, keys) = additive_inputs();
    let args = AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    };
    let idx = cpu(&[2, 1, 1], vec![0u32, 9]); // n² = 9
    let e =
        additive_topk_backward(&args, &idx, &zeros(&[2, 1, 1]), BackwardMode::Atomic).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 1,
                index: 9,
                bound: 9,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn additive_topk_backward_rejects_dscore_of_wrong_shape() {
    let (q, keys) = additive_inputs();
    let args = AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    };
    let e = additive_topk_backward(
        &args,
        &zeros(&[2, 1, 1]),
        &zeros(&[2, 1, 2]),
        BackwardMode::Atomic,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "dscore", .. }),
        "{e}"
    );
}

/// Tucker args: T=1, H=1, R=2, Dk=2, n=3, Cn=2.
struct Tucker {
    q: Tensor<f32>,
    keys: Tensor<f32>,
    cores: Tensor<f32>,
    u: Tensor<f32>,
    v: Tensor<f32>,
}

fn tucker_inputs() -> Tucker {
    Tucker {
        q: cpu(&[1, 1, 2, 2, 2], (0..8).map(|x| x as f32 * 0.3).collect()),
        keys: cpu(
            &[1, 2, 2, 3, 2],
            (0..24).map(|x| (x as f32).sin()).collect(),
        ),
        cores: cpu(&[1, 2, 2, 2], vec![1.0f32, 0.2, 0.1, 0.5, 0.3, 0., 0., 0.3]),
        u: cpu(&[1, 2], vec![0.8f32, 0.6]),
        v: cpu(&[1, 2], vec![0.6f32, 0.8]),
    }
}

impl Tucker {
    fn args(&self, k1: Option<usize>, m: usize) -> TuckerTopkArgs<'_, f32> {
        TuckerTopkArgs {
            q: &self.q,
            keys: &self.keys,
            cores: &self.cores,
            u: &self.u,
            v: &self.v,
            k1,
            m,
        }
    }
}

#[test]
fn tucker_topk_rejects_m_larger_than_the_grid() {
    let t = tucker_inputs();
    let e = tucker_topk(&t.args(Some(2), 5)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "m",
                requested: 5,
                available: 4,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tucker_topk_rejects_stage_one_width_past_n() {
    let t = tucker_inputs();
    let e = tucker_topk(&t.args(Some(4), 2)).unwrap_err();
    assert!(
        matches!(e, Error::TooManySelected { what: "K1", .. }),
        "{e}"
    );
}

#[test]
fn tucker_topk_rejects_cores_of_other_rank() {
    let mut t = tucker_inputs();
    t.cores = zeros(&[1, 2, 3, 3]);
    let e = tucker_topk(&t.args(None, 2)).unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "cores", .. }),
        "{e}"
    );
}

#[test]
fn tucker_topk_rejects_proxy_of_wrong_shape() {
    let mut t = tucker_inputs();
    t.u = zeros(&[1, 3]);
    let e = tucker_topk(&t.args(None, 2)).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "u", .. }), "{e}");
}

#[test]
fn tucker_topk_rejects_non_finite_core_and_proxy() {
    let mut t = tucker_inputs();
    t.cores = cpu(
        &[1, 2, 2, 2],
        vec![1.0f32, f32::NAN, 0., 0., 0., 0., 0., 0.],
    );
    let e = tucker_topk(&t.args(None, 2)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "cores",
                position: 1,
                ..
            }
        ),
        "{e}"
    );
    let mut t = tucker_inputs();
    t.v = cpu(&[1, 2], vec![f32::INFINITY, 0.0]);
    let e = tucker_topk(&t.args(None, 2)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "v",
                position: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tucker_topk_backward_rejects_index_past_grid() {
    let t = tucker_inputs();
    let e = tucker_topk_backward(
        &t.args(None, 1),
        &cpu(&[1, 1, 1], vec![9u32]),
        &zeros(&[1, 1, 1, 2]),
        BackwardMode::Deterministic,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                index: 9,
                bound: 9,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn score_fn_rejects_rank_two_scores_and_mismatched_dout() {
    let s = zeros::<f32>(&[2, 3]);
    let e = score_fn(&ScoreFnArgs {
        score: &s,
        func: ScoreFn::Softmax,
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "score", .. }),
        "{e}"
    );
    let s = zeros::<f32>(&[1, 2, 3]);
    let e = score_fn_backward(
        &ScoreFnArgs {
            score: &s,
            func: ScoreFn::Softmax,
        },
        &zeros(&[1, 2, 4]),
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "dout", .. }), "{e}");
}

#[test]
fn index_map_rejects_index_past_shuffle_table() {
    let idx = cpu(&[3], vec![0u32, 4, 1]);
    let shuffle = cpu(&[4], vec![0u32, 1, 2, 3]);
    let e = index_map(&IndexMapArgs {
        idx: &idx,
        shuffle: Some(&shuffle),
        map: IndexMapConfig::plain(4),
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 1,
                index: 4,
                bound: 4,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn index_map_rejects_bad_windows() {
    let idx = cpu(&[1], vec![0u32]);
    let run = |map| {
        index_map(&IndexMapArgs {
            idx: &idx,
            shuffle: None,
            map,
        })
        .unwrap_err()
    };
    let e = run(IndexMapConfig {
        rows_per_layer: 4,
        offset: 8,
        total_rows: 8,
    });
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                arg: "map.offset",
                ..
            }
        ),
        "{e}"
    );
    let e = run(IndexMapConfig {
        rows_per_layer: 0,
        offset: 0,
        total_rows: 8,
    });
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    let e = run(IndexMapConfig {
        rows_per_layer: 9,
        offset: 0,
        total_rows: 8,
    });
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                arg: "map.rows_per_layer",
                ..
            }
        ),
        "{e}"
    );
    let e = run(IndexMapConfig::plain((1 << 32) + 1));
    assert!(
        matches!(e, Error::SizeOverflow { .. }),
        "u32 rows cannot address past 2^32: {e}"
    );
}

/// Gather args: T=2, M=2, Cn=2, N=3, Dv=4.
fn gather_inputs() -> (Tensor<u32>, Tensor<f32>, Tensor<f32>) {
    (
        cpu(&[2, 2], vec![0u32, 2, 1, 1]),
        cpu(&[2, 2, 2], vec![1.0f32; 8]),
        cpu(&[3, 4], (0..12).map(|x| x as f32).collect()),
    )
}

#[test]
fn weighted_gather_rejects_row_past_table_end() {
    let (_, w, table) = gather_inputs();
    let rows = cpu(&[2, 2], vec![0u32, 2, 3, 1]); // N = 3: row 2 is the last valid one
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "rows",
                position: 2,
                index: 3,
                bound: 3,
                ..
            }
        ),
        "{e}"
    );
    let dout = zeros::<f32>(&[2, 4]);
    let e = weighted_gather_backward(
        &WeightedGatherArgs {
            rows: &rows,
            weights: &w,
            table: &table,
        },
        &dout,
        BackwardMode::Atomic,
    )
    .unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { .. }), "{e}");
}

#[test]
fn weighted_gather_rejects_value_width_not_divisible_by_cores() {
    let (rows, _, _) = gather_inputs();
    let w = zeros::<f32>(&[2, 2, 3]);
    let table = zeros::<f32>(&[3, 4]);
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { arg: "table", .. }),
        "{e}"
    );
}

#[test]
fn weighted_gather_rejects_weights_for_other_slot_count() {
    let (rows, _, table) = gather_inputs();
    let w = zeros::<f32>(&[2, 3, 2]);
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { arg: "weights", .. }),
        "{e}"
    );
}

#[test]
fn weighted_gather_rejects_zero_width_table() {
    let (rows, w, _) = gather_inputs();
    let table = zeros::<f32>(&[3, 0]);
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    })
    .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { dim: "Dv", .. }), "{e}");
}

#[test]
fn weighted_gather_rejects_table_with_more_rows_than_u32_indices_reach() {
    // A zero-width table has no elements, so 2^32 + 1 rows fit in memory; the row bound is
    // checked before the width, so the overflow is what is reported.
    let rows = cpu(&[1, 1], vec![0u32]);
    let w = zeros::<f32>(&[1, 1, 1]);
    let table = zeros::<f32>(&[(1 << 32) + 1, 0]);
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    })
    .unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    // Exactly 2^32 rows is the largest table u32 indices address.
    let d = WeightedGatherDims {
        tokens: 1,
        slots: 1,
        cores: 1,
        table_rows: 1 << 32,
        dv: 1,
    };
    d.check().unwrap();
}

#[test]
fn weighted_gather_backward_rejects_dout_of_wrong_width() {
    let (rows, w, table) = gather_inputs();
    let e = weighted_gather_backward(
        &WeightedGatherArgs {
            rows: &rows,
            weights: &w,
            table: &table,
        },
        &zeros(&[2, 5]),
        BackwardMode::Deterministic,
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "dout", .. }), "{e}");
}

/// PEER args: T=1, M=2, Cn=1, N=3, Dp=2, Dv=2.
fn peer_args<'a>(
    rows: &'a Tensor<u32>,
    s: &'a Tensor<f32>,
    z: &'a Tensor<f32>,
    down: &'a Tensor<f32>,
    up: &'a Tensor<f32>,
) -> PeerFfnArgs<'a, f32> {
    PeerFfnArgs {
        rows,
        scores: s,
        z,
        down,
        up,
        activation: Activation::Gelu,
    }
}

#[test]
fn peer_ffn_rejects_z_of_other_width_than_down_rows() {
    let (rows, s, down, up) = (
        cpu(&[1, 2], vec![0u32, 1]),
        zeros(&[1, 2, 1]),
        zeros(&[3, 2]),
        zeros(&[3, 2]),
    );
    let z = zeros::<f32>(&[1, 3]);
    let e = peer_ffn(&peer_args(&rows, &s, &z, &down, &up)).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "z", .. }), "{e}");
}

#[test]
fn peer_ffn_rejects_up_table_with_other_row_count() {
    let (rows, s, z, down) = (
        cpu(&[1, 2], vec![0u32, 1]),
        zeros(&[1, 2, 1]),
        zeros(&[1, 2]),
        zeros(&[3, 2]),
    );
    let up = zeros::<f32>(&[4, 2]);
    let e = peer_ffn(&peer_args(&rows, &s, &z, &down, &up)).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "up", .. }), "{e}");
}

#[test]
fn peer_ffn_rejects_index_past_table_end() {
    let (s, z, down, up) = (
        zeros(&[1, 2, 1]),
        zeros(&[1, 2]),
        zeros(&[3, 2]),
        zeros(&[3, 2]),
    );
    let rows = cpu(&[1, 2], vec![2u32, u32::MAX]);
    let e = peer_ffn(&peer_args(&rows, &s, &z, &down, &up)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                position: 1,
                index: 4294967295,
                bound: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn moe_ffn_rejects_k_larger_than_expert_count() {
    let (x, w) = (zeros::<f32>(&[1, 2]), zeros::<f32>(&[3, 2, 2]));
    let logits = zeros::<f32>(&[1, 3]);
    let routing = MoeRouting::Softmax {
        logits: &logits,
        k: 4,
        renormalize: false,
    };
    let e = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing,
        w1: &w,
        w3: &w,
        w2: &w,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManySelected {
                what: "k",
                requested: 4,
                available: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn moe_ffn_rejects_expert_id_past_expert_count() {
    let (x, w) = (zeros::<f32>(&[1, 2]), zeros::<f32>(&[3, 2, 2]));
    let (ids, gates) = (cpu(&[1, 2], vec![0u32, 3]), zeros::<f32>(&[1, 2]));
    let routing = MoeRouting::Explicit {
        experts: &ids,
        gates: &gates,
    };
    let e = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing,
        w1: &w,
        w3: &w,
        w2: &w,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "experts",
                index: 3,
                bound: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn moe_ffn_rejects_nan_router_logit() {
    let (x, w) = (zeros::<f32>(&[1, 2]), zeros::<f32>(&[3, 2, 2]));
    let logits = cpu(&[1, 3], vec![0.0f32, f32::NAN, 1.0]);
    let routing = MoeRouting::Softmax {
        logits: &logits,
        k: 1,
        renormalize: true,
    };
    let e = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing,
        w1: &w,
        w3: &w,
        w2: &w,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "logits",
                position: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn moe_ffn_rejects_down_projection_of_wrong_shape() {
    let (x, w) = (zeros::<f32>(&[1, 2]), zeros::<f32>(&[3, 4, 2]));
    let w2 = zeros::<f32>(&[3, 4, 2]); // must be [E, D, F] = [3, 2, 4]
    let logits = zeros::<f32>(&[1, 3]);
    let routing = MoeRouting::Softmax {
        logits: &logits,
        k: 1,
        renormalize: false,
    };
    let e = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing,
        w1: &w,
        w3: &w,
        w2: &w2,
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "w2", .. }), "{e}");
}

#[test]
fn tensor_rejects_data_of_wrong_length_and_overflowing_shapes() {
    let e = Tensor::from_vec(&Device::cpu(), &[2, 3], vec![0.0f32; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferSize {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e}"
    );
    let e = Tensor::<f32>::zeros(&Device::cpu(), &[1 << 33, 1 << 33]).unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    let e = cpu(&[2, 3], vec![0u32; 6]).reshape(&[4, 2]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferSize {
                expected: 6,
                got: 8,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn gpu_devices_report_why_they_are_missing() {
    // What is there depends on the machine; what is not there must say why, with its backend.
    match Device::cuda(0) {
        Ok(d) => assert_eq!(d.backend(), Backend::Cuda),
        Err(e) if cfg!(feature = "cuda") => {
            assert!(
                matches!(
                    e,
                    Error::BackendUnavailable {
                        backend: Backend::Cuda,
                        ..
                    }
                ),
                "{e}"
            )
        }
        Err(e) => assert!(
            matches!(
                e,
                Error::BackendNotCompiled {
                    backend: Backend::Cuda,
                    feature: "cuda"
                }
            ),
            "{e}"
        ),
    }
    match Device::wgpu() {
        Ok(d) => assert_eq!(d.backend(), Backend::Wgpu),
        Err(e) => assert!(
            matches!(
                e,
                Error::BackendNotCompiled {
                    backend: Backend::Wgpu,
                    ..
                } | Error::BackendUnavailable {
                    backend: Backend::Wgpu,
                    ..
                }
            ),
            "{e}"
        ),
    }
    let (best, skipped) = Device::best_with_report();
    // Every backend better than the one chosen was skipped with a reason.
    let rank = |b: Backend| match b {
        Backend::Cuda => 0,
        Backend::Wgpu => 1,
        _ => 2,
    };
    assert_eq!(skipped.len(), rank(best.backend()));
}

#[test]
fn gpu_ops_reject_f64_tables_and_mixed_devices() {
    let Ok(dev) = Device::wgpu().or_else(|_| Device::cuda(0)) else {
        return;
    };
    let rows = Tensor::from_vec(&dev, &[1, 1], vec![0u32]).unwrap();
    let w = Tensor::from_vec(&dev, &[1, 1, 1], vec![1.0f32]).unwrap();
    let table = Tensor::from_vec(&dev, &[2, 2], vec![1.0f64; 4]).unwrap();
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedDType {
                dtype: DType::F64,
                ..
            }
        ),
        "{e}"
    );
    // Mixing devices is a typed error too.
    let cpu_table = cpu(&[2, 2], vec![1.0f32; 4]);
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &cpu_table,
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::DeviceMismatch { arg: "table", .. }),
        "{e}"
    );
}

#[test]
fn layer_config_and_params_reject_inconsistent_sizes() {
    let mut cfg = UltraMemV2Config::new(8, 4, 4, 4, 2, 6);
    cfg.eps = 0.0;
    assert!(matches!(
        cfg.check().unwrap_err(),
        Error::InvalidArgument { arg: "eps", .. }
    ));
    let mut cfg = UltraMemV2Config::new(8, 4, 4, 4, 2, 6);
    cfg.k1 = 5;
    assert!(matches!(
        cfg.check().unwrap_err(),
        Error::TooManySelected { what: "K1", .. }
    ));
    let mut cfg = UltraMemV2Config::new(8, 4, 4, 4, 2, 6);
    cfg.cores = 4; // Dv = 6 does not split into 4 slices
    assert!(matches!(
        cfg.check().unwrap_err(),
        Error::InvalidArgument { .. }
    ));
    let cfg = UltraMemV2Config::new(8, 4, 4, 4, 2, 6);
    let (mut p, _) = init_params(&cfg, InitScheme::ReleasedCode, 0).unwrap();
    p.up.pop();
    assert!(matches!(
        p.check(&cfg).unwrap_err(),
        Error::BufferSize { arg: "up", .. }
    ));
    let (mut p, _) = init_params(&cfg, InitScheme::ReleasedCode, 0).unwrap();
    p.shuffle = None;
    assert!(matches!(
        p.check(&cfg).unwrap_err(),
        Error::InvalidArgument { arg: "shuffle", .. }
    ));
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 0).unwrap();
    let e = ultramem::reference::ultramem_v2_layer::forward(&cfg, &p, &[0.0f32; 7]).unwrap_err();
    assert!(matches!(e, Error::BufferSize { arg: "x", .. }), "{e}");
    let e = init_params(
        &cfg,
        InitScheme::Paper {
            ffn_ratio: -1.0,
            layers: 4,
            calibration_tokens: 8,
        },
        0,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                arg: "ffn_ratio",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tucker_proxy_rejects_cores_that_sum_to_zero_or_are_not_finite() {
    let e = tucker_proxy(&[1.0f32, 0., 0., 1., -1., 0., 0., -1.], 1, 2, 2, None).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { arg: "cores", .. }),
        "{e}"
    );
    let e = tucker_proxy(&[1.0f32, f32::NAN, 0., 1.], 1, 1, 2, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "cores",
                position: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn reference_functions_reject_slices_that_disagree_with_their_dims() {
    let d = WeightedGatherDims {
        tokens: 2,
        slots: 2,
        cores: 1,
        table_rows: 3,
        dv: 2,
    };
    let e = ultramem::reference::weighted_gather::forward(
        &d,
        &[0u32, 1, 2],
        &[1.0f64; 4],
        &[0.0f64; 6],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferSize {
                arg: "rows",
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
    let bad = WeightedGatherDims {
        dv: 3,
        cores: 2,
        ..d
    };
    let e =
        ultramem::reference::weighted_gather::forward(&bad, &[0u32; 4], &[1.0f64; 8], &[0.0f64; 9])
            .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. }),
        "dims are re-checked: {e}"
    );
}

#[test]
fn every_op_accepts_zero_tokens_and_returns_empty_outputs() {
    let (_, keys) = additive_inputs();
    let q = zeros::<f32>(&[0, 1, 4]);
    let args = AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 2,
        k1: None,
    };
    let out = additive_topk(&args).unwrap();
    assert_eq!(
        (out.idx.shape(), out.score.shape()),
        (&[0, 1, 2][..], &[0, 1, 2][..])
    );
    let g =
        additive_topk_backward(&args, &out.idx, &out.score, BackwardMode::Deterministic).unwrap();
    assert!(g.dq.is_empty() && g.dkeys.to_vec().unwrap().iter().all(|&x| x == 0.0));

    let mut t = tucker_inputs();
    t.q = zeros(&[0, 1, 2, 2, 2]);
    let out = tucker_topk(&t.args(None, 3)).unwrap();
    assert_eq!(out.score.shape(), &[0, 1, 3, 2]);
    let g = tucker_topk_backward(
        &t.args(None, 3),
        &out.idx,
        &out.score,
        BackwardMode::Deterministic,
    )
    .unwrap();
    assert!(g.dcores.to_vec().unwrap().iter().all(|&x| x == 0.0));

    let s = zeros::<f32>(&[0, 2, 3]);
    assert!(score_fn(&ScoreFnArgs {
        score: &s,
        func: ScoreFn::Softmax
    })
    .unwrap()
    .is_empty());
    let idx = zeros::<u32>(&[0, 4]);
    assert_eq!(
        index_map(&IndexMapArgs {
            idx: &idx,
            shuffle: None,
            map: IndexMapConfig::plain(3)
        })
        .unwrap()
        .shape(),
        &[0, 4]
    );

    let (rows, w, table) = (
        zeros::<u32>(&[0, 2]),
        zeros::<f32>(&[0, 2, 2]),
        zeros::<f32>(&[3, 4]),
    );
    let args = WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    };
    assert_eq!(weighted_gather(&args).unwrap().shape(), &[0, 4]);
    let g = weighted_gather_backward(&args, &zeros(&[0, 4]), BackwardMode::Deterministic).unwrap();
    assert_eq!(g.dtable.shape(), &[3, 4]);

    let (s, z, down, up) = (
        zeros::<f32>(&[0, 2, 1]),
        zeros::<f32>(&[0, 2]),
        zeros::<f32>(&[3, 2]),
        zeros::<f32>(&[3, 2]),
    );
    let args = peer_args(&rows, &s, &z, &down, &up);
    assert_eq!(peer_ffn(&args).unwrap().shape(), &[0, 2]);
    assert_eq!(
        peer_ffn_backward(&args, &zeros(&[0, 2]), BackwardMode::Atomic)
            .unwrap()
            .ddown
            .shape(),
        &[3, 2]
    );

    let (x, wm, logits) = (
        zeros::<f32>(&[0, 2]),
        zeros::<f32>(&[3, 2, 2]),
        zeros::<f32>(&[0, 3]),
    );
    let routing = MoeRouting::Softmax {
        logits: &logits,
        k: 2,
        renormalize: false,
    };
    let out = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing,
        w1: &wm,
        w3: &wm,
        w2: &wm,
    })
    .unwrap();
    assert_eq!(
        (out.out.shape(), out.experts.shape()),
        (&[0, 2][..], &[0, 2][..])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random shapes (zeros included), random indices (out of range included): every call
    /// returns `Ok` or a typed error, and never panics.
    #[test]
    fn value_ops_never_panic_on_arbitrary_shapes(
        t in 0usize..3, m in 0usize..3, cn in 0usize..3, n in 0usize..4, dv in 0usize..5, dp in 0usize..3,
        m2 in 0usize..3, n2 in 0usize..4, row_seed in any::<u64>()
    ) {
        let rows = cpu(&[t, m], (0..t * m).map(|i| ((row_seed >> (i % 60)) % 5) as u32).collect());
        let w = zeros::<f32>(&[t, m2, cn]);
        let table = zeros::<bf16>(&[n, dv]);
        let _ = weighted_gather(&WeightedGatherArgs { rows: &rows, weights: &w, table: &table });
        let _ = weighted_gather_backward(&WeightedGatherArgs { rows: &rows, weights: &w, table: &table }, &zeros(&[t, dv]), BackwardMode::Atomic);
        let (z, down, up) = (zeros::<f32>(&[t, dp]), zeros::<f16>(&[n, dp]), zeros::<f16>(&[n2, dv]));
        let args = PeerFfnArgs { rows: &rows, scores: &w, z: &z, down: &down, up: &up, activation: Activation::Silu };
        let _ = peer_ffn(&args);
        let _ = peer_ffn_backward(&args, &zeros(&[t, dv]), BackwardMode::Deterministic);
    }

    #[test]
    fn selection_ops_never_panic_on_arbitrary_shapes(
        t in 0usize..3, h in 0usize..3, dk in 0usize..5, n in 0usize..5, k in 0usize..6, k1 in 0usize..6, r in 0usize..3, cn in 0usize..3, h2 in 0usize..3
    ) {
        let q = zeros::<f32>(&[t, h, dk]);
        let keys = zeros::<f32>(&[h2, 2, n, dk / 2]);
        let args = AdditiveTopkArgs { q: &q, keys: &keys, k, k1: Some(k1) };
        let _ = additive_topk(&args);
        let _ = additive_topk_backward(&args, &zeros(&[t, h, k]), &zeros(&[t, h, k]), BackwardMode::Atomic);
        let q = zeros::<f32>(&[t, h, 2, r, dk]);
        let keys = zeros::<f32>(&[h2, 2, r, n, dk]);
        let cores = zeros::<f32>(&[h, cn, r, r]);
        let uv = zeros::<f32>(&[h, r]);
        let args = TuckerTopkArgs { q: &q, keys: &keys, cores: &cores, u: &uv, v: &uv, k1: Some(k1), m: k };
        let _ = tucker_topk(&args);
        let _ = tucker_topk_backward(&args, &zeros(&[t, h, k]), &zeros(&[t, h, k, cn]), BackwardMode::Deterministic);
        let _ = tucker_topk(&TuckerTopkArgs { k1: None, ..args });
    }
}

#[test]
fn matmul_rejects_mismatched_inner_sizes_and_bad_addends() {
    let (a, b) = (zeros::<f32>(&[2, 3]), zeros::<f32>(&[4, 5]));
    let args = MatmulArgs {
        a: &a,
        b: &b,
        transpose_a: Transpose::No,
        transpose_b: Transpose::No,
        addend: None,
    };
    let e = matmul(&args).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "matmul",
                arg: "b",
                ..
            }
        ),
        "{e}"
    );
    let vector = zeros::<f32>(&[3]);
    let e = matmul(&MatmulArgs { a: &vector, ..args }).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "matmul",
                arg: "a",
                ..
            }
        ),
        "{e}"
    );
    let b = zeros::<f32>(&[3, 5]);
    let c0 = zeros::<f32>(&[5, 2]);
    let e = matmul(&MatmulArgs {
        b: &b,
        addend: Some(&c0),
        ..args
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "matmul",
                arg: "addend",
                ..
            }
        ),
        "{e}"
    );
    // Empty products are fine: [0, 3] x [3, 5] is [0, 5]; K = 0 gives zeros.
    let empty = zeros::<f32>(&[0, 3]);
    let out = matmul(&MatmulArgs {
        a: &empty,
        b: &b,
        ..args
    })
    .unwrap();
    assert_eq!(out.shape(), &[0, 5]);
    let (a0, b0) = (zeros::<f32>(&[2, 0]), zeros::<f32>(&[0, 2]));
    let out = matmul(&MatmulArgs {
        a: &a0,
        b: &b0,
        ..args
    })
    .unwrap();
    assert_eq!(out.to_vec().unwrap(), vec![0.0; 4]);
}

#[test]
fn rmsnorm_rejects_bad_gamma_eps_and_dy() {
    let (x, gamma) = (zeros::<f32>(&[2, 4]), zeros::<f32>(&[3]));
    let args = RmsNormArgs {
        x: &x,
        gamma: &gamma,
        eps: 1e-5,
        repeat: 1,
    };
    let e = rmsnorm(&args).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "rmsnorm",
                arg: "gamma",
                ..
            }
        ),
        "{e}"
    );
    let gamma = zeros::<f32>(&[4]);
    for eps in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let e = rmsnorm(&RmsNormArgs {
            gamma: &gamma,
            eps,
            ..args
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    op: "rmsnorm",
                    arg: "eps",
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = rmsnorm(&RmsNormArgs {
        gamma: &gamma,
        repeat: 0,
        ..args
    })
    .unwrap_err();
    assert!(matches!(e, Error::ZeroSized { op: "rmsnorm", .. }), "{e}");
    // dy must be shaped like the output: [2, repeat·4].
    let dy = zeros::<f32>(&[2, 4]);
    let e = rmsnorm_backward(
        &RmsNormArgs {
            gamma: &gamma,
            repeat: 2,
            ..args
        },
        &dy,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                op: "rmsnorm",
                arg: "dy",
                ..
            }
        ),
        "{e}"
    );
    let scalar = zeros::<f32>(&[]);
    let e = rmsnorm(&RmsNormArgs {
        x: &scalar,
        gamma: &gamma,
        ..args
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}
