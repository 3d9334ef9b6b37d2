//! The UltraMemV2 layer on each device ([`UltraMemV2Layer`]: every op on that device) against the
//! all-f64 reference layer, forward and backward, and a short training run on every device.
//!
//! Tolerance: the device layer rounds to f32 between its ~10 ops and (on a GPU) sums in f32
//! inside them, over at most a few hundred terms per sum here; each result is then within
//! ~1e-5 of its tensor's largest magnitude. We allow 2e-4 of that scale per tensor: any wrong
//! term or missing contribution is O(1) of the scale and fails.
//!
//! Selection: the device picks its top-m from f32 scores, the reference from f64. Where the
//! reference has a near-tie at the cut the two may keep different slots; then the test checks
//! that the device's slots score (in f64) the same as the reference's, within the f32 tolerance
//! of the top-k tests, and compares nothing downstream for that case. Likewise a token whose
//! value activations all sit in a smooth φ's far tail (output ~1e-5 of its inputs, where φ's
//! absolute accuracy is no longer relative accuracy). Such cases are counted and must stay rare.

use std::cell::Cell;

use crate::common::{device_tests, normals};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::{QueryMode, UltraMemV2Config, UltraMemV2Layer, UltraMemV2Params};
use ultramem::reference::ultramem_v2_layer as reference;
use ultramem::*;

/// `|a − b| ≤ 2e-4 · max|b|` elementwise.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 2e-4 * scale + 1e-30,
            "{what}[{i}]: {g:e} vs {w:e} (scale {scale:e})"
        );
    }
}

/// The f64 total score `Σ_c G_c` of virtual slot `nu` for token `t`, head `h`, from the
/// reference's normalised queries and keys.
fn slot_score(
    cfg: &UltraMemV2Config,
    p: &UltraMemV2Params,
    cache: &reference::LayerCache,
    t: usize,
    h: usize,
    nu: u32,
) -> f64 {
    let (r, dk, n) = (cfg.rank, cfg.dk, cfg.n);
    let (i, j) = (nu as usize / n, nu as usize % n);
    let sub = |side: usize, rank: usize, key: usize| -> f64 {
        let q = &cache.q[(((t * cfg.heads + h) * 2 + side) * r + rank) * dk..][..dk];
        let k = &cache.khat[(((h * 2 + side) * r + rank) * n + key) * dk..][..dk];
        q.iter().zip(k).map(|(a, b)| a * b).sum()
    };
    let mut total = 0.0;
    for c in 0..cfg.cores {
        for a in 0..r {
            for b in 0..r {
                let core = f64::from(p.cores[((h * cfg.cores + c) * r + a) * r + b]);
                total += sub(0, a, i) * core * sub(1, b, j);
            }
        }
    }
    total
}

/// Whether some token's value activations all lie in the far tail of a smooth φ (Gelu, SiLU),
/// where |φ(α)| ≪ |α|: the device's φ is accurate in absolute terms there but not relative to
/// the tiny output, which the per-tensor relative tolerance assumes. Such cases are set aside
/// with the near-ties (counted, and they must stay rare).
fn activation_tails_dominate(
    cfg: &UltraMemV2Config,
    p: &UltraMemV2Params,
    cache: &reference::LayerCache,
    tokens: usize,
) -> bool {
    if !matches!(cfg.activation, Activation::Gelu | Activation::Silu) {
        return false;
    }
    let slots = cfg.heads * cfg.m;
    (0..tokens).any(|t| {
        let (mut phi, mut arg) = (0.0f64, 0.0f64);
        for &row in &cache.rows[t * slots..(t + 1) * slots] {
            let down = &p.down[row as usize * cfg.dp..][..cfg.dp];
            let z = &cache.z[t * cfg.dp..][..cfg.dp];
            let alpha: f64 = down.iter().zip(z).map(|(&d, &z)| f64::from(d) * z).sum();
            phi += ultramem::reference::activation::apply(cfg.activation, alpha).abs();
            arg += alpha.abs();
        }
        phi < 1e-3 * arg
    })
}

/// Runs the layer on `dev` and compares it with the reference; returns false when a near-tie
/// at the cut made the selections differ (checked, but nothing downstream compared), or when
/// the output is made only of activation tails (see `activation_tails_dominate`).
fn check(
    dev: &Device,
    cfg: &UltraMemV2Config,
    p: &UltraMemV2Params,
    tokens: usize,
    mode: BackwardMode,
) -> bool {
    let d = cfg.d_model;
    let x = normals(31 + tokens as u64, tokens * d, 1.0);
    let dout = normals(32, tokens * d, 1.0);
    let want = reference::forward(cfg, p, &x).unwrap();
    let layer = UltraMemV2Layer::new(dev, cfg, p).unwrap();
    let xt = Tensor::from_slice(dev, &[tokens, d], &x).unwrap();
    let got = layer.forward(&xt).unwrap();
    let idx = got.cache.idx.to_vec().unwrap();
    if idx != want.cache.idx {
        // Same scores, slot by slot in rank order, within the f32 scoring error.
        let m = cfg.m;
        for th in 0..tokens * cfg.heads {
            let (t, h) = (th / cfg.heads, th % cfg.heads);
            let ours = &idx[th * m..(th + 1) * m];
            let theirs = &want.cache.idx[th * m..(th + 1) * m];
            let mut seen = ours.to_vec();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), m, "duplicate slot on {dev}: {ours:?}");
            for (a, b) in ours.iter().zip(theirs) {
                let (sa, sb) = (
                    slot_score(cfg, p, &want.cache, t, h, *a),
                    slot_score(cfg, p, &want.cache, t, h, *b),
                );
                assert!(
                    (sa - sb).abs() <= 1e-4 * (1.0 + sb.abs()),
                    "token {t} head {h}: slot {a} scores {sa}, the reference's {b} scores {sb}"
                );
            }
        }
        return false;
    }
    if activation_tails_dominate(cfg, p, &want.cache, tokens) {
        return false;
    }
    assert_close(
        &format!("out on {dev}"),
        &got.out.to_vec().unwrap(),
        &want.out,
    );
    let dt = Tensor::from_slice(dev, &[tokens, d], &dout).unwrap();
    let g = layer
        .backward(&xt, &got.cache, &dt, mode)
        .unwrap()
        .to_host()
        .unwrap();
    let w = reference::backward(cfg, p, &x, &want.cache, &dout).unwrap();
    assert_close(&format!("dx on {dev}"), &g.dx, &w.dx);
    let want_params: [(&str, &[f64]); 9] = [
        ("w_q", &w.w_q),
        ("gamma_q", &w.gamma_q),
        ("keys", &w.keys),
        ("gamma_k", &w.gamma_k),
        ("cores", &w.cores),
        ("w_pre", &w.w_pre),
        ("down", &w.down),
        ("up", &w.up),
        ("w_out", &w.w_out),
    ];
    for ((name, got), (_, want)) in g.params().into_iter().zip(want_params) {
        assert_close(&format!("d{name} on {dev} ({mode:?})"), got, want);
    }
    true
}

fn config() -> impl Strategy<Value = UltraMemV2Config> {
    (
        (4usize..24, 2usize..20, 4usize..12, 1usize..10),
        (1usize..3, 1usize..4, 1usize..3, 1usize..12, 1usize..8),
        (any::<bool>(), any::<bool>(), 0usize..4),
    )
        .prop_map(
            |((d, dk, n, m), (heads, rank, cores, dp, dv_per_core), (tied, shuffle, act))| {
                let mut cfg =
                    UltraMemV2Config::new(d, dk, n, m.min(n * n), dp, dv_per_core * cores);
                cfg.heads = heads;
                cfg.rank = rank;
                cfg.cores = cores;
                cfg.shuffle = shuffle;
                cfg.query_mode = if tied {
                    QueryMode::Tied
                } else {
                    QueryMode::PerRank
                };
                cfg.activation = [
                    Activation::Identity,
                    Activation::Relu,
                    Activation::Gelu,
                    Activation::Silu,
                ][act];
                cfg
            },
        )
}

fn run_case(dev: &Device, cfg: &UltraMemV2Config, tokens: usize, seed: u64) -> bool {
    let (p, _) = init_params(cfg, InitScheme::ReleasedCode, seed).unwrap();
    // Values of unit scale, so the outputs are not dominated by rounding of tiny numbers.
    let p = UltraMemV2Params {
        down: normals(seed + 1, p.down.len(), 1.0),
        up: normals(seed + 2, p.up.len(), 1.0),
        ..p
    };
    let mode = if seed.is_multiple_of(2) {
        BackwardMode::Deterministic
    } else {
        BackwardMode::Atomic
    };
    check(dev, cfg, &p, tokens, mode)
}

/// Runs `check` on proptest draws of `strategy` (each returns false when a near-tie at the cut
/// left only the selection compared) and requires at least three quarters of the cases to be
/// compared end to end.
fn run_random<S: Strategy>(
    what: &str,
    dev: &Device,
    strategy: S,
    check: impl Fn(S::Value) -> bool,
) {
    let mut runner = TestRunner::new(crate::common::cases(24));
    let (total, compared) = (Cell::new(0usize), Cell::new(0usize));
    runner
        .run(&strategy, |v| {
            total.set(total.get() + 1);
            if check(v) {
                compared.set(compared.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    let (total, compared) = (total.get(), compared.get());
    eprintln!("{what} on {dev}: {compared} of {total} random cases compared end to end");
    assert!(
        compared * 4 >= total * 3,
        "{what}: only {compared} of {total} cases were free of near-ties at the cut"
    );
}

/// Random configs (odd sizes, 1–2 heads and cores, ranks 1–3, tied or per-rank queries, every
/// activation, with and without a shuffle, T = 0 included) on `dev`.
fn random_cases(dev: &Device) {
    run_random(
        "layer",
        dev,
        (config(), 0usize..6, 0u64..1000),
        |(cfg, tokens, seed)| run_case(dev, &cfg, tokens, seed),
    );
}

device_tests!(cpu, matches_reference, |dev| {
    random_cases(dev);
});

/// UltraMemV2-1B/7B scaled down by 8 in width and sub-keys (D 256, Dk 64, n 66, m = K1 = 16,
/// Dp 48, Dv 96, R = Cn = 2, H = 1), so the paper's structure runs on lavapipe in seconds.
fn scaled_1b_7b() -> UltraMemV2Config {
    UltraMemV2Config::new(256, 64, 66, 16, 48, 96)
}

fn check_scaled(dev: &Device) {
    let cfg = scaled_1b_7b();
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 5).unwrap();
    for mode in [BackwardMode::Deterministic, BackwardMode::Atomic] {
        assert!(
            check(dev, &cfg, &p, 8, mode),
            "a near-tie at the cut in the fixed scaled 1B/7B case: pick another seed"
        );
    }
}

device_tests!(cpu, matches_reference_at_scaled_1b_7b, |dev| {
    check_scaled(dev);
});

/// 50 steps of plain SGD (lr 0.05) memorising random x → target pairs; the loss must fall at
/// least 5× (it falls 8.29 → 0.77 here),
/// and the CPU and wgpu runs must agree step by step (same meaning: both round to f32 between
/// ops; a selection flip on a near-tie could separate them, so the bound is 1% of the loss).
fn train(dev: &Device) -> Vec<f64> {
    let cfg = UltraMemV2Config::new(16, 8, 8, 4, 8, 16);
    let (tokens, d) = (8usize, cfg.d_model);
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 3).unwrap();
    // Unit-scale values: with the code's 0.02 the value path starts at the saddle at zero
    // (α and the value rows both tiny) and plain SGD barely moves in 50 steps.
    let mut p = UltraMemV2Params {
        down: normals(43, p.down.len(), 0.5),
        up: normals(44, p.up.len(), 0.5),
        ..p
    };
    let x = normals(41, tokens * d, 1.0);
    let target = normals(42, tokens * d, 0.5);
    let xt = Tensor::from_slice(dev, &[tokens, d], &x).unwrap();
    let lr = 0.05f32;
    let mut losses = Vec::new();
    for _ in 0..50 {
        let mut layer = UltraMemV2Layer::new(dev, &cfg, &p).unwrap();
        layer.refresh_proxy().unwrap();
        let fwd = layer.forward(&xt).unwrap();
        let out = fwd.out.to_vec().unwrap();
        let diff: Vec<f32> = out.iter().zip(&target).map(|(o, t)| o - t).collect();
        let loss = diff.iter().map(|e| f64::from(e * e)).sum::<f64>() / (2 * tokens) as f64;
        losses.push(loss);
        let dout: Vec<f32> = diff.iter().map(|e| e / tokens as f32).collect();
        let dt = Tensor::from_slice(dev, &[tokens, d], &dout).unwrap();
        let g = layer
            .backward(&xt, &fwd.cache, &dt, BackwardMode::Deterministic)
            .unwrap()
            .to_host()
            .unwrap();
        p = layer.params().unwrap();
        let step =
            |w: &mut Vec<f32>, g: &[f32]| w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g);
        step(&mut p.w_q, &g.w_q);
        step(&mut p.gamma_q, &g.gamma_q);
        step(&mut p.keys, &g.keys);
        step(&mut p.gamma_k, &g.gamma_k);
        step(&mut p.cores, &g.cores);
        step(&mut p.w_pre, &g.w_pre);
        step(&mut p.down, &g.down);
        step(&mut p.up, &g.up);
        step(&mut p.w_out, &g.w_out);
    }
    losses
}

/// The loss falls at least 5× on `dev`, step by step within 1% of the CPU device's run.
fn check_training(dev: &Device) {
    static CPU: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let cpu = CPU.get_or_init(|| train(&Device::cpu()));
    let losses = train(dev);
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    eprintln!("layer SGD on {dev}: loss {first:.5} -> {last:.5} in 50 steps");
    assert!(last * 5.0 <= first, "the loss fell only {first} -> {last}");
    for (step, (a, b)) in cpu.iter().zip(&losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-2 * a.abs(),
            "step {step}: cpu loss {a}, {dev} loss {b}"
        );
    }
}

device_tests!(cpu, training_loss_falls_as_on_the_cpu, |dev| {
    check_training(dev);
});

mod product_key {
    //! PKM and PEER layers ([`ProductKeyLayer`]) on each device against their f64 reference,
    //! with the same tolerance and near-tie handling as the UltraMemV2 layer above.

    use super::{assert_close, normals};
    use crate::common::device_tests;
    use proptest::prelude::*;
    use ultramem::layer::product_key::{
        ProductKeyConfig, ProductKeyKind, ProductKeyLayer, ProductKeyParams,
    };
    use ultramem::reference::product_key_layer::{
        backward as reference_backward, forward as reference_forward,
    };
    use ultramem::*;

    /// The f64 additive score of slot `nu` for token `t`, head `h`.
    fn slot_score(
        cfg: &ProductKeyConfig,
        p: &ProductKeyParams,
        q: &[f64],
        t: usize,
        h: usize,
        nu: u32,
    ) -> f64 {
        let (half, n) = (cfg.dk / 2, cfg.n);
        let qh = &q[(t * cfg.heads + h) * cfg.dk..][..cfg.dk];
        let sub = |side: usize, key: usize| -> f64 {
            let k = &p.keys[((h * 2 + side) * n + key) * half..][..half];
            qh[side * half..(side + 1) * half]
                .iter()
                .zip(k)
                .map(|(a, &b)| a * f64::from(b))
                .sum()
        };
        sub(0, nu as usize / n) + sub(1, nu as usize % n)
    }

    fn check(
        dev: &Device,
        cfg: &ProductKeyConfig,
        seed: u64,
        tokens: usize,
        mode: BackwardMode,
    ) -> bool {
        let p = ProductKeyParams::init(cfg, seed).unwrap();
        let d = cfg.d_model;
        let x = normals(seed + 5, tokens * d, 1.0);
        let dout = normals(seed + 6, tokens * d, 1.0);
        let want = reference_forward(cfg, &p, &x).unwrap();
        let layer = ProductKeyLayer::new(dev, cfg, &p).unwrap();
        let xt = Tensor::from_slice(dev, &[tokens, d], &x).unwrap();
        let got = layer.forward(&xt).unwrap();
        let idx = got.cache.rows.to_vec().unwrap();
        if idx != want.idx {
            let k = cfg.k;
            for th in 0..tokens * cfg.heads {
                let (t, h) = (th / cfg.heads, th % cfg.heads);
                for (a, b) in idx[th * k..(th + 1) * k]
                    .iter()
                    .zip(&want.idx[th * k..(th + 1) * k])
                {
                    let (sa, sb) = (
                        slot_score(cfg, &p, &want.q, t, h, *a),
                        slot_score(cfg, &p, &want.q, t, h, *b),
                    );
                    assert!(
                        (sa - sb).abs() <= 1e-4 * (1.0 + sb.abs()),
                        "token {t} head {h}: slot {a} scores {sa}, the reference's {b} scores {sb}"
                    );
                }
            }
            return false;
        }
        assert_close(
            &format!("{:?} out on {dev}", cfg.kind),
            &got.out.to_vec().unwrap(),
            &want.out,
        );
        let dt = Tensor::from_slice(dev, &[tokens, d], &dout).unwrap();
        let g = layer.backward(&xt, &got.cache, &dt, mode).unwrap();
        let w = reference_backward(cfg, &p, &x, &want, &dout).unwrap();
        let name = format!("{:?} on {dev} ({mode:?})", cfg.kind);
        assert_close(&format!("{name} dx"), &g.dx.to_vec().unwrap(), &w.dx);
        assert_close(&format!("{name} dw_q"), &g.w_q.to_vec().unwrap(), &w.w_q);
        assert_close(&format!("{name} dkeys"), &g.keys.to_vec().unwrap(), &w.keys);
        assert_close(
            &format!("{name} dvalues"),
            &g.values.to_vec().unwrap(),
            &w.values,
        );
        match (&g.down, cfg.kind) {
            (Some(down), ProductKeyKind::Peer) => {
                assert_close(&format!("{name} ddown"), &down.to_vec().unwrap(), &w.down)
            }
            (None, ProductKeyKind::Pkm) => {}
            (down, kind) => panic!("{kind:?} layer returned down gradient {down:?}"),
        }
        true
    }

    fn config() -> impl Strategy<Value = ProductKeyConfig> {
        (
            any::<bool>(),
            2usize..24,
            1usize..4,
            1usize..10,
            2usize..12,
            1usize..8,
            0usize..3,
            0usize..4,
        )
            .prop_map(|(peer, d, heads, half, n, k, func, act)| {
                // The additive path needs k ≤ K1 ≤ n; K1 > k (a wider stage 1) in half the cases.
                let k = k.min(n);
                let mut cfg = if peer {
                    ProductKeyConfig::peer(d, heads, 2 * half, n, k)
                } else {
                    ProductKeyConfig::pkm(d, heads, 2 * half, n, k)
                };
                cfg.k1 = Some((k + func % 2).min(n));
                cfg.score_fn = [ScoreFn::Softmax, ScoreFn::Relu, ScoreFn::Sigmoid][func];
                if peer {
                    cfg.activation = [
                        Activation::Identity,
                        Activation::Relu,
                        Activation::Gelu,
                        Activation::Silu,
                    ][act];
                }
                cfg
            })
    }

    fn random_cases(dev: &Device) {
        let strategy = (config(), 0usize..6, 0u64..1000);
        super::run_random(
            "product-key layers",
            dev,
            strategy,
            |(cfg, tokens, seed)| {
                let mode = if seed.is_multiple_of(2) {
                    BackwardMode::Deterministic
                } else {
                    BackwardMode::Atomic
                };
                check(dev, &cfg, seed, tokens, mode)
            },
        );
    }

    device_tests!(cpu, match_reference, |dev| {
        random_cases(dev);
    });
}

/// A case CI drew (seed 566): one slot, Gelu, its argument α = −4.42 deep in the tail, so the
/// output is ~1e-5 while the device's Gelu, accurate in absolute terms, is off by 5.6e-4 of
/// that. The relative comparison does not apply; the case is set aside (not failed).
#[test]
fn an_output_made_only_of_activation_tails_is_set_aside() {
    let mut cfg = UltraMemV2Config::new(6, 8, 9, 1, 11, 1);
    cfg.heads = 1;
    cfg.rank = 2;
    cfg.cores = 1;
    cfg.shuffle = false;
    cfg.query_mode = QueryMode::Tied;
    cfg.activation = Activation::Gelu;
    let dev = Device::ptx_interp().unwrap();
    assert!(!run_case(&dev, &cfg, 1, 566), "compared end to end");
}
