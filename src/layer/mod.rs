//! The UltraMemV2 layer: its configuration and parameters, [`UltraMemV2Layer`] (forward and
//! backward on any device), and the host helpers around it: the `(u, v)` proxy refresh
//! ([`tucker_proxy`]) and the initialisation rules ([`init`]).
//!
//! The all-f64 forward and backward the layer is checked against are in
//! [`crate::reference::ultramem_v2_layer`].

pub mod init;
pub mod product_key;
pub mod tucker_proxy;
pub mod ultramem_v2_layer;

pub use crate::dims::ultramem_v2_layer::{QueryMode, UltraMemV2Config, UltraMemV2Params};
pub use ultramem_v2_layer::{HostGrads, LayerCache, LayerForward, LayerGrads, UltraMemV2Layer};

use crate::dims::expect_shape;
use crate::error::Result;
use crate::ops::DeviceCheck;
use crate::tensor::Tensor;

/// Checks a layer activation `[T, D]` (`T` fixed when given) and that it lives on the device of
/// the layer's `params`; returns `T`.
pub(crate) fn check_activation(
    op: &'static str,
    arg: &'static str,
    t: &Tensor<f32>,
    d_model: usize,
    tokens: Option<usize>,
    params: &Tensor<f32>,
) -> Result<usize> {
    expect_shape(op, arg, t.shape(), &[("T", tokens), ("D", Some(d_model))])?;
    let mut dev = DeviceCheck::new(op);
    dev.add("the layer's parameters", params)?;
    dev.add(arg, t)?;
    Ok(t.shape()[0])
}
