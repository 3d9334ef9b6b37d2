//! The UltraMemV2 layer's config and parameters, its initialisation, and the Tucker proxy.

use ultramem::layer::init::{init_params, InitScheme};
use ultramem::layer::tucker_proxy::tucker_proxy;
use ultramem::layer::{UltraMemV2Config, UltraMemV2Params};
use ultramem::*;

/// A valid layer: D = 8, Dk = 4, n = 4, m = 4, Dp = 2, Dv = 6 (the defaults otherwise: H = 1,
/// R = Cn = 2, a shuffle table), with parameters from the released code's initialisation.
pub(crate) struct Valid {
    pub(crate) cfg: UltraMemV2Config,
    pub(crate) params: UltraMemV2Params<f32, f32>,
}

pub(crate) fn valid() -> Valid {
    let cfg = UltraMemV2Config::new(8, 4, 4, 4, 2, 6);
    let (params, _) = init_params(&cfg, InitScheme::ReleasedCode, 0).unwrap();
    Valid { cfg, params }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    base.cfg.check().unwrap();
    base.params.check(&base.cfg).unwrap();
}

#[test]
fn config_rejects_zero_eps() {
    let base = valid();
    let cfg = UltraMemV2Config {
        eps: 0.0,
        ..base.cfg
    };
    assert!(matches!(
        cfg.check().unwrap_err(),
        Error::InvalidArgument { arg: "eps", .. }
    ));
}

#[test]
fn config_rejects_stage_one_width_past_n() {
    let base = valid();
    let cfg = UltraMemV2Config { k1: 5, ..base.cfg };
    assert!(matches!(
        cfg.check().unwrap_err(),
        Error::TooManySelected { what: "K1", .. }
    ));
}

#[test]
fn config_rejects_value_width_not_divisible_by_cores() {
    let base = valid();
    let cfg = UltraMemV2Config {
        cores: 4, // Dv = 6 does not split into 4 slices
        ..base.cfg
    };
    assert!(matches!(
        cfg.check().unwrap_err(),
        Error::InvalidArgument { .. }
    ));
}

#[test]
fn params_reject_up_table_of_wrong_length() {
    let base = valid();
    let mut up = base.params.up.clone();
    up.pop();
    let params = UltraMemV2Params { up, ..base.params };
    assert!(matches!(
        params.check(&base.cfg).unwrap_err(),
        Error::BufferSize { arg: "up", .. }
    ));
}

#[test]
fn params_reject_missing_shuffle_table_the_config_asks_for() {
    let base = valid();
    let params = UltraMemV2Params {
        shuffle: None,
        ..base.params
    };
    assert!(matches!(
        params.check(&base.cfg).unwrap_err(),
        Error::InvalidArgument { arg: "shuffle", .. }
    ));
}

#[test]
fn init_rejects_negative_ffn_ratio() {
    let base = valid();
    let e = init_params(
        &base.cfg,
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

/// Valid Tucker cores for the proxy: H = 1, Cn = 2, R = 2, summing to a non-zero matrix.
struct ValidProxy {
    cores: Vec<f32>,
    heads: usize,
    n_cores: usize,
    rank: usize,
}

fn valid_proxy() -> ValidProxy {
    ValidProxy {
        cores: vec![1.0, 0.2, 0.1, 0.5, 0.3, 0.0, 0.0, 0.3],
        heads: 1,
        n_cores: 2,
        rank: 2,
    }
}

impl ValidProxy {
    fn run(&self, cores: &[f32]) -> Result<(Vec<f64>, Vec<f64>)> {
        tucker_proxy(cores, self.heads, self.n_cores, self.rank, None)
    }
}

#[test]
fn tucker_proxy_accepts_the_valid_base() {
    let base = valid_proxy();
    base.run(&base.cores).unwrap();
}

#[test]
fn tucker_proxy_rejects_cores_that_sum_to_zero() {
    let base = valid_proxy();
    let e = base
        .run(&[1.0f32, 0., 0., 1., -1., 0., 0., -1.])
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { arg: "cores", .. }),
        "{e}"
    );
}

#[test]
fn tucker_proxy_rejects_non_finite_cores() {
    let base = valid_proxy();
    let mut cores = base.cores.clone();
    cores[1] = f32::NAN;
    let e = base.run(&cores).unwrap_err();
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
fn tucker_proxy_rejects_a_rank_past_the_host_solvers_limit_before_any_work() {
    use ultramem::layer::tucker_proxy::MAX_PROXY_RANK;
    // R = 1024 ran the Jacobi solver for minutes (a hang to the caller); now it is refused at
    // once. The cores need not even be allocated: the rank is checked before their length.
    let start = std::time::Instant::now();
    let e = tucker_proxy::<f32>(&[], 1, 1, 1024, None).unwrap_err();
    assert!(
        matches!(e, Error::Unsupported { op: "tucker_proxy", ref reason, .. } if reason.contains("1024")),
        "{e}"
    );
    assert!(start.elapsed().as_secs() < 1);
    // The limit itself is accepted and returns in bounded time.
    let r = MAX_PROXY_RANK;
    let cores: Vec<f64> = (0..r * r)
        .map(|i| {
            if i % (r + 1) == 0 {
                1.0 + (i / r) as f64
            } else {
                0.0
            }
        })
        .collect();
    let (u, _) = tucker_proxy(&cores, 1, 1, r, None).unwrap();
    assert!(
        (u[r - 1].abs() - 1.0).abs() < 1e-9,
        "the largest diagonal entry's axis"
    );
}

#[test]
fn tucker_proxy_takes_huge_and_tiny_cores() {
    // C̄C̄ᵀ of 1e200 overflowed and of 1e-170 underflowed, both reported as "sum is zero".
    for scale in [1e200f64, 1e-170] {
        let cores = [3.0 * scale, 0.0, 0.0, scale];
        let (u, v) = tucker_proxy(&cores, 1, 1, 2, None).unwrap();
        assert_eq!((u, v), (vec![1.0, 0.0], vec![1.0, 0.0]), "scale {scale}");
        let cores3 = [
            3.0 * scale,
            0.0,
            0.0,
            0.0,
            scale,
            0.0,
            0.0,
            0.0,
            2.0 * scale,
        ];
        let (u, _) = tucker_proxy(&cores3, 1, 1, 3, None).unwrap();
        assert!((u[0] - 1.0).abs() < 1e-12, "scale {scale}: {u:?}");
    }
    let e = tucker_proxy(
        &[f64::MAX, 0.0, 0.0, 1.0, f64::MAX, 0.0, 0.0, 1.0],
        1,
        2,
        2,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}
