//! Small cases whose expected values follow from arithmetic written next to them.

use crate::common::{cpu, Tolerance};
use ultramem::layer::tucker_proxy::tucker_proxy;
use ultramem::reference::activation::{apply, erf};
use ultramem::*;

fn out_f64(t: &Tensor<f32>) -> Vec<f64> {
    t.to_vec().unwrap().into_iter().map(f64::from).collect()
}

#[test]
fn additive_topk_breaks_score_ties_by_lower_flat_index() {
    // Dk = 2 (one element per half), q = [1, 1], n = 3: s1 = [1, 3, 3], s2 = [0, 2, 2].
    // All four sums of {1,2}×{1,2} equal 5; their flat indices i·3+j are 4, 5, 7, 8.
    let q = cpu(&[1, 1, 2], vec![1.0f32, 1.0]);
    let keys = cpu(&[1, 2, 3, 1], vec![1.0f32, 3., 3., 0., 2., 2.]);
    let out = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 3,
        k1: None,
    })
    .unwrap();
    assert_eq!(out.idx.to_vec().unwrap(), vec![4, 5, 7]);
    assert_eq!(out.score.to_vec().unwrap(), vec![5.0, 5.0, 5.0]);
    // K1 = 2 keeps rows {1, 2} and columns {1, 2} (ties to the lower index): same answer for k = 2.
    let out = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 2,
        k1: Some(2),
    })
    .unwrap();
    assert_eq!(out.idx.to_vec().unwrap(), vec![4, 5]);
}

#[test]
fn additive_topk_ranks_a_nan_key_below_every_number() {
    // s1 = [NaN, 1, 0], s2 = [0, 0, 1], K1 = k = 2: rows {1, 2}, columns {2, 0}.
    // Sums: (1,2) = 2 at 5; then 1 at (1,0) = 3 and (2,2) = 8: the lower index 3 wins.
    let q = cpu(&[1, 1, 2], vec![1.0f32, 1.0]);
    let keys = cpu(&[1, 2, 3, 1], vec![f32::NAN, 1., 0., 0., 0., 1.]);
    let out = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 2,
        k1: None,
    })
    .unwrap();
    assert_eq!(out.idx.to_vec().unwrap(), vec![5, 3]);
    assert_eq!(out.score.to_vec().unwrap(), vec![2.0, 1.0]);
}

#[test]
fn additive_topk_returns_nan_scores_only_when_nothing_else_is_left() {
    // Both row keys are NaN: every sum is NaN, so the order falls back to the flat index.
    let q = cpu(&[1, 1, 2], vec![1.0f32, 1.0]);
    let keys = cpu(&[1, 2, 2, 1], vec![f32::NAN, f32::NAN, 1., 0.]);
    let out = additive_topk(&AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 2,
        k1: None,
    })
    .unwrap();
    assert_eq!(out.idx.to_vec().unwrap(), vec![0, 1]);
    assert!(out.score.to_vec().unwrap().iter().all(|s| s.is_nan()));
}

#[test]
fn additive_topk_backward_scatters_to_both_halves() {
    // One head, Dk = 4, n = 2. Chosen pair ν = 1·2+0 = 2 with dσ = 2:
    // dq1 = 2·C1[1], dq2 = 2·C2[0], dC1[1] = 2·q1, dC2[0] = 2·q2.
    let q = cpu(&[1, 1, 4], vec![1.0f32, 2., 3., 4.]);
    let keys = cpu(&[1, 2, 2, 2], vec![0.0f32, 0., 5., 6., 7., 8., 0., 0.]);
    let args = AdditiveTopkArgs {
        q: &q,
        keys: &keys,
        k: 1,
        k1: None,
    };
    let idx = cpu(&[1, 1, 1], vec![2u32]);
    let ds = cpu(&[1, 1, 1], vec![2.0f32]);
    let g = additive_topk_backward(&args, &idx, &ds, BackwardMode::Deterministic).unwrap();
    assert_eq!(g.dq.to_vec().unwrap(), vec![10.0, 12.0, 14.0, 16.0]);
    assert_eq!(
        g.dkeys.to_vec().unwrap(),
        vec![0.0, 0., 2., 4., 6., 8., 0., 0.]
    );
}

/// R = 1, Cn = 1, Dk = 1, n = 3: S_row = [1, −2, 3], S_col = [2, 1, −1], C = [[1]].
fn tucker_r1(u: f32) -> TopkOutput {
    let q = cpu(&[1, 1, 2, 1, 1], vec![1.0f32, 1.0]);
    let keys = cpu(&[1, 2, 1, 3, 1], vec![1.0f32, -2., 3., 2., 1., -1.]);
    let cores = cpu(&[1, 1, 1, 1], vec![1.0f32]);
    let uu = cpu(&[1, 1], vec![u]);
    let vv = cpu(&[1, 1], vec![1.0f32]);
    let args = TuckerTopkArgs {
        q: &q,
        keys: &keys,
        cores: &cores,
        u: &uu,
        v: &vv,
        k1: Some(2),
        m: 3,
    };
    tucker_topk(&args).unwrap()
}

#[test]
fn tucker_topk_searches_only_the_rows_the_proxy_keeps() {
    // u = 1: rows {2, 0} (a = 3, 1), columns {0, 1} (a = 2, 1). Grid: (2,0)=6, (2,1)=3,
    // (0,0)=2, (0,1)=1 → ν = 6, 7, 0. The excluded (1,2) = (−2)(−1) = 2 never appears.
    let out = tucker_r1(1.0);
    assert_eq!(out.idx.to_vec().unwrap(), vec![6, 7, 0]);
    assert_eq!(out.score.to_vec().unwrap(), vec![6.0, 3.0, 2.0]);
    assert_eq!(out.score.shape(), &[1, 1, 3, 1]);
}

#[test]
fn tucker_topk_proxy_sign_picks_the_other_end() {
    // u = −1: a_row = [−1, 2, −3] keeps rows {1, 0}: grid (1,0)=−4, (1,1)=−2, (0,0)=2, (0,1)=1.
    // Best three: 2 (ν 0), 1 (ν 1), −2 (ν 4).
    let out = tucker_r1(-1.0);
    assert_eq!(out.idx.to_vec().unwrap(), vec![0, 1, 4]);
    assert_eq!(out.score.to_vec().unwrap(), vec![2.0, 1.0, -2.0]);
}

#[test]
fn tucker_topk_rank_two_grid_and_per_core_scores() {
    // R = 2, Dk = 1, n = 2, K1 = 2 (the whole grid).
    // S_row[r][i]: r0 = [1·1, 1·0] = [1, 0], r1 = [2·0, 2·1] = [0, 2].
    // S_col[r][j]: r0 = [1, 2], r1 = [3, 0].
    // Core 0 = I: G0[i,j] = Σ_r S_row[r,i] S_col[r,j] → G0 = [[1, 2], [6, 0]].
    // Core 1 = [[0, 1], [0, 0]]: G1[i,j] = S_row[0,i]·S_col[1,j] → G1 = [[3, 0], [0, 0]].
    // Totals: (0,0)=4, (0,1)=2, (1,0)=6, (1,1)=0 → ν = 2 (6), 0 (4), 1 (2).
    let q = cpu(&[1, 1, 2, 2, 1], vec![1.0f32, 2., 1., 1.]);
    let keys = cpu(&[1, 2, 2, 2, 1], vec![1.0f32, 0., 0., 1., 1., 2., 3., 0.]);
    let cores = cpu(&[1, 2, 2, 2], vec![1.0f32, 0., 0., 1., 0., 1., 0., 0.]);
    let u = cpu(&[1, 2], vec![1.0f32, 0.]);
    let v = cpu(&[1, 2], vec![1.0f32, 0.]);
    let args = TuckerTopkArgs {
        q: &q,
        keys: &keys,
        cores: &cores,
        u: &u,
        v: &v,
        k1: Some(2),
        m: 3,
    };
    let out = tucker_topk(&args).unwrap();
    assert_eq!(out.idx.to_vec().unwrap(), vec![2, 0, 1]);
    assert_eq!(
        out.score.to_vec().unwrap(),
        vec![6.0, 0.0, 1.0, 3.0, 2.0, 0.0]
    );
}

#[test]
fn tucker_topk_backward_matches_the_outer_products() {
    // R = 1, Cn = 1, Dk = 2, n = 1, C = [[3]], one slot ν = 0 with dscore 2.
    // S_row = <[1,2],[1,1]> = 3, S_col = <[0,1],[2,5]> = 5.
    // dC = 2·3·5 = 30; dS_row = 2·3·5 = 30, dS_col = 2·3·3 = 18.
    // dq_row = 30·[1,1], dq_col = 18·[2,5]; dkeys_row = 30·[1,2], dkeys_col = 18·[0,1].
    let q = cpu(&[1, 1, 2, 1, 2], vec![1.0f32, 2., 0., 1.]);
    let keys = cpu(&[1, 2, 1, 1, 2], vec![1.0f32, 1., 2., 5.]);
    let cores = cpu(&[1, 1, 1, 1], vec![3.0f32]);
    let uv = cpu(&[1, 1], vec![1.0f32]);
    let args = TuckerTopkArgs {
        q: &q,
        keys: &keys,
        cores: &cores,
        u: &uv,
        v: &uv,
        k1: None,
        m: 1,
    };
    let g = tucker_topk_backward(
        &args,
        &cpu(&[1, 1, 1], vec![0u32]),
        &cpu(&[1, 1, 1, 1], vec![2.0f32]),
        BackwardMode::Deterministic,
    )
    .unwrap();
    assert_eq!(g.dcores.to_vec().unwrap(), vec![30.0]);
    assert_eq!(g.dq.to_vec().unwrap(), vec![30.0, 30., 36., 90.]);
    assert_eq!(g.dkeys.to_vec().unwrap(), vec![30.0, 60., 0., 18.]);
}

#[test]
fn score_functions_on_known_values() {
    let run = |func, v: Vec<f32>| {
        out_f64(
            &score_fn(&ScoreFnArgs {
                score: &cpu(&[1, 1, v.len()], v),
                func,
            })
            .unwrap(),
        )
    };
    // softmax([0, ln 3]) = [1, 3] / 4.
    Tolerance::F32_OUTPUT.assert_close(
        "softmax",
        &run(ScoreFn::Softmax, vec![0.0, 3f32.ln()]),
        &[0.25, 0.75],
    );
    assert_eq!(run(ScoreFn::Relu, vec![-1.0, 2.0]), vec![0.0, 2.0]);
    assert_eq!(run(ScoreFn::Sigmoid, vec![0.0]), vec![0.5]);
    assert_eq!(run(ScoreFn::Raw, vec![-3.0, 7.0]), vec![-3.0, 7.0]);
    // Softmax backward with y = [.25, .75], dy = [1, 0]: dx = y ⊙ (dy − Σ y·dy)
    // = [.25·(1 − .25), .75·(0 − .25)] = [0.1875, −0.1875].
    let s = cpu(&[1, 1, 2], vec![0.0f32, 3f32.ln()]);
    let dx = score_fn_backward(
        &ScoreFnArgs {
            score: &s,
            func: ScoreFn::Softmax,
        },
        &cpu(&[1, 1, 2], vec![1.0f32, 0.]),
    )
    .unwrap();
    Tolerance::F32_OUTPUT.assert_close("softmax backward", &out_f64(&dx), &[0.1875, -0.1875]);
}

#[test]
fn softmax_normalises_each_core_separately() {
    // [T=1, H=1, k=2, Cn=2]: core 0 sees [0, 0] → [.5, .5]; core 1 sees [0, ln 3] → [.25, .75].
    let s = cpu(&[1, 1, 2, 2], vec![0.0f32, 0.0, 0.0, 3f32.ln()]);
    let y = score_fn(&ScoreFnArgs {
        score: &s,
        func: ScoreFn::Softmax,
    })
    .unwrap();
    Tolerance::F32_OUTPUT.assert_close("softmax per core", &out_f64(&y), &[0.5, 0.25, 0.5, 0.75]);
}

#[test]
fn index_map_applies_shuffle_window_and_wrap() {
    // shuffle = [3, 0, 2, 1]; window N_l = 3 at offset 4 of N_tot = 6:
    // ν=0 → π=3 → 3 mod 3 + 4 = 4; ν=1 → 0 → 4; ν=2 → 2 → 6 mod 6 = 0; ν=3 → 1 → 5.
    let idx = cpu(&[2, 2], vec![0u32, 1, 2, 3]);
    let shuffle = cpu(&[4], vec![3u32, 0, 2, 1]);
    let map = IndexMapConfig {
        rows_per_layer: 3,
        offset: 4,
        total_rows: 6,
    };
    let rows = index_map(&IndexMapArgs {
        idx: &idx,
        shuffle: Some(&shuffle),
        map,
    })
    .unwrap();
    assert_eq!(rows.to_vec().unwrap(), vec![4, 4, 0, 5]);
    assert_eq!(rows.shape(), &[2, 2]);
}

#[test]
fn index_map_uses_64_bit_arithmetic_near_u32_max() {
    // π = 2^32 − 1, N_l = N_tot = 2^32, offset 2^32 − 1: the sum 2^33 − 2 passes u32, and
    // (2^33 − 2) mod 2^32 = 2^32 − 2. A window that is not a power of two: N_l = 10,
    // offset 2^32 − 3: (4294967295 mod 10 = 5) + 4294967293 = 4294967298 ≡ 2 (mod 2^32).
    let idx = cpu(&[1], vec![u32::MAX]);
    let full = IndexMapConfig {
        rows_per_layer: 1 << 32,
        offset: (1 << 32) - 1,
        total_rows: 1 << 32,
    };
    assert_eq!(
        index_map(&IndexMapArgs {
            idx: &idx,
            shuffle: None,
            map: full
        })
        .unwrap()
        .to_vec()
        .unwrap(),
        vec![u32::MAX - 1]
    );
    let window = IndexMapConfig {
        rows_per_layer: 10,
        offset: (1 << 32) - 3,
        total_rows: 1 << 32,
    };
    assert_eq!(
        index_map(&IndexMapArgs {
            idx: &idx,
            shuffle: None,
            map: window
        })
        .unwrap()
        .to_vec()
        .unwrap(),
        vec![2]
    );
}

#[test]
fn weighted_gather_backward_by_hand() {
    // table rows: r0 = [1, 2], r1 = [3, 4]; token 0 picks (r1, w=[2, 3]) and (r1, w=[1, 1]):
    // the same row twice. Cn = 2, so column c uses w[.., c].
    // out = [2·3 + 1·3, 3·4 + 1·4] = [9, 16].
    // dout = [1, 10]: dw = [[3·1, 4·10], [3·1, 4·10]] = [[3, 40], [3, 40]];
    // dtable[r1] = [2·1 + 1·1, 3·10 + 1·10] = [3, 40]; dtable[r0] = 0.
    let table = cpu(&[2, 2], vec![1.0f32, 2., 3., 4.]);
    let rows = cpu(&[1, 2], vec![1u32, 1]);
    let w = cpu(&[1, 2, 2], vec![2.0f32, 3., 1., 1.]);
    let args = WeightedGatherArgs {
        rows: &rows,
        weights: &w,
        table: &table,
    };
    assert_eq!(
        weighted_gather(&args).unwrap().to_vec().unwrap(),
        vec![9.0, 16.0]
    );
    let g = weighted_gather_backward(
        &args,
        &cpu(&[1, 2], vec![1.0f32, 10.]),
        BackwardMode::Atomic,
    )
    .unwrap();
    assert_eq!(g.dweights.to_vec().unwrap(), vec![3.0, 40., 3., 40.]);
    assert_eq!(g.dtable.to_vec().unwrap(), vec![0.0, 0., 3., 40.]);
}

#[test]
fn peer_ffn_backward_by_hand() {
    // One slot, Identity, Cn = 1: down = [1, 2], z = [3, 4] → α = 11; s = 2 → w = 22;
    // up = [1, −1] → out = [22, −22]. dout = [1, 0]: dw = <up, dout> = 1; ds = dw·α = 11;
    // dα = dw·s = 2; ddown = dα·z = [6, 8]; dz = dα·down = [2, 4]; dup = w·dout = [22, 0].
    let down = cpu(&[1, 2], vec![1.0f32, 2.]);
    let up = cpu(&[1, 2], vec![1.0f32, -1.]);
    let z = cpu(&[1, 2], vec![3.0f32, 4.]);
    let rows = cpu(&[1, 1], vec![0u32]);
    let s = cpu(&[1, 1, 1], vec![2.0f32]);
    let args = PeerFfnArgs {
        rows: &rows,
        scores: &s,
        z: &z,
        down: &down,
        up: &up,
        activation: Activation::Identity,
    };
    assert_eq!(
        peer_ffn(&args).unwrap().to_vec().unwrap(),
        vec![22.0, -22.0]
    );
    let g = peer_ffn_backward(
        &args,
        &cpu(&[1, 2], vec![1.0f32, 0.]),
        BackwardMode::Deterministic,
    )
    .unwrap();
    assert_eq!(g.dscores.to_vec().unwrap(), vec![11.0]);
    assert_eq!(g.ddown.to_vec().unwrap(), vec![6.0, 8.0]);
    assert_eq!(g.dz.to_vec().unwrap(), vec![2.0, 4.0]);
    assert_eq!(g.dup.to_vec().unwrap(), vec![22.0, 0.0]);
}

#[test]
fn gelu_uses_the_erf_form() {
    // Known values: erf(0.5) = 0.5204998778130465, erf(1) = 0.8427007929497149,
    // erf(2) = 0.9953222650189527, erf(3) = 0.9999779095030014 (Abramowitz & Stegun tables).
    for (x, e) in [
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (2.0, 0.9953222650189527),
        (3.0, 0.9999779095030014),
    ] {
        assert!((erf(x) - e).abs() < 1e-15, "erf({x}) = {} vs {e}", erf(x));
        assert!((erf(-x) + e).abs() < 1e-15);
    }
    // GELU(1) = 0.5·(1 + erf(1/√2)) = 0.8413447460685429 (Φ(1)).
    assert!((apply(Activation::Gelu, 1.0) - 0.8413447460685429).abs() < 1e-15);
    // The tanh approximation gives 0.8411919906082768 there: far outside 1e-6.
    assert!((apply(Activation::Gelu, 1.0) - 0.8411919906082768).abs() > 1e-4);
}

#[test]
fn moe_ffn_by_hand() {
    // E = 2, D = F = 1. Expert e: silu(w1·x)·(w3·x)·w2. x = 1:
    // expert 0: silu(1)·1·1 = 0.7310585786300049; expert 1: silu(2)·1·3 = 3·2·σ(2) = 5.284782467...
    let silu = |x: f64| x / (1.0 + (-x).exp());
    let (e0, e1) = (silu(1.0), 3.0 * silu(2.0));
    let x = cpu(&[1, 1], vec![1.0f32]);
    let w1 = cpu(&[2, 1, 1], vec![1.0f32, 2.]);
    let w3 = cpu(&[2, 1, 1], vec![1.0f32, 1.]);
    let w2 = cpu(&[2, 1, 1], vec![1.0f32, 3.]);
    let experts = cpu(&[1, 2], vec![1u32, 0]);
    let gates = cpu(&[1, 2], vec![0.5f32, 0.25]);
    let explicit = MoeRouting::Explicit {
        experts: &experts,
        gates: &gates,
    };
    let out = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing: explicit,
        w1: &w1,
        w3: &w3,
        w2: &w2,
    })
    .unwrap();
    Tolerance::F32_OUTPUT.assert_close("moe explicit", &out_f64(&out.out), &[0.5 * e1 + 0.25 * e0]);
    // Logits [0, ln 3]: p = [.25, .75]; k = 1 picks expert 1 with gate .75 (1 if renormalised).
    let logits = cpu(&[1, 2], vec![0.0f32, 3f32.ln()]);
    for (gates, gate) in [(GateNorm::Softmax, 0.75), (GateNorm::Renormalized, 1.0)] {
        let routing = MoeRouting::Softmax {
            logits: &logits,
            k: 1,
            gates,
        };
        let out = moe_ffn(&MoeFfnArgs {
            x: &x,
            routing,
            w1: &w1,
            w3: &w3,
            w2: &w2,
        })
        .unwrap();
        assert_eq!(out.experts.to_vec().unwrap(), vec![1]);
        Tolerance::F32_OUTPUT.assert_close("gate", &out_f64(&out.gates), &[gate]);
        Tolerance::F32_OUTPUT.assert_close("moe softmax", &out_f64(&out.out), &[gate * e1]);
    }
}

#[test]
fn tucker_proxy_by_hand() {
    // C = [[3, 0], [0, 1]]: top singular pair e1, e1.
    let (u, v) = tucker_proxy(&[3.0f32, 0., 0., 1.], 1, 1, 2, None).unwrap();
    assert_eq!((u, v), (vec![1.0, 0.0], vec![1.0, 0.0]));
    // Two cores summing to [[0, 2], [1, 0]]: C̄C̄ᵀ = diag(4, 1) → u = e1; v = C̄ᵀu/‖·‖ = [0, 2]/2.
    let (u, v) = tucker_proxy(&[0.0f32, 1., 1., 0., 0., 1., 0., 0.], 1, 2, 2, None).unwrap();
    assert_eq!((u.clone(), v.clone()), (vec![1.0, 0.0], vec![0.0, 1.0]));
    // With a previous pair of the other sign, the refresh flips to stay close to it.
    let (u2, v2) = tucker_proxy(
        &[0.0f32, 1., 1., 0., 0., 1., 0., 0.],
        1,
        2,
        2,
        Some((&[-1.0, 0.0], &[0.0, -0.9])),
    )
    .unwrap();
    assert_eq!((u2, v2), (vec![-1.0, 0.0], vec![0.0, -1.0]));
    // A zero previous pair (the code's initial buffers) falls back to the canonical sign.
    let (u3, _) = tucker_proxy(
        &[0.0f32, 1., 1., 0., 0., 1., 0., 0.],
        1,
        2,
        2,
        Some((&[0.0, 0.0], &[0.0, 0.0])),
    )
    .unwrap();
    assert_eq!(u3, u);
    // C = [[−2, 0], [0, 1]]: σ1 = 2 with u = e1 (canonical sign), v = Cᵀu/2 = −e1.
    let (u, v) = tucker_proxy(&[-2.0f32, 0., 0., 1.], 1, 1, 2, None).unwrap();
    assert_eq!((u, v), (vec![1.0, 0.0], vec![-1.0, 0.0]));
}

#[test]
fn rmsnorm_by_hand() {
    // x = [3, 4], γ = [1, 2], ε = 0: rms = sqrt((9 + 16)/2) = sqrt(12.5).
    let r = 12.5f64.sqrt();
    let y = ultramem::reference::rmsnorm::forward(&[3.0, 4.0], &[1.0, 2.0], 0.0).unwrap();
    assert_eq!(y, vec![3.0 / r, 8.0 / r]);
}

#[test]
fn ultramem_v2_layer_forward_by_hand() {
    use ultramem::layer::{UltraMemV2Config, UltraMemV2Params};
    use ultramem::reference::ultramem_v2_layer::forward;
    // D = Dk = R = Cn = m = K1 = Dp = Dv = 1, n = 2 (N = 4 rows), no shuffle, ε = 1e-5.
    let mut cfg = UltraMemV2Config::new(1, 1, 2, 1, 1, 1);
    cfg.rank = 1;
    cfg.cores = 1;
    cfg.shuffle = false;
    let eps = cfg.eps;
    let p = UltraMemV2Params::<f64, f64> {
        w_q: vec![1.0, -1.0], // x = 2 → q̃ = [2, −2] (row, col)
        gamma_q: vec![1.0],
        keys: vec![3.0, -1.0, 1.0, -4.0], // row keys [3, −1], column keys [1, −4]
        gamma_k: vec![1.0],
        cores: vec![2.0],
        u: vec![1.0],
        v: vec![1.0],
        w_pre: vec![0.5],               // z = 0.5·2 = 1
        down: vec![0.0, 3.0, 0.0, 0.0], // α = <down[1], z> = 3
        up: vec![0.0, 0.5, 0.0, 0.0],
        w_out: vec![2.0],
        shuffle: None,
    };
    // RMSNorm of a 1-vector y is y/sqrt(y² + ε):
    let c = 2.0 / (4.0 + eps).sqrt(); // q_row = c, q_col = −c
    let (a, b, d) = (
        3.0 / (9.0 + eps).sqrt(),
        1.0 / (1.0 + eps).sqrt(),
        4.0 / (16.0 + eps).sqrt(),
    );
    // S_row = [c·a, −c·b] → row 0; S_col = [−c·b, c·d] → column 1; ν = 0·2 + 1 = 1 = ρ.
    // G = S_row[0]·2·S_col[1] = 2c²ad; w = G·α = 3G; Y = w·up[1] = 1.5G; o = 2Y = 3G.
    assert!(
        c * a > -c * b && c * d > -c * b,
        "the proxy picks row 0 and column 1"
    );
    let g = 2.0 * c * c * a * d;
    let fwd = forward(&cfg, &p, &[2.0f64]).unwrap();
    assert_eq!(fwd.cache.idx, vec![1]);
    assert_eq!(fwd.cache.rows, vec![1]);
    assert!((fwd.cache.score[0] - g).abs() < 1e-15);
    assert!(
        (fwd.out[0] - 3.0 * g).abs() < 1e-14,
        "{} vs {}",
        fwd.out[0],
        3.0 * g
    );
}
