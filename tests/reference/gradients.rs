//! Every backward of the reference against central finite differences of its forward, for every
//! input and parameter, in f64 (step `1e-6·max(|x|, 1)`). Each check prints its normwise
//! relative error `max|analytic − fd| / max|fd|`; the bound 1e-6 leaves room for the
//! `O(h²)` truncation and `O(ε/h)` rounding of the differences (both below 1e-8 here).
//! Selections are held fixed by the inputs: each loss asserts it re-selects the same indices.

use crate::common::{check_gradient, dot, normals};
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::{QueryMode, UltraMemV2Config, UltraMemV2Params};
use ultramem::reference::{
    additive_topk, peer_ffn, score_fn, tucker_topk, ultramem_v2_layer, weighted_gather,
};
use ultramem::rng::SplitMix64;
use ultramem::*;

const BOUND: f64 = 1e-6;

#[test]
fn additive_topk_backward_matches_finite_differences() {
    let mut rng = SplitMix64::new(11);
    let d = AdditiveTopkDims {
        tokens: 3,
        heads: 2,
        dk: 6,
        n: 5,
        k: 4,
        k1: 4,
    };
    let q = normals(&mut rng, 3 * 2 * 6);
    let keys = normals(&mut rng, 2 * 2 * 5 * 3);
    let (idx, _) = additive_topk::forward(&d, &q, &keys).unwrap();
    let ds = normals(&mut rng, idx.len());
    let (dq, dkeys) = additive_topk::backward(&d, &q, &keys, &idx, &ds).unwrap();
    let loss = |q: &[f64], k: &[f64]| {
        let (i, s) = additive_topk::forward(&d, q, k).unwrap();
        assert_eq!(i, idx, "a finite-difference step changed the selection");
        dot(&s, &ds)
    };
    check_gradient("additive_topk dq", &q, &dq, BOUND, |x| loss(x, &keys));
    check_gradient("additive_topk dkeys", &keys, &dkeys, BOUND, |x| loss(&q, x));
}

#[test]
fn tucker_topk_backward_matches_finite_differences() {
    for (seed, rank, cores, k1, m) in [(21, 2, 2, 3, 4), (22, 1, 1, 4, 5), (23, 3, 2, 5, 7)] {
        let mut rng = SplitMix64::new(seed);
        let d = TuckerTopkDims {
            tokens: 3,
            heads: 2,
            rank,
            dk: 3,
            n: 5,
            cores,
            k1,
            m,
        };
        let q = normals(&mut rng, 3 * 2 * 2 * rank * 3);
        let keys = normals(&mut rng, 2 * 2 * rank * 5 * 3);
        let c = normals(&mut rng, 2 * cores * rank * rank);
        let u = normals(&mut rng, 2 * rank);
        let v = normals(&mut rng, 2 * rank);
        let (idx, _) = tucker_topk::forward(&d, &q, &keys, &c, &u, &v).unwrap();
        let ds = normals(&mut rng, idx.len() * cores);
        let g = tucker_topk::backward(&d, &q, &keys, &c, &idx, &ds).unwrap();
        let loss = |q: &[f64], k: &[f64], c: &[f64]| {
            let (i, s) = tucker_topk::forward(&d, q, k, c, &u, &v).unwrap();
            assert_eq!(i, idx, "a finite-difference step changed the selection");
            dot(&s, &ds)
        };
        check_gradient(&format!("tucker_topk R={rank} dq"), &q, &g.dq, BOUND, |x| {
            loss(x, &keys, &c)
        });
        check_gradient(
            &format!("tucker_topk R={rank} dkeys"),
            &keys,
            &g.dkeys,
            BOUND,
            |x| loss(&q, x, &c),
        );
        check_gradient(
            &format!("tucker_topk R={rank} dcores"),
            &c,
            &g.dcores,
            BOUND,
            |x| loss(&q, &keys, x),
        );
    }
}

#[test]
fn score_fn_backward_matches_finite_differences() {
    let mut rng = SplitMix64::new(31);
    let d = ScoreFnDims {
        tokens: 2,
        heads: 2,
        k: 3,
        cores: 2,
    };
    let x = normals(&mut rng, 24);
    let dy = normals(&mut rng, 24);
    for func in [
        ScoreFn::Raw,
        ScoreFn::Softmax,
        ScoreFn::Relu,
        ScoreFn::Sigmoid,
    ] {
        let dx = score_fn::backward(&d, func, &x, &dy).unwrap();
        check_gradient(&format!("score_fn {func:?}"), &x, &dx, BOUND, |x| {
            dot(&score_fn::forward(&d, func, x).unwrap(), &dy)
        });
    }
}

#[test]
fn weighted_gather_backward_matches_finite_differences() {
    let mut rng = SplitMix64::new(41);
    let d = WeightedGatherDims {
        tokens: 3,
        slots: 4,
        cores: 2,
        table_rows: 5,
        dv: 6,
    };
    // Row 4 twice in token 0: duplicate rows must add up.
    let rows = vec![4, 4, 0, 2, 1, 3, 3, 0, 2, 2, 4, 1];
    let w = normals(&mut rng, 3 * 4 * 2);
    let table = normals(&mut rng, 5 * 6);
    let dout = normals(&mut rng, 3 * 6);
    let (dw, dtable) = weighted_gather::backward(&d, &rows, &w, &table, &dout).unwrap();
    let loss =
        |w: &[f64], t: &[f64]| dot(&weighted_gather::forward(&d, &rows, w, t).unwrap(), &dout);
    check_gradient("weighted_gather dw", &w, &dw, BOUND, |x| loss(x, &table));
    check_gradient("weighted_gather dtable", &table, &dtable, BOUND, |x| {
        loss(&w, x)
    });
}

#[test]
fn peer_ffn_backward_matches_finite_differences() {
    for (seed, act) in [
        (51, Activation::Identity),
        (52, Activation::Relu),
        (53, Activation::Gelu),
        (54, Activation::Silu),
    ] {
        let mut rng = SplitMix64::new(seed);
        let d = PeerFfnDims {
            tokens: 3,
            slots: 4,
            cores: 2,
            table_rows: 5,
            dp: 3,
            dv: 4,
        };
        let rows = vec![1, 1, 4, 0, 2, 3, 0, 4, 4, 3, 2, 1];
        let s = normals(&mut rng, 3 * 4 * 2);
        let z = normals(&mut rng, 3 * 3);
        let down = normals(&mut rng, 5 * 3);
        let up = normals(&mut rng, 5 * 4);
        let dout = normals(&mut rng, 3 * 4);
        let g = peer_ffn::backward(&d, act, &rows, &s, &z, &down, &up, &dout).unwrap();
        let loss = |s: &[f64], z: &[f64], dn: &[f64], u: &[f64]| {
            dot(
                &peer_ffn::forward(&d, act, &rows, s, z, dn, u).unwrap(),
                &dout,
            )
        };
        check_gradient(
            &format!("peer_ffn {act:?} ds"),
            &s,
            &g.dscores,
            BOUND,
            |x| loss(x, &z, &down, &up),
        );
        check_gradient(&format!("peer_ffn {act:?} dz"), &z, &g.dz, BOUND, |x| {
            loss(&s, x, &down, &up)
        });
        check_gradient(
            &format!("peer_ffn {act:?} ddown"),
            &down,
            &g.ddown,
            BOUND,
            |x| loss(&s, &z, x, &up),
        );
        check_gradient(&format!("peer_ffn {act:?} dup"), &up, &g.dup, BOUND, |x| {
            loss(&s, &z, &down, x)
        });
    }
}

/// A small layer with every feature on: two heads, a shuffle table, a cross-layer window.
pub fn small_layer(
    query_mode: QueryMode,
    activation: Activation,
    seed: u64,
) -> (UltraMemV2Config, UltraMemV2Params<f64, f64>) {
    let mut cfg = UltraMemV2Config::new(6, 4, 5, 4, 3, 4);
    cfg.heads = 2;
    cfg.k1 = 3;
    cfg.query_mode = query_mode;
    cfg.activation = activation;
    // The layer owns a window of 20 rows starting at row 7 of a 30-row shared table.
    cfg.map = IndexMapConfig {
        rows_per_layer: 20,
        offset: 7,
        total_rows: 30,
    };
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, seed).unwrap();
    let mut p = p.cast::<f64, f64>();
    // Unit-scale parameters give finite differences a clean signal.
    let mut rng = SplitMix64::new(seed ^ 0xABCD);
    for v in [
        &mut p.w_q,
        &mut p.keys,
        &mut p.w_pre,
        &mut p.down,
        &mut p.up,
        &mut p.w_out,
    ] {
        *v = normals(&mut rng, v.len());
    }
    p.gamma_q = normals(&mut rng, 4).iter().map(|g| 1.0 + 0.3 * g).collect();
    p.gamma_k = normals(&mut rng, 4).iter().map(|g| 1.0 + 0.3 * g).collect();
    (cfg, p)
}

#[test]
fn ultramem_v2_layer_backward_matches_finite_differences_end_to_end() {
    type Field = fn(&mut UltraMemV2Params<f64, f64>) -> &mut Vec<f64>;
    let fields: [(&str, Field); 9] = [
        ("w_q", |p| &mut p.w_q),
        ("gamma_q", |p| &mut p.gamma_q),
        ("keys", |p| &mut p.keys),
        ("gamma_k", |p| &mut p.gamma_k),
        ("cores", |p| &mut p.cores),
        ("w_pre", |p| &mut p.w_pre),
        ("down", |p| &mut p.down),
        ("up", |p| &mut p.up),
        ("w_out", |p| &mut p.w_out),
    ];
    for (seed, mode, act) in [
        (61, QueryMode::PerRank, Activation::Identity),
        (62, QueryMode::Tied, Activation::Gelu),
    ] {
        let (cfg, p) = small_layer(mode, act, seed);
        let mut rng = SplitMix64::new(seed + 100);
        let x = normals(&mut rng, 3 * cfg.d_model);
        let fwd = ultramem_v2_layer::forward(&cfg, &p, &x).unwrap();
        let r = normals(&mut rng, fwd.out.len());
        let g = ultramem_v2_layer::backward(&cfg, &p, &x, &fwd.cache, &r).unwrap();
        let loss = |p: &UltraMemV2Params<f64, f64>, x: &[f64]| {
            let f = ultramem_v2_layer::forward(&cfg, p, x).unwrap();
            assert_eq!(
                f.cache.idx, fwd.cache.idx,
                "a finite-difference step changed the selection"
            );
            dot(&f.out, &r)
        };
        check_gradient(
            &format!("layer {mode:?} {act:?} dx"),
            &x,
            &g.dx,
            BOUND,
            |x| loss(&p, x),
        );
        let analytic = [
            &g.w_q, &g.gamma_q, &g.keys, &g.gamma_k, &g.cores, &g.w_pre, &g.down, &g.up, &g.w_out,
        ];
        for ((name, field), grad) in fields.iter().zip(analytic) {
            let mut base = p.clone();
            let x0 = field(&mut base).clone();
            check_gradient(
                &format!("layer {mode:?} {act:?} d{name}"),
                &x0,
                grad,
                BOUND,
                |v| {
                    let mut q = p.clone();
                    *field(&mut q) = v.to_vec();
                    loss(&q, &x)
                },
            );
        }
    }
}

#[test]
fn product_key_layer_backward_matches_finite_differences_end_to_end() {
    use ultramem::layer::product_key::{ProductKeyConfig, ProductKeyParams};
    use ultramem::reference::product_key_layer::{
        backward as reference_backward, forward as reference_forward,
    };
    type Field = fn(&mut ProductKeyParams<f64, f64>) -> &mut Vec<f64>;
    let fields: [(&str, Field); 4] = [
        ("w_q", |p| &mut p.w_q),
        ("keys", |p| &mut p.keys),
        ("down", |p| &mut p.down),
        ("values", |p| &mut p.values),
    ];
    for (seed, cfg) in [
        (71, ProductKeyConfig::pkm(6, 2, 4, 5, 3)),
        (72, ProductKeyConfig::peer(6, 2, 4, 5, 3)),
        (73, {
            let mut c = ProductKeyConfig::peer(5, 1, 6, 4, 4);
            c.score_fn = ScoreFn::Sigmoid;
            c.activation = Activation::Silu;
            c.k1 = Some(4);
            c
        }),
    ] {
        let mut p = ProductKeyParams::init(&cfg, seed)
            .unwrap()
            .cast::<f64, f64>();
        // Unit-scale parameters give finite differences a clean signal.
        let mut rng = SplitMix64::new(seed + 1);
        for v in [&mut p.w_q, &mut p.keys, &mut p.down, &mut p.values] {
            *v = normals(&mut rng, v.len());
        }
        let x = normals(&mut rng, 3 * cfg.d_model);
        let fwd = reference_forward(&cfg, &p, &x).unwrap();
        let r = normals(&mut rng, fwd.out.len());
        let g = reference_backward(&cfg, &p, &x, &fwd, &r).unwrap();
        let loss = |p: &ProductKeyParams<f64, f64>, x: &[f64]| {
            let f = reference_forward(&cfg, p, x).unwrap();
            assert_eq!(
                f.idx, fwd.idx,
                "a finite-difference step changed the selection"
            );
            dot(&f.out, &r)
        };
        let name = format!("{:?} {:?} {:?}", cfg.kind, cfg.score_fn, cfg.activation);
        check_gradient(&format!("{name} dx"), &x, &g.dx, BOUND, |x| loss(&p, x));
        let analytic = [&g.w_q, &g.keys, &g.down, &g.values];
        for ((field_name, field), grad) in fields.iter().zip(analytic) {
            let mut base = p.clone();
            let x0 = field(&mut base).clone();
            check_gradient(&format!("{name} d{field_name}"), &x0, grad, BOUND, |v| {
                let mut q = p.clone();
                *field(&mut q) = v.to_vec();
                loss(&q, &x)
            });
        }
    }
}
