//! `T = 0` is valid for every op and returns empty outputs (and, from the backward, parameter
//! gradients of the parameters' shapes). Each case is its op's valid base with `T` set to 0.

use ultramem::*;

use crate::zeros;

#[test]
fn additive_topk_returns_empty_outputs() {
    let base = crate::additive_topk::valid();
    let q = zeros::<f32>(&[0, 1, 4]);
    let args = AdditiveTopkArgs {
        q: &q,
        ..base.args()
    };
    let out = additive_topk(&args).unwrap();
    assert_eq!(
        (out.idx.shape(), out.score.shape()),
        (&[0, 1, 2][..], &[0, 1, 2][..])
    );
    let g =
        additive_topk_backward(&args, &out.idx, &out.score, BackwardMode::Deterministic).unwrap();
    assert!(g.dq.is_empty() && g.dkeys.to_vec().unwrap().iter().all(|&x| x == 0.0));
}

#[test]
fn tucker_topk_returns_empty_outputs() {
    let base = crate::tucker_topk::valid();
    let q = zeros::<f32>(&[0, 1, 2, 2, 2]);
    let args = TuckerTopkArgs {
        q: &q,
        ..base.args()
    };
    let out = tucker_topk(&args).unwrap();
    assert_eq!(out.score.shape(), &[0, 1, 3, 2]);
    let g = tucker_topk_backward(&args, &out.idx, &out.score, BackwardMode::Deterministic).unwrap();
    assert!(g.dcores.to_vec().unwrap().iter().all(|&x| x == 0.0));
}

#[test]
fn score_fn_returns_an_empty_output() {
    let base = crate::score_fn::valid();
    let score = zeros::<f32>(&[0, 2, 3]);
    let out = score_fn(&ScoreFnArgs {
        score: &score,
        ..base.args()
    })
    .unwrap();
    assert!(out.is_empty());
}

#[test]
fn index_map_returns_an_empty_output() {
    let base = crate::index_map::valid();
    let idx = zeros::<u32>(&[0, 4]);
    let out = index_map(&IndexMapArgs {
        idx: &idx,
        ..base.args()
    })
    .unwrap();
    assert_eq!(out.shape(), &[0, 4]);
}

#[test]
fn weighted_gather_returns_an_empty_output() {
    let base = crate::weighted_gather::valid();
    let (rows, weights) = (zeros::<u32>(&[0, 2]), zeros::<f32>(&[0, 2, 2]));
    let args = WeightedGatherArgs {
        rows: &rows,
        weights: &weights,
        ..base.args()
    };
    assert_eq!(weighted_gather(&args).unwrap().shape(), &[0, 4]);
    let g = weighted_gather_backward(&args, &zeros(&[0, 4]), BackwardMode::Deterministic).unwrap();
    assert_eq!(g.dtable.shape(), &[3, 4]);
}

#[test]
fn peer_ffn_returns_an_empty_output() {
    let base = crate::peer_ffn::valid();
    let (rows, scores, z) = (
        zeros::<u32>(&[0, 2]),
        zeros::<f32>(&[0, 2, 1]),
        zeros::<f32>(&[0, 2]),
    );
    let args = PeerFfnArgs {
        rows: &rows,
        scores: &scores,
        z: &z,
        ..base.args()
    };
    assert_eq!(peer_ffn(&args).unwrap().shape(), &[0, 2]);
    assert_eq!(
        peer_ffn_backward(&args, &zeros(&[0, 2]), BackwardMode::Atomic)
            .unwrap()
            .ddown
            .shape(),
        &[3, 2]
    );
}

#[test]
fn moe_ffn_returns_empty_outputs() {
    let base = crate::moe_ffn::valid();
    let (x, logits) = (zeros::<f32>(&[0, 2]), zeros::<f32>(&[0, 3]));
    let out = moe_ffn(&MoeFfnArgs {
        x: &x,
        routing: MoeRouting::Softmax {
            logits: &logits,
            k: 2,
            gates: GateNorm::Renormalized,
        },
        ..base.args()
    })
    .unwrap();
    assert_eq!(
        (out.out.shape(), out.experts.shape()),
        (&[0, 2][..], &[0, 2][..])
    );
}
