//! The parameter structs the kernels take: by value in PTX (`.param .align 4 .b8 params[N]`),
//! as a uniform buffer in WGSL (`struct Params`). Field order and sizes are the contract with
//! `kernels/*.ptx` and `shaders/*.wgsl`; a test checks the sizes against the registry.

use bytemuck::{Pod, Zeroable};

/// Parameters of the value-path kernels (`weighted_gather`, `peer_ffn`): 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ValueParams {
    pub tokens: u32,
    pub slots: u32,
    pub cores: u32,
    /// Table rows `N`: every row index is checked against it.
    pub table_rows: u32,
    /// Row width of the table and of `g` read by a weighted-gather kernel.
    pub width: u32,
    /// `width / cores` (weighted gather), `dv / cores` (PEER).
    pub slice_width: u32,
    /// `ceil(width / 128)`: column chunks of the forward gather.
    pub chunks: u32,
    /// Workgroups in x of the flattened launch grid.
    pub grid_x: u32,
    /// `tokens · slots`.
    pub entries: u32,
    /// PEER's φ: 0 identity, 1 relu, 2 gelu, 3 silu.
    pub activation: u32,
    /// Bit 0: Atomic backward (PTX only).
    pub flags: u32,
    pub dp: u32,
    pub dv: u32,
    /// 0 f32, 1 f16, 2 bf16 (PTX reads it; WGSL uses the `TABLE_DTYPE` override).
    pub table_dtype: u32,
    /// Forward gather: slot groups per token (partial sums when > 1).
    pub groups: u32,
    /// Forward gather: table columns per lane, 1 or one 16-byte load's worth.
    pub vec: u32,
}

/// Parameters of the row sort: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct SortParams {
    pub entries: u32,
    /// Table rows `N`: the sentinel key of a bad row.
    pub table_rows: u32,
    /// The digit's bit offset in this pass.
    pub shift: u32,
    /// `ceil(entries / 256)`.
    pub tiles: u32,
    pub grid_x: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// Parameters of the product-key top-k kernels: 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct TopkParams {
    pub tokens: u32,
    pub heads: u32,
    /// Sub-keys per side `n`.
    pub n: u32,
    /// Length of one query–key dot product: `Dk/2` (additive) or `Dk` (Tucker).
    pub dim: u32,
    /// Tucker rank `R` (1 for additive).
    pub rank: u32,
    /// Cores `Cn` (1 for additive).
    pub cores: u32,
    pub k1: u32,
    /// Results per token and head (`k` or `m`).
    pub m: u32,
    /// 1: additive scores (a sum of the two sides); 0: the Tucker grid.
    pub additive: u32,
    pub grid_x: u32,
    /// Workgroups with work in this launch.
    pub groups: u32,
    /// 0 f32, 1 f16, 2 bf16 (PTX; WGSL uses the `TABLE_DTYPE` override).
    pub table_dtype: u32,
    /// `backward_cores`: where the per-slot contributions start.
    pub offset: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// Parameters of the score-function kernels: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ScoreParams {
    /// `T·H·Cn` groups of `k` values.
    pub groups: u32,
    pub k: u32,
    pub cores: u32,
    /// 0 raw, 1 softmax, 2 relu, 3 sigmoid.
    pub func: u32,
    pub grid_x: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// Parameters of the index casts: 32 bytes (a size `CudaDevice::launch` passes). The narrowing
/// bound (at most `2^32`) in two words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct CastParams {
    pub len: u32,
    pub grid_x: u32,
    pub bound_lo: u32,
    pub bound_hi: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
    pub pad3: u32,
}

/// Parameters of the index-map kernel: 32 bytes. `2^32` is passed as 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct MapParams {
    pub len: u32,
    /// 1: read `ρ` through the shuffle table; 0: no table.
    pub has_shuffle: u32,
    pub rows_per_layer: u32,
    pub offset: u32,
    pub total_rows: u32,
    pub grid_x: u32,
    /// `ν` must be below this (the shuffle's length, or `2^31` for `int32` input), 0: no bound.
    pub idx_bound: u32,
    /// Shuffle entries must be below this (`2^31` for an `int32` table), 0: no bound.
    pub entry_bound: u32,
}

/// Parameters of the matmul kernel: 48 bytes. `A(m, k) = a[m·a_rs + k·a_cs]`,
/// `B(k, n) = b[k·b_rs + n·b_cs]`, `C(m, n) = c[m·ldc + n]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub ldc: u32,
    /// 1: add the product to what C holds.
    pub accumulate: u32,
    /// Output tiles per row of tiles, `ceil(N / 16)`.
    pub tiles_n: u32,
    /// All output tiles.
    pub tiles: u32,
    pub grid_x: u32,
}

/// Parameters of the RMSNorm kernels: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct RmsParams {
    pub chunks: u32,
    pub dim: u32,
    pub repeat: u32,
    pub eps: f32,
    pub grid_x: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// Parameters of the MoE kernels: 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct MoeParams {
    /// `T·k` routed entries.
    pub entries: u32,
    pub k: u32,
    pub d_model: u32,
    pub ffn: u32,
    /// `E`: every expert id is checked against it.
    pub experts: u32,
    /// Row chunks of 16 per run (`ceil(F/16)` up, `ceil(D/16)` down).
    pub chunks: u32,
    pub table_dtype: u32,
    pub grid_x: u32,
    pub tokens: u32,
    pub pad0: u32,
    pub pad1: u32,
    pub pad2: u32,
}

/// The parameter-block sizes `CudaDevice::launch` passes by value (each a `ParamBlock<N>`).
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "documents the CUDA launcher's sizes")
)]
pub(crate) const PARAM_BLOCK_SIZES: [usize; 4] = [16, 32, 48, 64];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::KernelId;

    #[test]
    fn parameter_structs_match_every_kernel_entry() {
        for &id in KernelId::ALL {
            let want = match id {
                KernelId::WeightedGather | KernelId::PeerFfn => std::mem::size_of::<ValueParams>(),
                KernelId::RowSort => std::mem::size_of::<SortParams>(),
                KernelId::ProductKeyTopk => std::mem::size_of::<TopkParams>(),
                KernelId::ScoreFn => std::mem::size_of::<ScoreParams>(),
                KernelId::IndexMap => std::mem::size_of::<MapParams>(),
                KernelId::IndexCast => std::mem::size_of::<CastParams>(),
                KernelId::Matmul => std::mem::size_of::<MatmulParams>(),
                KernelId::Rmsnorm => std::mem::size_of::<RmsParams>(),
                KernelId::MoeFfn => std::mem::size_of::<MoeParams>(),
            };
            for &(entry, bytes, _) in id.entries() {
                assert_eq!(
                    bytes, want,
                    "{entry}: PTX params[{bytes}] vs the Rust struct's {want} bytes"
                );
                // The CUDA launcher passes parameter blocks of these sizes only: the matmul's
                // params[48] ran in the interpreter and on wgpu but failed on a GPU.
                assert!(
                    PARAM_BLOCK_SIZES.contains(&bytes),
                    "{entry}: params[{bytes}]; CudaDevice::launch takes {PARAM_BLOCK_SIZES:?}"
                );
                assert!(
                    id.wgsl_bindings(entry).contains(&0),
                    "{entry}: WGSL binds its Params at 0"
                );
            }
        }
        // WGSL uniform structs are padded to 16 bytes.
        assert_eq!(std::mem::size_of::<ValueParams>() % 16, 0);
        assert_eq!(std::mem::size_of::<SortParams>() % 16, 0);
        assert_eq!(std::mem::size_of::<TopkParams>() % 16, 0);
        assert_eq!(std::mem::size_of::<MatmulParams>() % 16, 0);
        assert_eq!(std::mem::size_of::<RmsParams>() % 16, 0);
        assert_eq!(std::mem::size_of::<MoeParams>() % 16, 0);
    }
}
