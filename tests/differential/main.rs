//! Every kernel on every device against the CPU reference, on random inputs drawn by proptest.
//! Each test is written once against a `&Device` and stamped out per device
//! (`common::device_tests!`, `common::device_proptests!`): `<op>::<what>::on_wgpu`,
//! `::devices` (the CUDA backend's PTX in the repo's interpreter, always there) and
//! `::on_cuda`. One binary; wgpu and CUDA are opened once. A backend that is not there is
//! skipped with a line on stderr, or fails the run when `ULTRAMEM_REQUIRE_WGPU=1` /
//! `ULTRAMEM_REQUIRE_CUDA=1`.

#[cfg(feature = "abi")]
mod abi_device;
mod common;
mod deferred;
mod index_cast;
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
mod score_fn;
mod weighted_gather;

use ultramem::registry::KernelId;

/// Adding a kernel file does not compile until this match names its differential tests, and
/// each named test module exists (`<module>::devices` is a function of it).
#[test]
fn every_kernel_has_differential_tests() {
    for &id in KernelId::ALL {
        let tests: &[fn() -> &'static [&'static str]] = match id {
            KernelId::WeightedGather => &[
                weighted_gather::matches_reference::devices,
                weighted_gather::rejects_index_past_table_end::devices,
            ],
            KernelId::PeerFfn => &[
                peer_ffn::matches_reference::devices,
                peer_ffn::rejects_index_past_table_end::devices,
            ],
            KernelId::ProductKeyTopk => &[
                product_key_topk::additive_matches_reference::devices,
                product_key_topk::tucker_matches_reference::devices,
                product_key_topk::tucker_matches_reference_at_paper_shapes::devices,
                product_key_topk::rejects_bad_inputs::devices,
            ],
            KernelId::ScoreFn => &[score_fn::matches_reference::devices],
            KernelId::IndexCast => &[index_cast::matches_reference::devices],
            KernelId::IndexMap => &[
                index_map::matches_reference::devices,
                index_map::rejects_index_past_shuffle_table::devices,
            ],
            KernelId::Matmul => &[
                matmul::matches_reference::devices,
                matmul::layer_products_match_reference::devices,
            ],
            KernelId::Rmsnorm => &[rmsnorm::matches_reference::devices],
            KernelId::MoeFfn => &[
                moe_ffn::matches_reference::devices,
                moe_ffn::matches_reference_at_scaled_olmoe::devices,
                moe_ffn::rejects_expert_past_expert_count::devices,
            ],
            KernelId::RowSort => &[row_sort::matches_reference::devices],
        };
        assert!(!tests.is_empty(), "{}", id.stem());
        for devices in tests {
            assert!(devices().contains(&"in_ptx_interpreter"), "{}", id.stem());
        }
    }
}

/// A buffer past what one binding may hold is `Error::Unsupported` on wgpu, as the README says
/// (it was wgpu's validation error, `Error::Backend`). lavapipe allows 128 MiB per binding.
#[test]
fn a_buffer_past_the_binding_limit_is_unsupported_on_wgpu() {
    let Some(dev) = common::wgpu() else {
        return;
    };
    match ultramem::Tensor::<f32>::zeros(dev, &[1 << 32]) {
        Err(ultramem::Error::Unsupported { reason, .. }) => {
            assert!(reason.contains("binding"), "{reason}")
        }
        other => panic!("expected Unsupported, got {:?}", other.map(|t| t.len())),
    }
}
