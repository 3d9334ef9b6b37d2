//! `moe_ffn`: routing from logits or explicit experts, and projection shapes.

use ultramem::*;

use crate::{cpu, zeros};

/// Valid inputs: T = 1, D = 2, F = 4, E = 3; routed from finite logits with k = 2, or
/// explicitly to experts 0 and 2. (F ≠ D, so a down projection shaped like the gate and up
/// projections is wrong.)
pub(crate) struct Valid {
    x: Tensor<f32>,
    logits: Tensor<f32>,
    experts: Tensor<u32>,
    gates: Tensor<f32>,
    w1: Tensor<f32>,
    w3: Tensor<f32>,
    w2: Tensor<f32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        x: cpu(&[1, 2], vec![0.5f32, -0.5]),
        logits: cpu(&[1, 3], vec![0.0f32, 0.5, 1.0]),
        experts: cpu(&[1, 2], vec![0u32, 2]),
        gates: cpu(&[1, 2], vec![0.5f32, 0.5]),
        w1: cpu(&[3, 4, 2], (0..24).map(|x| x as f32 * 0.01).collect()),
        w3: cpu(&[3, 4, 2], (0..24).map(|x| x as f32 * -0.01).collect()),
        w2: cpu(&[3, 2, 4], (0..24).map(|x| x as f32 * 0.02).collect()),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> MoeFfnArgs<'_, f32> {
        MoeFfnArgs {
            x: &self.x,
            routing: MoeRouting::Softmax {
                logits: &self.logits,
                k: 2,
                gates: GateNorm::Renormalized,
            },
            w1: &self.w1,
            w3: &self.w3,
            w2: &self.w2,
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    let out = moe_ffn(&base.args()).unwrap();
    assert_eq!(out.out.shape(), &[1, 2]);
    moe_ffn(&MoeFfnArgs {
        routing: MoeRouting::Explicit {
            experts: &base.experts,
            gates: &base.gates,
        },
        ..base.args()
    })
    .unwrap();
}

#[test]
fn rejects_k_larger_than_expert_count() {
    let base = valid();
    let e = moe_ffn(&MoeFfnArgs {
        routing: MoeRouting::Softmax {
            logits: &base.logits,
            k: 4,
            gates: GateNorm::Renormalized,
        },
        ..base.args()
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
fn rejects_expert_id_past_expert_count() {
    let base = valid();
    let experts = cpu(&[1, 2], vec![0u32, 3]);
    let e = moe_ffn(&MoeFfnArgs {
        routing: MoeRouting::Explicit {
            experts: &experts,
            gates: &base.gates,
        },
        ..base.args()
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
fn rejects_nan_router_logit() {
    let base = valid();
    let logits = cpu(&[1, 3], vec![0.0f32, f32::NAN, 1.0]);
    let e = moe_ffn(&MoeFfnArgs {
        routing: MoeRouting::Softmax {
            logits: &logits,
            k: 2,
            gates: GateNorm::Renormalized,
        },
        ..base.args()
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
fn rejects_down_projection_of_wrong_shape() {
    let base = valid();
    let w2 = zeros::<f32>(&[3, 4, 2]); // must be [E, D, F] = [3, 2, 4]
    let e = moe_ffn(&MoeFfnArgs {
        w2: &w2,
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "w2", .. }), "{e}");
}
