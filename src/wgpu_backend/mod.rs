//! The WebGPU backend: WGSL from `shaders/`, run through `wgpu`.
//!
//! Its kernels have not landed yet, so [`WgpuDevice`] has no values: every `match` on a device
//! stays exhaustive, and the public API is the same with or without the `wgpu` feature.

use crate::device::Backend;
use crate::error::{Error, Result};

/// A wgpu device and queue. No value exists until the backend lands.
#[derive(Debug)]
pub(crate) enum WgpuDevice {}

impl WgpuDevice {
    pub(crate) fn open() -> Result<WgpuDevice> {
        if cfg!(feature = "wgpu") {
            Err(Error::BackendUnavailable {
                backend: Backend::Wgpu,
                reason: "the WGSL shaders of this crate have not landed yet".into(),
            })
        } else {
            Err(Error::BackendNotCompiled {
                backend: Backend::Wgpu,
                feature: "wgpu",
            })
        }
    }

    /// Proof that no value exists: lets callers match a device exhaustively.
    pub(crate) fn unreachable(&self) -> ! {
        match *self {}
    }
}

/// A storage buffer holding a tensor's elements. No value exists until the backend lands.
#[derive(Debug)]
pub(crate) struct WgpuStorage<T> {
    pub(crate) device: std::sync::Arc<WgpuDevice>,
    _elements: std::marker::PhantomData<T>,
}
