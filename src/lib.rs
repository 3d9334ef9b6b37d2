//! # ultramem
//!
//! Kernels and an exact CPU reference for the sparse memory layer of UltraMemV2 (ICLR 2026) and
//! its ancestors: product-key memory (PKM), PEER, Memory+ and UltraMem. The normative math is
//! Part I of the crate's spec; this page says how to call it and what the crate chose where the
//! spec is silent.
//!
//! ## A tour
//!
//! Tensors live on a [`Device`]; each op takes one argument struct whose `validate()` checks
//! shapes, sizes and devices and returns the op's dimensions ([`dims`]), and one function runs
//! it on the arguments' device. The same call runs on every backend.
//!
//! ```
//! use ultramem::{weighted_gather, weighted_gather_backward, BackwardMode, Device, Tensor,
//!                WeightedGatherArgs};
//!
//! let dev = Device::best(); // CUDA > wgpu > CPU; the CPU reference is always there
//! # let dev = Device::cpu();
//! let table = Tensor::from_vec(&dev, &[4, 2], vec![0.0f32, 1., 2., 3., 4., 5., 6., 7.])?;
//! let rows = Tensor::from_vec(&dev, &[1, 2], vec![3u32, 1])?;
//! let weights = Tensor::from_vec(&dev, &[1, 2, 1], vec![0.5f32, 2.0])?;
//! let args = WeightedGatherArgs { rows: &rows, weights: &weights, table: &table };
//! let dims = args.validate()?;                       // shapes → checked sizes
//! let out = weighted_gather(&args)?;                  // [T, Dv]
//! assert_eq!(out.to_vec()?, vec![0.5 * 6. + 2. * 2., 0.5 * 7. + 2. * 3.]);
//! let dout = Tensor::from_vec(&dev, &[1, 2], vec![1.0f32, 1.0])?;
//! let grads = weighted_gather_backward(&args, &dout, BackwardMode::Deterministic)?;
//! assert_eq!(grads.dweights.to_vec()?, vec![13.0, 5.0]);
//! println!("{} GB moved at least", dims.cost(4, 2.0).bytes() / 1e9);
//! # Ok::<(), ultramem::Error>(())
//! ```
//!
//! The ops ([`ops`]): [`additive_topk`] and [`tucker_topk`] (product-key selection),
//! [`score_fn`] (Raw, Softmax, Relu, Sigmoid), [`index_map`] (virtual slot → row),
//! [`weighted_gather`] (EmbeddingBag-sum with core split), [`peer_ffn`] (per-slot FFN values),
//! [`moe_ffn`] (the MoE baseline, forward only), and the layer's dense parts [`matmul`] and
//! [`rmsnorm`]; each with a `_backward` where the spec has one.
//! The layers: [`layer::UltraMemV2Layer`] (forward and backward on any device),
//! [`layer::product_key`] (PKM and PEER from the same ops),
//! [`layer::UltraMemV2Config`], [`layer::UltraMemV2Params`], [`layer::init`],
//! [`layer::tucker_proxy`], and the all-f64 layers they are checked against,
//! [`reference::ultramem_v2_layer`] and [`reference::product_key_layer`]. Bytes and FLOPs:
//! [`cost`]; measured against an MoE layer: the `memory_vs_moe` example.
//!
//! ## How the crate is arranged
//!
//! Each op has one file, with the same stem, in each layer, and the layers import downwards
//! only (a test, `tests/architecture.rs`, fails on any import cycle):
//!
//! | layer | holds | imports |
//! |---|---|---|
//! | [`dims`] | sizes, argument enums and shape checks (`<Op>Dims::from_shapes`), layer configs | `error`, `dtype`, `cost` |
//! | [`reference`](mod@reference) | the f64 reference of every op and layer | `dims` |
//! | [`gpu`] | the [`gpu::Gpu`] trait and each op's launch sequence over device buffers | `dims`, [`registry`] |
//! | backends | `cuda_backend`, `wgpu_backend`, `interp_backend` (feature `ptx-interp`): implement [`gpu::Gpu`] | `gpu` |
//! | [`Device`], [`Tensor`] | where tensors live; the one `match` from a device to its backend | backends |
//! | [`ops`] | the public ops: `Args`, `validate()`, and each op's reference path and GPU path written once | all of the above |
//! | [`layer`], [`abi`] | the layers and the C ABI, built from the ops and the launch sequences | `ops`, `gpu` |
//!
//! ## Backends
//!
//! | backend | status |
//! |---|---|
//! | `cpu` | the reference: every op, forward and backward, f64 accumulation |
//! | `cuda` (default feature) | hand-written PTX through `cudarc`: every op, forward and backward, both backward modes |
//! | `wgpu` (default feature) | the WGSL twins on any WebGPU adapter; `Atomic` runs `Deterministic` (no float atomics in WGSL) |
//! | `ptx-interp` (feature, for tests) | the CUDA backend's PTX and launch sequences in the repo's PTX interpreter, with its sanitizer: [`Device::ptx_interp`] |
//!
//! On a GPU, [`moe_ffn`] with routing from logits routes on the host (one read-back) and runs
//! the experts on the device. The PTX is tested in CI on the `ptx-interp` device, through the
//! same launch sequences ([`gpu`]) as on CUDA. GPU kernels accumulate in f32; every row index is bounds-checked on
//! the device and reported as [`Error::IndexOutOfRange`], which costs one host synchronisation
//! per call unless [`Device::set_deferred_checks`] queues the checks for
//! [`Device::check_errors`] (then a layer's forward and backward never wait for the device).
//!
//! ## Choices where the spec is silent
//!
//! - **NaN.** Inputs that steer a selection must be finite: queries, cores, `(u, v)` and router
//!   logits; a NaN there is [`Error::NonFinite`]. Keys may be NaN: such a key scores NaN and
//!   ranks below every number (Part I §I.2). Data that only flows through arithmetic (tables,
//!   weights, `z`, `dout`) propagates NaN as every framework does.
//! - **Tucker ties** are broken by the lower virtual index `ν = i·n + j`, not by grid position,
//!   so the result does not depend on the order stage 1 returns its candidates. Stage-1 ties go
//!   to the lower key index. `-0.0` and `+0.0` tie.
//! - **Stage-1 width.** Additive: `K1 = k` by default and `K1 >= k` is required, which makes
//!   the two-stage search exact. Tucker: `K1 = min(m, 128, n)` by default (Part II §8 A5).
//! - **Zero sizes.** Only the token count `T` may be 0 (empty outputs, zero gradients); any
//!   other zero dimension is [`Error::ZeroSized`].
//! - **Softmax** normalises over a head's `k` (or `m`) chosen slots, per core.
//! - **MoE routing** from logits: softmax over all experts, top-k by logit, gates not
//!   renormalised unless asked (OLMoE's choice).
//! - **`(u, v)` sign** on the first refresh: the largest entry of `u` is positive; later
//!   refreshes keep the sign closest to the previous pair.
//! - **Initialisation** calibrates the per-core selected scores to mean 1 (see [`layer::init`]).
//! - **ReLU'(0)** is 0; GELU is the erf form.
//! - **Index limits.** Indices are `u32`: `n <= 65536` so `ν < n²` fits, and tables have at
//!   most `2^32` rows; element offsets are 64-bit, so `N·Dv` may pass `2^32`.

// The C ABI: `extern "C"` entry points over DLPack tensors. Its `unsafe` (reading the caller's
// descriptors and memory) is in `abi/dlpack.rs` and `abi/mod.rs` (each block with the reason it
// is sound); `#[no_mangle]` also counts as unsafe code to the lint.
#[cfg(feature = "abi")]
#[allow(unsafe_code)]
pub mod abi;
mod alloc;
mod backend;
pub mod cost;
#[cfg(feature = "cuda")]
mod cuda_backend;
mod device;
pub mod dims;
mod dtype;
mod error;
pub mod gpu;
#[cfg(feature = "ptx-interp")]
pub mod interp_backend;
pub mod layer;
#[cfg(feature = "model")]
pub mod model;
pub mod ops;
pub mod reference;
pub mod registry;
pub mod rng;
mod tensor;
#[cfg(feature = "wgpu")]
mod wgpu_backend;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use backend::Backend;
pub use device::Device;
pub use dims::additive_topk::AdditiveTopkDims;
pub use dims::index_map::{IndexMapConfig, IndexMapDims};
pub use dims::matmul::{MatmulDims, Transpose};
pub use dims::moe_ffn::{GateNorm, MoeFfnDims};
pub use dims::peer_ffn::{Activation, PeerFfnDims};
pub use dims::rmsnorm::RmsNormDims;
pub use dims::row_sort::RowSortDims;
pub use dims::score_fn::{ScoreFn, ScoreFnDims};
pub use dims::tucker_topk::TuckerTopkDims;
pub use dims::weighted_gather::WeightedGatherDims;
pub use dims::BackwardMode;
pub use dtype::{bf16, f16, DType, Element, Float};
pub use error::{Error, Result};
pub use ops::additive_topk::{
    additive_topk, additive_topk_backward, AdditiveTopkArgs, AdditiveTopkGrads, TopkOutput,
};
pub use ops::index_cast::{narrow_indices, widen_indices};
pub use ops::index_map::{index_map, IndexMapArgs};
pub use ops::matmul::{matmul, MatmulArgs};
pub use ops::moe_ffn::{moe_ffn, MoeFfnArgs, MoeFfnOutput, MoeRouting};
pub use ops::peer_ffn::{peer_ffn, peer_ffn_backward, PeerFfnArgs, PeerFfnGrads};
pub use ops::rmsnorm::{rmsnorm, rmsnorm_backward, RmsNormArgs, RmsNormGrads};
pub use ops::row_sort::{row_sort, RowSortArgs};
pub use ops::score_fn::{score_fn, score_fn_backward, ScoreFnArgs};
pub use ops::tucker_topk::{tucker_topk, tucker_topk_backward, TuckerTopkArgs, TuckerTopkGrads};
pub use ops::weighted_gather::{
    weighted_gather, weighted_gather_backward, WeightedGatherArgs, WeightedGatherGrads,
};

/// Switches for tests and debugging.
pub mod testing {
    /// Fills every GPU output buffer with a NaN before the kernels that must write it run, so an
    /// element a kernel forgot to write fails any comparison. Off by default (it costs one fill
    /// per output); the differential tests turn it on. Without a GPU backend it does nothing.
    pub fn poison_outputs(on: bool) {
        crate::gpu::poison_outputs(on);
    }
}
pub use tensor::{shape_len, Tensor};
