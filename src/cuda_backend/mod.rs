//! The CUDA backend: hand-written PTX from `kernels/`, loaded through `cudarc`.
//!
//! Its kernels have not landed yet, so [`CudaDevice`] has no values: every `match` on a device
//! stays exhaustive, and the public API is the same with or without the `cuda` feature.

use crate::device::Backend;
use crate::error::{Error, Result};

/// A CUDA context and stream. No value exists until the backend lands.
#[derive(Debug)]
pub(crate) enum CudaDevice {}

impl CudaDevice {
    pub(crate) fn open(ordinal: usize) -> Result<CudaDevice> {
        let _ = ordinal;
        if cfg!(feature = "cuda") {
            Err(Error::BackendUnavailable {
                backend: Backend::Cuda,
                reason: "the PTX kernels of this crate have not landed yet".into(),
            })
        } else {
            Err(Error::BackendNotCompiled {
                backend: Backend::Cuda,
                feature: "cuda",
            })
        }
    }

    /// Proof that no value exists: lets callers match a device exhaustively.
    pub(crate) fn unreachable(&self) -> ! {
        match *self {}
    }
}

/// Device memory holding a tensor's elements. No value exists until the backend lands.
#[derive(Debug)]
pub(crate) struct CudaStorage<T> {
    pub(crate) device: std::sync::Arc<CudaDevice>,
    _elements: std::marker::PhantomData<T>,
}
