//! Every kernel on every GPU backend against the CPU reference, on random inputs drawn by
//! proptest. One binary; each backend is opened once. A backend that is not there is skipped with
//! a line on stderr, or fails the run when `ULTRAMEM_REQUIRE_WGPU=1` / `ULTRAMEM_REQUIRE_CUDA=1`.

#[cfg(feature = "abi")]
mod abi_device;
mod common;
mod deferred;
mod index_map;
mod interp;
mod layer;
mod matmul;
mod moe_ffn;
mod peer_ffn;
mod product_key_topk;
mod ptx;
mod rmsnorm;
mod row_sort;
mod runner;
mod score_fn;
mod weighted_gather;

use ultramem::registry::KernelId;

/// Adding a kernel file does not compile until this match names its differential tests.
#[test]
fn every_kernel_has_differential_tests() {
    for &id in KernelId::ALL {
        let tests: &[&str] = match id {
            KernelId::WeightedGather => &[
                "weighted_gather::weighted_gather_matches_reference_on_wgpu",
                "weighted_gather::weighted_gather_matches_reference_on_cuda",
            ],
            KernelId::PeerFfn => &[
                "peer_ffn::peer_ffn_matches_reference_on_wgpu",
                "peer_ffn::peer_ffn_matches_reference_on_cuda",
            ],
            KernelId::ProductKeyTopk => &[
                "product_key_topk::additive_topk_matches_reference_on_wgpu",
                "product_key_topk::tucker_topk_matches_reference_on_wgpu",
                "product_key_topk::additive_topk_matches_reference_on_cuda",
                "product_key_topk::tucker_topk_matches_reference_on_cuda",
                "product_key_topk::additive_topk_matches_reference_in_ptx_interpreter",
                "product_key_topk::tucker_topk_matches_reference_in_ptx_interpreter",
                "product_key_topk::tucker_topk_matches_reference_at_paper_shapes_on_wgpu",
            ],
            KernelId::ScoreFn => &[
                "score_fn::score_fn_matches_reference_on_wgpu",
                "score_fn::score_fn_matches_reference_on_cuda",
                "score_fn::score_fn_matches_reference_in_ptx_interpreter",
            ],
            KernelId::IndexMap => &[
                "index_map::index_map_matches_reference_on_wgpu",
                "index_map::index_map_matches_reference_on_cuda",
                "index_map::index_map_matches_reference_in_ptx_interpreter",
            ],
            KernelId::Matmul => &[
                "matmul::matmul_matches_reference_on_wgpu",
                "matmul::matmul_matches_reference_on_cuda",
                "matmul::matmul_matches_reference_in_ptx_interpreter",
                "matmul::matmul_layer_products_match_reference_on_every_device",
            ],
            KernelId::Rmsnorm => &[
                "rmsnorm::rmsnorm_matches_reference_on_wgpu",
                "rmsnorm::rmsnorm_matches_reference_on_cuda",
                "rmsnorm::rmsnorm_matches_reference_in_ptx_interpreter",
            ],
            KernelId::MoeFfn => &[
                "moe_ffn::moe_ffn_matches_reference_on_wgpu",
                "moe_ffn::moe_ffn_matches_reference_on_cuda",
                "moe_ffn::moe_ffn_matches_reference_in_ptx_interpreter",
                "moe_ffn::moe_ffn_matches_reference_at_scaled_olmoe_on_every_device",
            ],
            KernelId::RowSort => &[
                "row_sort::row_sort_matches_reference_on_wgpu",
                "row_sort::row_sort_matches_reference_on_cuda",
            ],
        };
        assert!(!tests.is_empty(), "{}", id.stem());
    }
}
