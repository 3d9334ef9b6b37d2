//! Devices: where tensors live and ops run.
//!
//! [`Device::cpu`] is always there and runs the reference. [`Device::cuda`] and [`Device::wgpu`]
//! exist whatever features are on, so code written against this API compiles unchanged; without
//! their cargo feature they return [`Error::BackendNotCompiled`], and with it they return
//! [`Error::BackendUnavailable`] when the machine has no driver or adapter.

use std::fmt;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
use std::sync::Arc;

#[cfg(feature = "cuda")]
use crate::cuda_backend;
#[allow(
    unused_imports,
    reason = "Error is used only when a backend is compiled out"
)]
use crate::error::{Error, Result};
#[cfg(feature = "wgpu")]
use crate::wgpu_backend;

/// The kind of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The CPU reference (f64 accumulation).
    Cpu,
    /// NVIDIA GPUs through hand-written PTX and `cudarc`.
    Cuda,
    /// Any WebGPU adapter (Vulkan, Metal, DX12, GL) through WGSL and `wgpu`.
    Wgpu,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Wgpu => "wgpu",
        })
    }
}

/// A device. Cheap to clone (the GPU handles are shared).
#[derive(Clone, Debug)]
pub struct Device {
    pub(crate) inner: DeviceInner,
}

#[derive(Clone, Debug)]
pub(crate) enum DeviceInner {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(Arc<cuda_backend::CudaDevice>),
    #[cfg(feature = "wgpu")]
    Wgpu(Arc<wgpu_backend::WgpuDevice>),
}

impl Device {
    /// The CPU reference device.
    pub fn cpu() -> Device {
        Device {
            inner: DeviceInner::Cpu,
        }
    }

    /// The CUDA device with this ordinal.
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] without the `cuda` feature; [`Error::BackendUnavailable`]
    /// when no driver or device can be used.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        return cuda_backend::device(ordinal);
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(Error::BackendNotCompiled {
                backend: Backend::Cuda,
                feature: "cuda",
            })
        }
    }

    /// The default WebGPU adapter (honours `WGPU_BACKEND` and friends).
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] without the `wgpu` feature; [`Error::BackendUnavailable`]
    /// when no adapter can be used.
    pub fn wgpu() -> Result<Device> {
        #[cfg(feature = "wgpu")]
        return wgpu_backend::device();
        #[cfg(not(feature = "wgpu"))]
        Err(Error::BackendNotCompiled {
            backend: Backend::Wgpu,
            feature: "wgpu",
        })
    }

    /// The best device found, in the order CUDA > wgpu > CPU, together with the reason each
    /// better backend was passed over.
    ///
    /// ```
    /// let (device, skipped) = ultramem::Device::best_with_report();
    /// for (backend, why) in &skipped {
    ///     println!("skipped {backend}: {why}");
    /// }
    /// println!("running on {device}");
    /// ```
    pub fn best_with_report() -> (Device, Vec<(Backend, Error)>) {
        let mut skipped = Vec::new();
        match Device::cuda(0) {
            Ok(d) => return (d, skipped),
            Err(e) => skipped.push((Backend::Cuda, e)),
        }
        match Device::wgpu() {
            Ok(d) => return (d, skipped),
            Err(e) => skipped.push((Backend::Wgpu, e)),
        }
        (Device::cpu(), skipped)
    }

    /// The best device found (CUDA > wgpu > CPU).
    pub fn best() -> Device {
        Device::best_with_report().0
    }

    /// The kind of this device.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            DeviceInner::Cpu => Backend::Cpu,
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(_) => Backend::Cuda,
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(_) => Backend::Wgpu,
        }
    }

    /// Waits until all work submitted to this device has finished (a no-op on the CPU, whose
    /// ops return finished). Benchmarks call it inside the timed region.
    ///
    /// # Errors
    /// The driver's error.
    pub fn synchronize(&self) -> Result<()> {
        match &self.inner {
            DeviceInner::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => crate::gpu::Gpu::synchronize(d.as_ref()),
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => crate::gpu::Gpu::synchronize(d.as_ref()),
        }
    }

    /// Whether two handles name the same device (tensors of one call must share it).
    pub fn same_as(&self, other: &Device) -> bool {
        match (&self.inner, &other.inner) {
            (DeviceInner::Cpu, DeviceInner::Cpu) => true,
            #[cfg(feature = "cuda")]
            (DeviceInner::Cuda(a), DeviceInner::Cuda(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "wgpu")]
            (DeviceInner::Wgpu(a), DeviceInner::Wgpu(b)) => Arc::ptr_eq(a, b),
            #[allow(
                unreachable_patterns,
                reason = "reachable only with both GPU backends compiled"
            )]
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            DeviceInner::Cpu => f.write_str("cpu (reference, f64 accumulation)"),
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => write!(f, "cuda {}", d.describe()),
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => write!(f, "wgpu {}", d.describe()),
        }
    }
}
