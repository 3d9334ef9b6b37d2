//! Every bad input of Part I §I.4 returns a typed error, never a panic or a wrong answer; `T = 0`
//! is valid and returns empty outputs.
//!
//! One module per op, and one each for the tensor constructors, the devices, the layer, the
//! reference functions and `T = 0`. An op's module builds one valid base, checks first that the
//! base is accepted, and then has one test per case, named for what it rejects, that changes
//! only what the case is about (struct-update syntax from the base's arguments).

mod additive_topk;
mod devices;
mod index_map;
mod layer;
mod matmul;
mod moe_ffn;
mod peer_ffn;
mod reference;
mod rmsnorm;
mod score_fn;
mod tensor;
mod tucker_topk;
mod weighted_gather;
mod zero_tokens;

use ultramem::{Device, Element, Tensor};

/// A CPU tensor of `shape` holding `data`.
fn cpu<T: Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::from_vec(&Device::cpu(), shape, data).expect("test tensors are well formed")
}

/// A CPU tensor of `shape` filled with zeros.
fn zeros<T: Element>(shape: &[usize]) -> Tensor<T> {
    Tensor::zeros(&Device::cpu(), shape).expect("test tensors are well formed")
}
