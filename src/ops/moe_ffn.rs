//! MoE expert FFN with SwiGLU experts and top-k routing: the baseline a memory layer is compared
//! with (Part II §6). Forward only. On a GPU the kernels sort the routed (token, expert) entries
//! by expert and read each expert's weights about once per call, the way the best decode MoE
//! kernels do, so the byte comparison with a memory layer is against a strong MoE.
//!
//! `out[t] = Σ_{(e, g) routed} g · W2[e] (silu(W1[e] x[t]) ⊙ W3[e] x[t])`. Routing is either given
//! (expert ids and gates) or computed from router logits: softmax over all `E` experts, the best
//! `k` by logit (ties to the lower expert), gates = their probabilities, optionally renormalised
//! to sum to 1 (OLMoE does not renormalise; Mixtral does).

use crate::cost::{expected_distinct, Cost, F32_BYTES, U32_BYTES};
use crate::device::DeviceInner;
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::{at_most, expect_shape, host, mul, nonzero, to_f32, DeviceCheck};
use crate::reference;
use crate::tensor::Tensor;

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
        /// Divide the chosen gates by their sum.
        renormalize: bool,
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
    /// [`crate::Error::ShapeMismatch`], [`crate::Error::DeviceMismatch`] and those of
    /// [`MoeFfnDims::check`].
    pub fn validate(&self) -> Result<MoeFfnDims> {
        let xs = self.x.shape();
        expect_shape(OP, "x", xs, &[("T", None), ("D", None)])?;
        let (t, d) = (xs[0], xs[1]);
        let s1 = self.w1.shape();
        expect_shape(OP, "w1", s1, &[("E", None), ("F", None), ("D", Some(d))])?;
        let (e, f) = (s1[0], s1[1]);
        expect_shape(
            OP,
            "w3",
            self.w3.shape(),
            &[("E", Some(e)), ("F", Some(f)), ("D", Some(d))],
        )?;
        expect_shape(
            OP,
            "w2",
            self.w2.shape(),
            &[("E", Some(e)), ("D", Some(d)), ("F", Some(f))],
        )?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("x", self.x)?;
        dev.add("w1", self.w1)?;
        dev.add("w3", self.w3)?;
        dev.add("w2", self.w2)?;
        let k = match self.routing {
            MoeRouting::Explicit { experts, gates } => {
                let es = experts.shape();
                expect_shape(OP, "experts", es, &[("T", Some(t)), ("k", None)])?;
                expect_shape(
                    OP,
                    "gates",
                    gates.shape(),
                    &[("T", Some(t)), ("k", Some(es[1]))],
                )?;
                dev.add("experts", experts)?;
                dev.add("gates", gates)?;
                es[1]
            }
            MoeRouting::Softmax { logits, k, .. } => {
                expect_shape(
                    OP,
                    "logits",
                    logits.shape(),
                    &[("T", Some(t)), ("E", Some(e))],
                )?;
                dev.add("logits", logits)?;
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
    match &device.inner {
        DeviceInner::Cpu => {
            let (experts, gates) = match args.routing {
                MoeRouting::Explicit { experts, gates } => (
                    host(OP, "experts", experts)?.to_vec(),
                    host(OP, "gates", gates)?
                        .iter()
                        .map(|&g| f64::from(g))
                        .collect(),
                ),
                MoeRouting::Softmax {
                    logits,
                    renormalize,
                    ..
                } => reference::moe_ffn::route(&dims, host(OP, "logits", logits)?, renormalize)?,
            };
            let out = reference::moe_ffn::forward(
                &dims,
                host(OP, "x", args.x)?,
                &experts,
                &gates,
                host(OP, "w1", args.w1)?,
                host(OP, "w3", args.w3)?,
                host(OP, "w2", args.w2)?,
            )?;
            let routed = [dims.tokens, dims.k];
            Ok(MoeFfnOutput {
                out: Tensor::from_vec(&device, &[dims.tokens, dims.d_model], to_f32(out))?,
                experts: Tensor::from_vec(&device, &routed, experts)?,
                gates: Tensor::from_vec(&device, &routed, to_f32(gates))?,
            })
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => gpu_forward(d, args, &dims, &device),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => gpu_forward(d, args, &dims, &device),
    }
}

/// The GPU path: explicit routing runs entirely on the device; routing from logits is
/// computed on the host first (one read-back of `[T, E]` logits; the kernels take ids and
/// gates), which keeps the router's top-k and tie-breaking exactly the reference's.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn gpu_forward<G: crate::gpu::TensorGpu, W: Float>(
    gpu: &std::sync::Arc<G>,
    args: &MoeFfnArgs<'_, W>,
    dims: &MoeFfnDims,
    device: &crate::device::Device,
) -> Result<MoeFfnOutput> {
    let routed = [dims.tokens, dims.k];
    let (experts, gates) = match args.routing {
        MoeRouting::Explicit { experts, gates } => (experts.try_clone()?, gates.try_clone()?),
        MoeRouting::Softmax {
            logits,
            renormalize,
            ..
        } => {
            let (e, g) = reference::moe_ffn::route(dims, &logits.to_vec()?, renormalize)?;
            (
                Tensor::from_vec(device, &routed, e)?,
                Tensor::from_vec(device, &routed, to_f32(g))?,
            )
        }
    };
    let out = crate::gpu::moe_ffn::forward_tensors(gpu, args, dims, &experts, &gates)?;
    Ok(MoeFfnOutput {
        out,
        experts,
        gates,
    })
}
