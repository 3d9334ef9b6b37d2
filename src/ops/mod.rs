//! The public ops: one file per op, each with an argument struct whose `validate()` turns tensor
//! shapes into checked dimensions (through the op's `dims`), and functions that run the op on
//! the arguments' device.
//!
//! Each function is written once per kind of path, chosen by the device (`on_device!` in `device.rs`): the
//! CPU reference over the tensors' host slices (`reference/<op>.rs`), and the GPU launch
//! sequence over their device buffers (`gpu/<op>.rs`), generic over every GPU backend.

pub mod additive_topk;
pub mod index_cast;
pub mod index_map;
pub mod matmul;
pub mod moe_ffn;
pub mod peer_ffn;
pub mod rmsnorm;
pub mod row_sort;
pub mod score_fn;
pub mod tucker_topk;
pub mod weighted_gather;

use crate::device::Device;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The device shared by all tensor arguments of one call.
pub(crate) struct DeviceCheck {
    op: &'static str,
    first: Option<Device>,
}

impl DeviceCheck {
    pub(crate) fn new(op: &'static str) -> DeviceCheck {
        DeviceCheck { op, first: None }
    }

    /// Adds one argument; errors if it lives elsewhere than the first.
    pub(crate) fn add<T: Element>(&mut self, arg: &'static str, t: &Tensor<T>) -> Result<()> {
        let d = t.device();
        match &self.first {
            None => {
                self.first = Some(d);
                Ok(())
            }
            Some(first) if first.same_as(&d) => Ok(()),
            Some(first) => Err(Error::DeviceMismatch {
                op: self.op,
                arg,
                expected: first.to_string(),
                got: d.to_string(),
            }),
        }
    }

    /// The shared device (the CPU if no tensor was added).
    pub(crate) fn device(self) -> Device {
        self.first.unwrap_or_else(Device::cpu)
    }
}

/// The host slice of a tensor the CPU path reads.
pub(crate) fn host<'t, T: Element>(
    op: &'static str,
    arg: &'static str,
    t: &'t Tensor<T>,
) -> Result<&'t [T]> {
    t.as_cpu_slice().ok_or_else(|| Error::DeviceMismatch {
        op,
        arg,
        expected: "cpu".into(),
        got: t.device().to_string(),
    })
}

/// Rounds reference results (f64) to the f32 outputs of the public API.
///
/// # Errors
/// [`Error::OutOfMemory`] when the f32 copy cannot be allocated.
pub(crate) fn to_f32(op: &'static str, v: Vec<f64>) -> Result<Vec<f32>> {
    crate::alloc::collect(op, v.into_iter().map(|x| x as f32))
}
