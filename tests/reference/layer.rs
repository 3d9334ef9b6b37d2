//! The layer's host helpers and its CPU forward: `(u, v)`, initialisation, the layer on the
//! CPU device, `T = 0`.

use crate::common::{f64s, normals, normals_f32, Tolerance};
use proptest::prelude::*;
use ultramem::layer::init::{init_params, paper_value_std, InitScheme};
use ultramem::layer::tucker_proxy::tucker_proxy;
use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
use ultramem::reference::ultramem_v2_layer;
use ultramem::rng::SplitMix64;
use ultramem::Device;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For R = 1..4 (R = 2 takes the closed form, the others the Jacobi solver): `(u, v)` are
    /// unit vectors with `C̄v = σu`, `C̄ᵀu = σv`, and no unit vector is stretched more than `σ`.
    #[test]
    fn tucker_proxy_is_the_top_singular_pair(rank in 1usize..5, cores in 1usize..3, seed in any::<u64>()) {
        let mut rng = SplitMix64::new(seed);
        let c = rng.normals(cores * rank * rank, 1.0);
        let (u, v) = tucker_proxy(&c, 1, cores, rank, None).unwrap();
        let cbar: Vec<f64> = (0..rank * rank).map(|i| (0..cores).map(|k| c[k * rank * rank + i]).sum()).collect();
        let cv: Vec<f64> = (0..rank).map(|i| (0..rank).map(|j| cbar[i * rank + j] * v[j]).sum()).collect();
        let ctu: Vec<f64> = (0..rank).map(|j| (0..rank).map(|i| cbar[i * rank + j] * u[i]).sum()).collect();
        let sigma: f64 = u.iter().zip(&cv).map(|(a, b)| a * b).sum();
        let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
        prop_assert!((norm(&u) - 1.0).abs() < 1e-12 && (norm(&v) - 1.0).abs() < 1e-12);
        prop_assert!(sigma > 0.0);
        for i in 0..rank {
            prop_assert!((cv[i] - sigma * u[i]).abs() < 1e-9 * (1.0 + sigma), "C v != σ u");
            prop_assert!((ctu[i] - sigma * v[i]).abs() < 1e-9 * (1.0 + sigma), "Cᵀ u != σ v");
        }
        for _ in 0..20 {
            let x = rng.normals(rank, 1.0);
            let nx = norm(&x);
            let cx: Vec<f64> = (0..rank).map(|i| (0..rank).map(|j| cbar[i * rank + j] * x[j] / nx).sum()).collect();
            prop_assert!(norm(&cx) <= sigma * (1.0 + 1e-9));
        }
        // Sign continuity: from the negated pair, a refresh returns the negated pair.
        let (nu, nv): (Vec<f64>, Vec<f64>) = (u.iter().map(|x| -x).collect(), v.iter().map(|x| -x).collect());
        let (u2, v2) = tucker_proxy(&c, 1, cores, rank, Some((&nu, &nv))).unwrap();
        prop_assert_eq!((u2, v2), (nu, nv));
    }
}

#[test]
fn paper_value_std_uses_the_fourth_root() {
    // The spec's example gives σ_V ≈ 0.040; reading eq. 26 as σ_V² would give ≈ 0.0016.
    let s = paper_value_std(2048, 4.0, 128, 1, 0.1, 384, 768, 16);
    assert!((s - 0.0397).abs() < 5e-4, "σ_V = {s}");
}

fn moderate_config() -> UltraMemV2Config {
    UltraMemV2Config::new(64, 32, 16, 16, 16, 48)
}

#[test]
fn paper_init_calibrates_mean_selected_score_to_one_and_matches_the_ffn_variance() {
    let cfg = moderate_config();
    let (ffn_ratio, layers) = (4.0, 4);
    let scheme = InitScheme::Paper {
        ffn_ratio,
        layers,
        calibration_tokens: 256,
    };
    let (p, report) = init_params(&cfg, scheme, 7).unwrap();
    // Fresh normalised inputs, not the calibration ones.
    let x = normals(&mut SplitMix64::new(99), 1024 * cfg.d_model);
    let fwd = ultramem_v2_layer::forward(&cfg, &p, &x).unwrap();
    let mean_score = fwd.cache.score.iter().sum::<f64>() / fwd.cache.score.len() as f64;
    let var_out = fwd.out.iter().map(|o| o * o).sum::<f64>() / fwd.out.len() as f64;
    // The paper's target: the FFN output variance 0.064·k_inner/(2L).
    let target = 0.064 * ffn_ratio / (2.0 * layers as f64);
    println!(
        "paper init: gain {:.4}, σ_s² {:.4}, σ_V {:.4}; mean selected score {mean_score:.4}; output variance {var_out:.5} vs target {target:.5} (ratio {:.3})",
        report.gain, report.score_var, report.value_std, var_out / target
    );
    assert!(
        (mean_score - 1.0).abs() < 0.1,
        "mean selected score {mean_score}"
    );
    // The derivation treats z, α and the scores as independent Gaussians; the spec's Monte Carlo
    // found it 9% off, this seed 7%. ±25% still separates the fourth-root reading from the
    // printed σ_V² one, which would be off by orders of magnitude.
    assert!(
        var_out > 0.75 * target && var_out < 1.33 * target,
        "output variance {var_out} vs {target}"
    );
}

#[test]
fn released_code_init_uses_its_fixed_stds() {
    let cfg = moderate_config();
    let (p, report) = init_params(&cfg, InitScheme::ReleasedCode, 3).unwrap();
    let std =
        |v: &[f32]| (v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert_eq!(report.value_std, 0.02);
    assert!((std(&p.up) - 0.02).abs() < 0.002 && (std(&p.down) - 0.02).abs() < 0.002);
    assert!((std(&p.w_q) - (1.0 / 32f64).sqrt()).abs() < 0.01);
    assert!((std(&p.w_out) - (1.0 / 48f64).sqrt()).abs() < 0.01);
    assert!(p
        .gamma_q
        .iter()
        .all(|&g| (f64::from(g) - 32f64.powf(-0.4)).abs() < 1e-6));
    assert!(p.cores.iter().all(|&c| (0.0..1.0).contains(&c)));
    let mut s = p.shuffle.clone().unwrap();
    s.sort_unstable();
    assert_eq!(
        s,
        (0..256).collect::<Vec<u32>>(),
        "the shuffle table is a permutation of the n² slots"
    );
    // Same seed, same parameters.
    assert_eq!(init_params(&cfg, InitScheme::ReleasedCode, 3).unwrap().0, p);
}

#[test]
fn layer_on_the_cpu_device_matches_the_reference_layer() {
    let mut cfg = moderate_config();
    cfg.heads = 2;
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 5).unwrap();
    let x = normals_f32(&mut SplitMix64::new(6), 9 * cfg.d_model);
    let dev = Device::cpu();
    let layer = UltraMemV2Layer::new(&dev, &cfg, &p).unwrap();
    let xt = ultramem::Tensor::from_slice(&dev, &[9, cfg.d_model], &x).unwrap();
    let got = layer.forward(&xt).unwrap().out.to_vec().unwrap();
    let want = ultramem_v2_layer::forward(&cfg, &p, &x).unwrap();
    // The op path rounds q, K̂, scores and z to f32 between ops: relative error ~1e-7 per
    // stage, so 1e-5 relative with an absolute floor of 1e-6·max|o| holds unless a selection
    // flips at a near-tie, which would show as an error of the size of a whole value row; none
    // does for this seed.
    let scale = want.out.iter().fold(0.0f64, |m, o| m.max(o.abs()));
    Tolerance {
        rel: 1e-5,
        abs: 1e-6 * scale,
    }
    .assert_close("layer output", &f64s(&got), &want.out);
}

#[test]
fn layer_with_no_tokens_returns_empty_output_and_zero_gradients() {
    let cfg = moderate_config();
    let (p, _) = init_params(&cfg, InitScheme::ReleasedCode, 1).unwrap();
    let fwd = ultramem_v2_layer::forward(&cfg, &p, &[] as &[f32]).unwrap();
    assert!(fwd.out.is_empty() && fwd.cache.idx.is_empty());
    let g =
        ultramem_v2_layer::backward(&cfg, &p, &[] as &[f32], &fwd.cache, &[] as &[f32]).unwrap();
    assert!(g.dx.is_empty());
    for grad in [
        &g.w_q, &g.keys, &g.cores, &g.w_pre, &g.down, &g.up, &g.w_out, &g.gamma_q, &g.gamma_k,
    ] {
        assert!(grad.iter().all(|&x| x == 0.0));
    }
    let dev = Device::cpu();
    let layer = UltraMemV2Layer::new(&dev, &cfg, &p).unwrap();
    let empty = ultramem::Tensor::<f32>::zeros(&dev, &[0, cfg.d_model]).unwrap();
    let fwd = layer.forward(&empty).unwrap();
    assert_eq!(fwd.out.shape(), &[0, cfg.d_model]);
    let g = layer
        .backward(
            &empty,
            &fwd.cache,
            &empty,
            ultramem::BackwardMode::Deterministic,
        )
        .unwrap()
        .to_host()
        .unwrap();
    assert!(g.dx.is_empty());
    for (name, grad) in g.params() {
        assert!(grad.iter().all(|&x| x == 0.0), "{name}");
    }
}
