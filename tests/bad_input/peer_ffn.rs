//! `peer_ffn` and its backward.

use proptest::prelude::*;
use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: T = 1, M = 2, Cn = 1, N = 3, Dp = 2, Dv = 2; for the backward, a `dout`
/// `[T, Dv]`.
pub(crate) struct Valid {
    rows: Tensor<u32>,
    scores: Tensor<f32>,
    z: Tensor<f32>,
    down: Tensor<f32>,
    up: Tensor<f32>,
    dout: Tensor<f32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        rows: cpu(&[1, 2], vec![0u32, 1]),
        scores: cpu(&[1, 2, 1], vec![0.5f32, 0.25]),
        z: cpu(&[1, 2], vec![0.1f32, -0.2]),
        down: cpu(&[3, 2], (0..6).map(|x| x as f32 * 0.1).collect()),
        up: cpu(&[3, 2], (0..6).map(|x| x as f32 * -0.1).collect()),
        dout: zeros(&[1, 2]),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> PeerFfnArgs<'_, f32> {
        PeerFfnArgs {
            rows: &self.rows,
            scores: &self.scores,
            z: &self.z,
            down: &self.down,
            up: &self.up,
            activation: Activation::Gelu,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    assert_eq!(peer_ffn(&base.args()).unwrap().shape(), &[1, 2]);
    peer_ffn_backward(&base.args(), &base.dout, BackwardMode::Atomic).unwrap();
}

#[test]
fn rejects_z_of_other_width_than_down_rows() {
    let base = valid();
    let z = zeros::<f32>(&[1, 3]);
    let e = peer_ffn(&PeerFfnArgs {
        z: &z,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "z", .. }), "{e}");
}

#[test]
fn rejects_up_table_with_other_row_count() {
    let base = valid();
    let up = zeros::<f32>(&[4, 2]);
    let e = peer_ffn(&PeerFfnArgs {
        up: &up,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "up", .. }), "{e}");
}

#[test]
fn rejects_index_past_table_end() {
    let base = valid();
    let rows = cpu(&[1, 2], vec![2u32, u32::MAX]);
    let e = peer_ffn(&PeerFfnArgs {
        rows: &rows,
        ..base.args()
    })
    .unwrap_err();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random shapes (zeros included), random rows (out of range included): every call returns
    /// `Ok` or a typed error, and never panics.
    #[test]
    fn never_panics_on_arbitrary_shapes(
        t in 0usize..3, m in 0usize..3, cn in 0usize..3, n in 0usize..4, dv in 0usize..5, dp in 0usize..3,
        m2 in 0usize..3, n2 in 0usize..4, row_seed in any::<u64>()
    ) {
        let rows = cpu(&[t, m], (0..t * m).map(|i| ((row_seed >> (i % 60)) % 5) as u32).collect());
        let s = zeros::<f32>(&[t, m2, cn]);
        let (z, down, up) = (zeros::<f32>(&[t, dp]), zeros::<f16>(&[n, dp]), zeros::<f16>(&[n2, dv]));
        let args = PeerFfnArgs { rows: &rows, scores: &s, z: &z, down: &down, up: &up, activation: Activation::Silu };
        let _ = peer_ffn(&args);
        let _ = peer_ffn_backward(&args, &zeros(&[t, dv]), BackwardMode::Deterministic);
    }
}
