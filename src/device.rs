//! Devices: where tensors live and ops run, and the one place that maps a device to its
//! implementation.
//!
//! [`Device::cpu`] is always there and runs the reference. [`Device::cuda`] and [`Device::wgpu`]
//! exist whatever features are on, so code written against this API compiles unchanged; without
//! their cargo feature they return [`Error::BackendNotCompiled`], and with it they return
//! [`Error::BackendUnavailable`] when the machine has no driver or adapter.
//! [`Device::ptx_interp`] (feature `ptx-interp`, for tests) runs the CUDA backend's PTX in the
//! repo's interpreter.
//!
//! Every op chooses its implementation through [`on_device!`]: the CPU reference for the CPU
//! device, and its launch sequence (written once over [`Gpu`]) for every GPU backend. Adding a
//! GPU backend is a variant of [`DeviceInner`] and a line in that macro (and in
//! `tensor.rs`'s storage); no op changes.

use std::fmt;
#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
use std::sync::Arc;

use crate::backend::Backend;
#[cfg(feature = "cuda")]
use crate::cuda_backend::CudaDevice;
#[allow(
    unused_imports,
    reason = "Error is used only when a backend is compiled out"
)]
use crate::error::{Error, Result};
#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
use crate::gpu::Gpu;
#[cfg(feature = "ptx-interp")]
use crate::interp_backend::InterpDevice;
#[cfg(feature = "wgpu")]
use crate::wgpu_backend::WgpuDevice;

/// A device. Cheap to clone (the GPU handles are shared).
#[derive(Clone, Debug)]
pub struct Device {
    pub(crate) inner: DeviceInner,
}

/// The backends compiled in; every match over it is [`on_device!`].
#[derive(Clone, Debug)]
pub(crate) enum DeviceInner {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(Arc<CudaDevice>),
    #[cfg(feature = "wgpu")]
    Wgpu(Arc<WgpuDevice>),
    #[cfg(feature = "ptx-interp")]
    PtxInterp(Arc<InterpDevice>),
}

/// Runs one expression per kind of device: `$cpu` on the CPU reference, and `$gpu` on every
/// GPU backend compiled in, with `$g` bound to its `&Arc<impl TensorGpu>` (the expression is
/// generic code, monomorphised once per backend).
///
/// ```text
/// on_device!(device, cpu => reference_path(), gpu(g) => gpu_path(g))
/// ```
macro_rules! on_device {
    ($device:expr, cpu => $cpu:expr, gpu($g:ident) => $gpu:expr $(,)?) => {
        match &$device.inner {
            $crate::device::DeviceInner::Cpu => $cpu,
            #[cfg(feature = "cuda")]
            $crate::device::DeviceInner::Cuda($g) => $gpu,
            #[cfg(feature = "wgpu")]
            $crate::device::DeviceInner::Wgpu($g) => $gpu,
            #[cfg(feature = "ptx-interp")]
            $crate::device::DeviceInner::PtxInterp($g) => $gpu,
        }
    };
}
pub(crate) use on_device;

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
        return Ok(Device {
            inner: DeviceInner::Cuda(Arc::new(CudaDevice::open(ordinal)?)),
        });
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
        return Ok(Device {
            inner: DeviceInner::Wgpu(Arc::new(WgpuDevice::open()?)),
        });
        #[cfg(not(feature = "wgpu"))]
        Err(Error::BackendNotCompiled {
            backend: Backend::Wgpu,
            feature: "wgpu",
        })
    }

    /// A fresh PTX interpreter: the CUDA backend's kernels and launch sequences run on the CPU
    /// with the interpreter's sanitizer checks (slow: for tests).
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] without the `ptx-interp` feature.
    pub fn ptx_interp() -> Result<Device> {
        #[cfg(feature = "ptx-interp")]
        return Ok(Device::from_ptx_interp(InterpDevice::new()));
        #[cfg(not(feature = "ptx-interp"))]
        Err(Error::BackendNotCompiled {
            backend: Backend::PtxInterp,
            feature: "ptx-interp",
        })
    }

    /// A device over this interpreter (e.g. one with a shuffled block order).
    #[cfg(feature = "ptx-interp")]
    pub fn from_ptx_interp(interp: InterpDevice) -> Device {
        Device {
            inner: DeviceInner::PtxInterp(Arc::new(interp)),
        }
    }

    /// The interpreter behind a [`Device::ptx_interp`] device (its counters), `None` for others.
    #[cfg(feature = "ptx-interp")]
    pub fn as_ptx_interp(&self) -> Option<&InterpDevice> {
        match &self.inner {
            DeviceInner::PtxInterp(d) => Some(d),
            #[allow(
                unreachable_patterns,
                reason = "reachable with other backends compiled"
            )]
            _ => None,
        }
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
        on_device!(self, cpu => Backend::Cpu, gpu(g) => backend_of(g.as_ref()))
    }

    /// Waits until all work submitted to this device has finished (a no-op on the CPU, whose
    /// ops return finished), then reports the errors of any checks still queued by
    /// [`Device::set_deferred_checks`]. Benchmarks call it inside the timed region.
    ///
    /// # Errors
    /// The driver's error, or the queued op errors as [`Device::check_errors`] reports them.
    pub fn synchronize(&self) -> Result<()> {
        on_device!(self, cpu => Ok(()), gpu(g) => {
            g.synchronize()?;
            crate::gpu::resolve_deferred(g.as_ref())
        })
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
        on_device!(self, cpu => {
            let _ = deferred;
        }, gpu(g) => g.sync_state().set_deferred(deferred))
    }

    /// Reads back every check queued since the last call (oldest first; one host
    /// synchronisation) and reports every op that failed: one failure as its own error, several
    /// as [`Error::Several`] listing them all, oldest first.
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
    /// The queued op's error, [`Error::Several`] when more than one op failed, or the driver's
    /// error.
    pub fn check_errors(&self) -> Result<()> {
        on_device!(self, cpu => Ok(()), gpu(g) => crate::gpu::resolve_deferred(g.as_ref()))
    }

    /// How many times the host has waited for this device (reads back to the host and
    /// [`Device::synchronize`] calls) since it was opened: a diagnostic for code that must not
    /// synchronise. Always 0 on the CPU.
    pub fn host_syncs(&self) -> u64 {
        on_device!(self, cpu => 0, gpu(g) => g.sync_state().host_syncs())
    }

    /// Whether two handles name the same device (tensors of one call must share it).
    pub fn same_as(&self, other: &Device) -> bool {
        match (&self.inner, &other.inner) {
            (DeviceInner::Cpu, DeviceInner::Cpu) => true,
            #[cfg(feature = "cuda")]
            (DeviceInner::Cuda(a), DeviceInner::Cuda(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "wgpu")]
            (DeviceInner::Wgpu(a), DeviceInner::Wgpu(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "ptx-interp")]
            (DeviceInner::PtxInterp(a), DeviceInner::PtxInterp(b)) => Arc::ptr_eq(a, b),
            #[allow(
                unreachable_patterns,
                reason = "reachable only with two backends compiled"
            )]
            _ => false,
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
fn backend_of<G: Gpu>(_: &G) -> Backend {
    G::BACKEND
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        on_device!(self,
            cpu => f.write_str("cpu (reference, f64 accumulation)"),
            gpu(g) => write!(f, "{} {}", backend_of(g.as_ref()), g.describe()))
    }
}
