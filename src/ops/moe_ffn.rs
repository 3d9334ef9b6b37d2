//! MoE expert FFN with SwiGLU experts and top-k routing: the baseline a memory layer is compared
//! with (Part II §6). Forward only. On a GPU the kernels sort the routed (token, expert) entries
//! by expert and read each expert's weights about once per call, the way the best decode MoE
//! kernels do, so the byte comparison with a memory layer is against a strong MoE.
//!
//! `out[t] = Σ_{(e, g) routed} g · W2[e] (silu(W1[e] x[t]) ⊙ W3[e] x[t])`. Routing is either given
//! (expert ids and gates) or computed from router logits: softmax over all `E` experts, the best
//! `k` by logit (ties to the lower expert), gates = their probabilities, optionally renormalised
//! to sum to 1 (OLMoE does not renormalise; Mixtral does).

use crate::device::on_device;
use crate::dims::moe_ffn::{GateNorm, MoeFfnDims, MoeRoutingShape};
use crate::dtype::Float;
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::moe_ffn::{self as gpu, MoeBuffers};
use crate::ops::{host, to_f32, DeviceCheck};
use crate::reference::moe_ffn as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "moe_ffn";

/// How tokens are routed to experts.
#[derive(Clone, Copy, Debug)]
pub enum MoeRouting<'a> {
    /// Expert ids `[T, k]` (each `< E`) and their gates `[T, k]`.
    Explicit {
        /// Expert ids.
        experts: &'a Tensor<u32>,
        /// Gates.
        gates: &'a Tensor<f32>,
    },
    /// Router logits `[T, E]` (must be finite): softmax, then the best `k`.
    Softmax {
        /// Router logits.
        logits: &'a Tensor<f32>,
        /// Experts per token.
        k: usize,
        /// The gates: softmax probabilities, or renormalised over the chosen `k`.
        gates: GateNorm,
    },
}

/// Arguments of [`moe_ffn`].
#[derive(Clone, Copy, Debug)]
pub struct MoeFfnArgs<'a, W: Float> {
    /// Tokens `x[T, D]`.
    pub x: &'a Tensor<f32>,
    /// Routing.
    pub routing: MoeRouting<'a>,
    /// Gate projections `W1[E, F, D]`.
    pub w1: &'a Tensor<W>,
    /// Up projections `W3[E, F, D]`.
    pub w3: &'a Tensor<W>,
    /// Down projections `W2[E, D, F]`.
    pub w2: &'a Tensor<W>,
}

impl<W: Float> MoeFfnArgs<'_, W> {
    /// Checks shapes, sizes and devices.
    ///
    /// # Errors
    /// Those of [`MoeFfnDims::from_shapes`], [`crate::Error::DeviceMismatch`].
    pub fn validate(&self) -> Result<MoeFfnDims> {
        let routing = match self.routing {
            MoeRouting::Explicit { experts, gates } => MoeRoutingShape::Explicit {
                experts: experts.shape(),
                gates: gates.shape(),
            },
            MoeRouting::Softmax { logits, k, .. } => MoeRoutingShape::Softmax {
                logits: logits.shape(),
                k,
            },
        };
        let dims = MoeFfnDims::from_shapes(
            self.x.shape(),
            [self.w1.shape(), self.w3.shape(), self.w2.shape()],
            routing,
        )?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("x", self.x)?;
        dev.add("w1", self.w1)?;
        dev.add("w3", self.w3)?;
        dev.add("w2", self.w2)?;
        match self.routing {
            MoeRouting::Explicit { experts, gates } => {
                dev.add("experts", experts)?;
                dev.add("gates", gates)?;
            }
            MoeRouting::Softmax { logits, .. } => dev.add("logits", logits)?,
        }
        Ok(dims)
    }
}

/// The output of [`moe_ffn`] with the routing it used.
#[derive(Debug)]
pub struct MoeFfnOutput {
    /// `[T, D]`.
    pub out: Tensor<f32>,
    /// `[T, k]`: the experts, best first when routed from logits.
    pub experts: Tensor<u32>,
    /// `[T, k]`: their gates.
    pub gates: Tensor<f32>,
}

/// MoE expert FFN forward.
///
/// # Errors
/// Those of [`MoeFfnArgs::validate`], [`crate::Error::IndexOutOfRange`] for an expert `>= E`,
/// [`crate::Error::NonFinite`] for a NaN or infinite router logit.
pub fn moe_ffn<W: Float>(args: &MoeFfnArgs<'_, W>) -> Result<MoeFfnOutput> {
    let dims = args.validate()?;
    let device = args.x.device();
    let routed = [dims.tokens, dims.k];
    on_device!(device,
    cpu => {
        let (experts, gates) = match args.routing {
            MoeRouting::Explicit { experts, gates } => (
                host(OP, "experts", experts)?.to_vec(),
                host(OP, "gates", gates)?
                    .iter()
                    .map(|&g| f64::from(g))
                    .collect(),
            ),
            MoeRouting::Softmax { logits, gates, .. } => reference::route(&dims, host(OP, "logits", logits)?, gates)?,
        };
        let out = reference::forward(
            &dims,
            host(OP, "x", args.x)?,
            &experts,
            &gates,
            host(OP, "w1", args.w1)?,
            host(OP, "w3", args.w3)?,
            host(OP, "w2", args.w2)?,
        )?;
        Ok(MoeFfnOutput {
            out: Tensor::from_vec(&device, &[dims.tokens, dims.d_model], to_f32(OP, out)?)?,
            experts: Tensor::from_vec(&device, &routed, experts)?,
            gates: Tensor::from_vec(&device, &routed, to_f32(OP, gates)?)?,
        })
    },
    gpu(g) => {
        // Explicit routing runs entirely on the device; routing from logits is computed on
        // the host first (one read-back of `[T, E]` logits; the kernels take ids and gates),
        // which keeps the router's top-k and tie-breaking exactly the reference's.
        let (experts, gates) = match args.routing {
            MoeRouting::Explicit { experts, gates } => (experts.try_clone()?, gates.try_clone()?),
            MoeRouting::Softmax { logits, gates, .. } => {
                let (e, w) = reference::route(&dims, &logits.to_vec()?, gates)?;
                (
                    Tensor::from_vec(&device, &routed, e)?,
                    Tensor::from_vec(&device, &routed, to_f32(OP, w)?)?,
                )
            }
        };
        let b = MoeBuffers {
            x: g.buffer(OP, "x", args.x)?,
            experts: g.buffer(OP, "experts", &experts)?,
            gates: g.buffer(OP, "gates", &gates)?,
            w1: g.buffer(OP, "w1", args.w1)?,
            w3: g.buffer(OP, "w3", args.w3)?,
            w2: g.buffer(OP, "w2", args.w2)?,
        };
        let out = gpu::forward(g.as_ref(), &dims, W::DTYPE, &b)?;
        Ok(MoeFfnOutput {
            out: g.wrap(&[dims.tokens, dims.d_model], out)?,
            experts,
            gates,
        })
    })
}
