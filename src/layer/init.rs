//! Initialisation of an UltraMemV2 layer: the paper's rule (Part II §3.5.4, read with the fourth
//! root of §8 A1) and the released code's rule.
//!
//! **Paper.** The memory input is normalised (mean 0, variance 1). `W_q`, `W_pre` and `W_out`
//! use the small-init std `sqrt(2/(5D))`; keys `N(0, 1/Dk)` and cores `U(0, 1)` as in the code
//! (keys are RMS-normalised, so their scale does not matter). The norm gains `γ_q = γ_k = g` are
//! calibrated by Monte Carlo so that the mean selected per-core score is 1: the scores scale as
//! `g⁴`, so one run at `g = 1` fixes `g`. The variance `σ_s²` of those calibrated scores then
//! gives the value std for both tables,
//! `σ_V = (0.2·k_inner·D / (m·H·(1 + σ_s²)·Dp·Dv·L))^{1/4}`, which makes the memory output
//! variance equal a SwiGLU FFN's at init.
//!
//! **Released code.** Tables std 0.02, `W_q ~ N(0, 1/Dk)`, `W_out ~ N(0, 1/Dv)`,
//! `W_pre ~ N(0, 1/D)`, keys `N(0, 1/Dk)`, gains `Dk^-0.4`, cores `U(0, 1)`.
//!
//! Both compute `(u, v)` from the cores at once (the code starts from zeros and refreshes before
//! the first step, which gives the same pair) and draw a shuffle permutation when the config
//! asks for one.

use super::tucker_proxy::tucker_proxy;
use crate::dims::ultramem_v2_layer::{UltraMemV2Config, UltraMemV2Params};
use crate::error::{Error, Result};
use crate::reference::tucker_topk;
use crate::reference::ultramem_v2_layer::scoring_inputs;
use crate::rng::SplitMix64;

const OP: &str = "init";

/// Which rule to initialise with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitScheme {
    /// The paper's variance-matching rule.
    Paper {
        /// `k_inner = F/D` of the block's SwiGLU FFN (4 in the paper's example).
        ffn_ratio: f64,
        /// Transformer blocks `L`.
        layers: usize,
        /// Tokens drawn to calibrate the gains and measure `σ_s²` (e.g. 256).
        calibration_tokens: usize,
    },
    /// The released code's fixed stds.
    ReleasedCode,
}

/// The paper's value std (eq. 26 with the fourth root):
/// `σ_V = (0.2·k_inner·D / (m·H·(1 + σ_s²)·Dp·Dv·L))^{1/4}`.
///
/// ```
/// // The spec's example: D 2048, k_inner 4, m 128, H 1, σ_s² 0.1, Dp 384, Dv 768, L 16.
/// let s = ultramem::layer::init::paper_value_std(2048, 4.0, 128, 1, 0.1, 384, 768, 16);
/// assert!((s - 0.040).abs() < 0.0005);
/// ```
#[allow(
    clippy::too_many_arguments,
    reason = "the formula's own symbols, in its order"
)]
pub fn paper_value_std(
    d_model: usize,
    ffn_ratio: f64,
    m: usize,
    heads: usize,
    score_var: f64,
    dp: usize,
    dv: usize,
    layers: usize,
) -> f64 {
    let num = 0.2 * ffn_ratio * d_model as f64;
    let den = (m * heads) as f64 * (1.0 + score_var) * (dp * dv * layers) as f64;
    (num / den).powf(0.25)
}

/// What [`init_params`] chose, for reporting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitReport {
    /// The norm gain used for `γ_q` and `γ_k`.
    pub gain: f64,
    /// The std of both value tables.
    pub value_std: f64,
    /// The measured variance of the selected per-core scores (paper rule; `NaN` otherwise).
    pub score_var: f64,
}

/// Draws the parameters of a layer from `seed`.
///
/// # Errors
/// Those of [`UltraMemV2Config::check`]; [`Error::InvalidArgument`] for a non-positive
/// `ffn_ratio`, `layers = 0`, `calibration_tokens = 0`, or a calibration whose mean selected
/// score is not positive.
pub fn init_params(
    cfg: &UltraMemV2Config,
    scheme: InitScheme,
    seed: u64,
) -> Result<(UltraMemV2Params<f32, f32>, InitReport)> {
    cfg.check()?;
    let mut rng = SplitMix64::new(seed);
    let (d, dk, h, r) = (cfg.d_model, cfg.dk, cfg.heads, cfg.rank);
    let small = (2.0 / (5.0 * d as f64)).sqrt();
    let (wq_std, wpre_std, wout_std) = match scheme {
        InitScheme::Paper { .. } => (small, small, small),
        InitScheme::ReleasedCode => (
            (1.0 / dk as f64).sqrt(),
            (1.0 / d as f64).sqrt(),
            (1.0 / cfg.dv as f64).sqrt(),
        ),
    };
    let w_q = rng.normals(cfg.query_rows() * d, wq_std);
    let keys = rng.normals(h * 2 * r * cfg.n * dk, (1.0 / dk as f64).sqrt());
    let cores: Vec<f64> = (0..h * cfg.cores * r * r).map(|_| rng.uniform()).collect();
    let (u, v) = tucker_proxy(&cores, h, cfg.cores, r, None)?;
    let w_pre = rng.normals(cfg.dp * d, wpre_std);
    let w_out = rng.normals(d * cfg.dv, wout_std);
    let (gain, value_std, score_var) = match scheme {
        InitScheme::ReleasedCode => ((dk as f64).powf(-0.4), 0.02, f64::NAN),
        InitScheme::Paper {
            ffn_ratio,
            layers,
            calibration_tokens,
        } => {
            let bad = |arg, reason: &str| Error::InvalidArgument {
                op: OP,
                arg,
                reason: reason.into(),
            };
            if !(ffn_ratio.is_finite() && ffn_ratio > 0.0) {
                return Err(bad("ffn_ratio", "must be finite and positive"));
            }
            if layers == 0 {
                return Err(bad("layers", "must be at least 1"));
            }
            if calibration_tokens == 0 {
                return Err(bad("calibration_tokens", "must be at least 1"));
            }
            let (mean, var) = selected_score_moments(
                cfg,
                &w_q,
                &keys,
                &cores,
                &u,
                &v,
                calibration_tokens,
                &mut rng,
            )?;
            if !(mean.is_finite() && mean > 0.0) {
                return Err(bad(
                    "cores",
                    "calibration found a non-positive mean selected score",
                ));
            }
            // Scores scale as g⁴; after scaling the mean to 1 the variance is var / mean².
            let score_var = var / (mean * mean);
            let std = paper_value_std(d, ffn_ratio, cfg.m, h, score_var, cfg.dp, cfg.dv, layers);
            (mean.powf(-0.25), std, score_var)
        }
    };
    let n_rows = cfg.table_rows();
    let f32s = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
    let params = UltraMemV2Params {
        w_q: f32s(w_q),
        gamma_q: vec![gain as f32; dk],
        keys: f32s(keys),
        gamma_k: vec![gain as f32; dk],
        cores: f32s(cores),
        u: f32s(u),
        v: f32s(v),
        w_pre: f32s(w_pre),
        down: f32s(rng.normals(n_rows * cfg.dp, value_std)),
        up: f32s(rng.normals(n_rows * cfg.dv, value_std)),
        w_out: f32s(w_out),
        shuffle: cfg.shuffle.then(|| rng.permutation(cfg.n * cfg.n)),
    };
    Ok((
        params,
        InitReport {
            gain,
            value_std,
            score_var,
        },
    ))
}

/// Mean and variance of the selected per-core scores at unit gains, over `tokens` inputs
/// `x ~ N(0, I)`.
#[allow(
    clippy::too_many_arguments,
    reason = "the layer's scoring parameters, one by one"
)]
fn selected_score_moments(
    cfg: &UltraMemV2Config,
    w_q: &[f64],
    keys: &[f64],
    cores: &[f64],
    u: &[f64],
    v: &[f64],
    tokens: usize,
    rng: &mut SplitMix64,
) -> Result<(f64, f64)> {
    let ones = vec![1.0; cfg.dk];
    let x = rng.normals(tokens * cfg.d_model, 1.0);
    let (_, q, khat) = scoring_inputs(cfg, w_q, &ones, keys, &ones, &x)?;
    let (_, scores) = tucker_topk::forward(&cfg.tucker_dims(tokens), &q, &khat, cores, u, v)?;
    let count = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / count;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / count;
    Ok((mean, var))
}
