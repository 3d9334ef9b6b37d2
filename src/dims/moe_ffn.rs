//! MoE expert FFN with SwiGLU experts and top-k routing: the baseline a memory layer is compared
//! with (Part II §6). Forward only. On a GPU the kernels sort the routed (token, expert) entries
//! by expert and read each expert's weights about once per call, the way the best decode MoE
//! kernels do, so the byte comparison with a memory layer is against a strong MoE.
//!
//! `out[t] = Σ_{(e, g) routed} g · W2[e] (silu(W1[e] x[t]) ⊙ W3[e] x[t])`. Routing is either given
//! (expert ids and gates) or computed from router logits: softmax over all `E` experts, the best
//! `k` by logit (ties to the lower expert), gates = their probabilities, optionally renormalised
//! to sum to 1 (OLMoE does not renormalise; Mixtral does).

use super::{at_most, expect_shape, mul, nonzero};
use crate::cost::{expected_distinct, Cost, F32_BYTES, U32_BYTES};
use crate::error::Result;

const OP: &str = "moe_ffn";

/// The gates of routing from logits: the chosen experts' softmax probabilities over all `E`
/// experts (OLMoE), or those divided by their sum so each token's gates add to 1 (Mixtral).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GateNorm {
    /// The softmax probabilities as they are.
    #[default]
    Softmax,
    /// Divided by their sum over the chosen `k`.
    Renormalized,
}

/// The shapes of the routing arguments (see [`crate::MoeRouting`]).
#[derive(Clone, Copy, Debug)]
pub enum MoeRoutingShape<'a> {
    /// Expert ids `[T, k]` and gates `[T, k]`.
    Explicit {
        /// The shape of the expert ids.
        experts: &'a [usize],
        /// The shape of the gates.
        gates: &'a [usize],
    },
    /// Router logits `[T, E]` and the experts per token `k`.
    Softmax {
        /// The shape of the logits.
        logits: &'a [usize],
        /// Experts per token.
        k: usize,
    },
}

/// The checked sizes of one MoE call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoeFfnDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Model width `D`.
    pub d_model: usize,
    /// Expert inner width `F`.
    pub ffn: usize,
    /// Experts `E`.
    pub experts: usize,
    /// Experts per token `k <= E`.
    pub k: usize,
}

impl MoeFfnDims {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::TooManySelected`] (`k > E`),
    /// [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "x", "D", self.d_model)?;
        nonzero(OP, "w1", "F", self.ffn)?;
        nonzero(OP, "w1", "E", self.experts)?;
        nonzero(OP, "k", "k", self.k)?;
        at_most(OP, "k", self.k, self.experts)?;
        mul(OP, "T*D", self.tokens, self.d_model)?;
        mul(OP, "T*E", self.tokens, self.experts)?;
        mul(
            OP,
            "E*F*D",
            mul(OP, "E*F", self.experts, self.ffn)?,
            self.d_model,
        )?;
        Ok(())
    }

    /// Expected distinct experts touched under uniform routing.
    pub fn expected_distinct_experts(&self) -> f64 {
        expected_distinct(self.experts as f64, self.k as f64, self.tokens as f64)
    }

    /// Bytes and FLOPs at least: `x`, routing and the three matrices of each of
    /// `distinct_experts` experts read once, the output written once; `6·D·F` FLOPs per routed
    /// (token, expert).
    pub fn cost(&self, weight_bytes: usize, distinct_experts: f64) -> Cost {
        let tk = (self.tokens * self.k) as f64;
        let expert = (3 * self.d_model * self.ffn * weight_bytes) as f64;
        Cost {
            bytes_read: (self.tokens * self.d_model * F32_BYTES) as f64
                + tk * (U32_BYTES + F32_BYTES) as f64
                + distinct_experts * expert,
            bytes_written: (self.tokens * self.d_model * F32_BYTES) as f64,
            flops: tk * 6.0 * (self.d_model * self.ffn) as f64,
        }
    }

    /// The sizes named by the shapes of `x[T, D]`, `w1[E, F, D]`, `w3[E, F, D]`, `w2[E, D, F]`
    /// and the routing, checked; what [`crate::MoeFfnArgs::validate`] uses.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`MoeFfnDims::check`].
    pub fn from_shapes(
        x: &[usize],
        [w1, w3, w2]: [&[usize]; 3],
        routing: MoeRoutingShape<'_>,
    ) -> Result<MoeFfnDims> {
        expect_shape(OP, "x", x, &[("T", None), ("D", None)])?;
        let (t, d) = (x[0], x[1]);
        expect_shape(OP, "w1", w1, &[("E", None), ("F", None), ("D", Some(d))])?;
        let (e, f) = (w1[0], w1[1]);
        expect_shape(
            OP,
            "w3",
            w3,
            &[("E", Some(e)), ("F", Some(f)), ("D", Some(d))],
        )?;
        expect_shape(
            OP,
            "w2",
            w2,
            &[("E", Some(e)), ("D", Some(d)), ("F", Some(f))],
        )?;
        let k = match routing {
            MoeRoutingShape::Explicit { experts, gates } => {
                expect_shape(OP, "experts", experts, &[("T", Some(t)), ("k", None)])?;
                expect_shape(
                    OP,
                    "gates",
                    gates,
                    &[("T", Some(t)), ("k", Some(experts[1]))],
                )?;
                experts[1]
            }
            MoeRoutingShape::Softmax { logits, k } => {
                expect_shape(OP, "logits", logits, &[("T", Some(t)), ("E", Some(e))])?;
                k
            }
        };
        let dims = MoeFfnDims {
            tokens: t,
            d_model: d,
            ffn: f,
            experts: e,
            k,
        };
        dims.check()?;
        Ok(dims)
    }
}
