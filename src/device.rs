//! Devices: where tensors live and ops run.
//!
//! [`Device::cpu`] is always there and runs the reference. [`Device::cuda`] and [`Device::wgpu`]
//! exist whatever features are on, so code written against this API compiles unchanged; without
//! their cargo feature they return [`Error::BackendNotCompiled`], and with it they return
//! [`Error::BackendUnavailable`] until the backend can run on this machine.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::{cuda_backend, wgpu_backend};

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
    Cuda(Arc<cuda_backend::CudaDevice>),
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
        let dev = cuda_backend::CudaDevice::open(ordinal)?;
        Ok(Device {
            inner: DeviceInner::Cuda(Arc::new(dev)),
        })
    }

    /// The default WebGPU adapter (honours `WGPU_BACKEND` and friends).
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] without the `wgpu` feature; [`Error::BackendUnavailable`]
    /// when no adapter can be used.
    pub fn wgpu() -> Result<Device> {
        let dev = wgpu_backend::WgpuDevice::open()?;
        Ok(Device {
            inner: DeviceInner::Wgpu(Arc::new(dev)),
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
            DeviceInner::Cuda(_) => Backend::Cuda,
            DeviceInner::Wgpu(_) => Backend::Wgpu,
        }
    }

    /// Whether two handles name the same device (tensors of one call must share it).
    pub fn same_as(&self, other: &Device) -> bool {
        match (&self.inner, &other.inner) {
            (DeviceInner::Cpu, DeviceInner::Cpu) => true,
            (DeviceInner::Cuda(a), DeviceInner::Cuda(b)) => Arc::ptr_eq(a, b),
            (DeviceInner::Wgpu(a), DeviceInner::Wgpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            DeviceInner::Cpu => f.write_str("cpu (reference, f64 accumulation)"),
            DeviceInner::Cuda(d) => d.unreachable(),
            DeviceInner::Wgpu(d) => d.unreachable(),
        }
    }
}
