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
    /// ops return finished), then reports the first error of any checks still queued by
    /// [`Device::set_deferred_checks`]. Benchmarks call it inside the timed region.
    ///
    /// # Errors
    /// The driver's error, or the first queued op error.
    pub fn synchronize(&self) -> Result<()> {
        match &self.inner {
            DeviceInner::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => {
                crate::gpu::Gpu::synchronize(d.as_ref())?;
                crate::gpu::resolve_deferred(d.as_ref())
            }
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => {
                crate::gpu::Gpu::synchronize(d.as_ref())?;
                crate::gpu::resolve_deferred(d.as_ref())
            }
        }
    }

    /// Chooses when GPU ops report the errors their kernels find (a bad index, a non-finite
    /// query): at once (the default: each such op reads its status back, one host
    /// synchronisation per op) or, with `deferred = true`, at the next [`Device::check_errors`]
    /// or [`Device::synchronize`]. Deferred, a chain of ops (a layer's forward and backward) runs
    /// with no host synchronisation at all, as asynchronous execution and CUDA graphs need; the
    /// price is that an op returns `Ok` before its inputs are known to be good, and the outputs
    /// of a failed op and of the ops after it are unspecified (but every read stays in bounds).
    /// Shape, dtype and size errors are found on the host and are always immediate. Turning
    /// deferral off leaves queued checks queued. A no-op on the CPU, whose ops always check at once.
    pub fn set_deferred_checks(&self, deferred: bool) {
        match &self.inner {
            DeviceInner::Cpu => {
                let _ = deferred;
            }
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => {
                crate::gpu::TensorGpu::sync_state(d.as_ref()).set_deferred(deferred)
            }
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => {
                crate::gpu::TensorGpu::sync_state(d.as_ref()).set_deferred(deferred)
            }
        }
    }

    /// Reads back every check queued since the last call (oldest first; one host
    /// synchronisation) and returns the first error.
    ///
    /// ```
    /// # use ultramem::*;
    /// let dev = Device::best();
    /// dev.set_deferred_checks(true);
    /// let table = Tensor::from_vec(&dev, &[2, 1], vec![1.0f32, 2.0])?;
    /// let rows = Tensor::from_vec(&dev, &[1, 1], vec![5u32])?; // past the table's 2 rows
    /// let w = Tensor::from_vec(&dev, &[1, 1, 1], vec![1.0f32])?;
    /// let out = weighted_gather(&WeightedGatherArgs { rows: &rows, weights: &w, table: &table });
    /// if dev.backend() == Backend::Cpu {
    ///     assert!(out.is_err()); // the CPU checks at once
    /// } else {
    ///     assert!(out.is_ok()); // queued ...
    ///     assert!(matches!(dev.check_errors(), Err(Error::IndexOutOfRange { index: 5, .. })));
    /// }
    /// dev.set_deferred_checks(false);
    /// # Ok::<(), ultramem::Error>(())
    /// ```
    ///
    /// # Errors
    /// The first queued op error, or the driver's error.
    pub fn check_errors(&self) -> Result<()> {
        match &self.inner {
            DeviceInner::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => crate::gpu::resolve_deferred(d.as_ref()),
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => crate::gpu::resolve_deferred(d.as_ref()),
        }
    }

    /// How many times the host has waited for this device (reads back to the host and
    /// [`Device::synchronize`] calls) since it was opened: a diagnostic for code that must not
    /// synchronise. Always 0 on the CPU.
    pub fn host_syncs(&self) -> u64 {
        match &self.inner {
            DeviceInner::Cpu => 0,
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => crate::gpu::TensorGpu::sync_state(d.as_ref()).host_syncs(),
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => crate::gpu::TensorGpu::sync_state(d.as_ref()).host_syncs(),
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
