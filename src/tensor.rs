//! [`Tensor`]: a shaped, contiguous, row-major buffer on a device, and [`TensorGpu`]: how the
//! ops reach the device buffer behind a tensor and wrap a new buffer as a tensor.

#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
use std::sync::Arc;

#[cfg(feature = "cuda")]
use crate::cuda_backend::CudaDevice;
#[cfg(gpu_backend)]
use crate::device::DeviceInner;
use crate::device::{on_device, Device};
use crate::dtype::Element;
use crate::error::{Error, Result};
#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
use crate::gpu::{Fill, Gpu};
#[cfg(feature = "ptx-interp")]
use crate::interp_backend::InterpDevice;
#[cfg(feature = "wgpu")]
use crate::wgpu_backend::WgpuDevice;

/// A row-major contiguous array of `T` on a [`Device`]; the last dimension is fastest.
///
/// ```
/// use ultramem::{Device, Tensor};
/// let t = Tensor::from_vec(&Device::cpu(), &[2, 3], vec![1.0f32, 2., 3., 4., 5., 6.])?;
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.to_vec()?, vec![1.0, 2., 3., 4., 5., 6.]);
/// # Ok::<(), ultramem::Error>(())
/// ```
#[derive(Debug)]
pub struct Tensor<T: Element> {
    shape: Vec<usize>,
    storage: Storage<T>,
}

/// Where a tensor's elements live. GPU buffers are untyped; the tensor knows `T`.
#[derive(Debug)]
pub(crate) enum Storage<T> {
    Cpu(Vec<T>),
    #[cfg(feature = "cuda")]
    Cuda(GpuStorage<CudaDevice>),
    #[cfg(feature = "wgpu")]
    Wgpu(GpuStorage<WgpuDevice>),
    #[cfg(feature = "ptx-interp")]
    PtxInterp(GpuStorage<InterpDevice>),
}

/// A buffer on one GPU device, with the device it belongs to.
#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
pub(crate) struct GpuStorage<G: Gpu> {
    pub(crate) device: Arc<G>,
    pub(crate) buffer: G::Buffer,
}

#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
impl<G: Gpu> std::fmt::Debug for GpuStorage<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} buffer", G::BACKEND)
    }
}

/// Runs `$cpu` with the host vector or `$gpu` with the [`GpuStorage`] of any GPU backend.
macro_rules! on_storage {
    ($storage:expr, cpu($v:pat) => $cpu:expr, gpu($s:ident) => $gpu:expr $(,)?) => {
        match $storage {
            Storage::Cpu($v) => $cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda($s) => $gpu,
            #[cfg(feature = "wgpu")]
            Storage::Wgpu($s) => $gpu,
            #[cfg(feature = "ptx-interp")]
            Storage::PtxInterp($s) => $gpu,
        }
    };
}

/// A GPU backend as the ops see it: the buffer behind a tensor of its device, and a new buffer
/// wrapped as a tensor.
#[cfg(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp"))]
pub(crate) trait TensorGpu: Gpu + Send + Sync + 'static {
    /// The storage of a tensor on a device of this backend, `None` elsewhere.
    fn storage_of<T>(s: &Storage<T>) -> Option<&GpuStorage<Self>>;

    /// A tensor's storage over a buffer of this backend.
    fn storage<T>(s: GpuStorage<Self>) -> Storage<T>;

    /// The device handle.
    fn device(self: &Arc<Self>) -> Device;

    /// The buffer behind `t` (a tensor of this device), or [`Error::DeviceMismatch`] naming
    /// `arg` of `op`.
    fn buffer<'t, T: Element>(
        &self,
        op: &'static str,
        arg: &'static str,
        t: &'t Tensor<T>,
    ) -> Result<&'t Self::Buffer> {
        Self::storage_of(&t.storage)
            .map(|s| &s.buffer)
            .ok_or_else(|| Error::DeviceMismatch {
                op,
                arg,
                expected: Self::BACKEND.to_string(),
                got: t.device().to_string(),
            })
    }

    /// A tensor of `shape` owning `buffer` (whose size the caller computed from `shape`).
    fn wrap<T: Element>(
        self: &Arc<Self>,
        shape: &[usize],
        buffer: Self::Buffer,
    ) -> Result<Tensor<T>> {
        Tensor::from_storage(
            shape,
            Self::storage(GpuStorage {
                device: Arc::clone(self),
                buffer,
            }),
        )
    }
}

/// Implements [`TensorGpu`] for a backend from its `Storage` and `DeviceInner` variants.
macro_rules! tensor_gpu {
    ($feature:literal, $ty:ty, $variant:ident) => {
        #[cfg(feature = $feature)]
        impl TensorGpu for $ty {
            fn storage_of<T>(s: &Storage<T>) -> Option<&GpuStorage<Self>> {
                match s {
                    Storage::$variant(g) => Some(g),
                    #[allow(unreachable_patterns, reason = "one GPU backend compiled")]
                    _ => None,
                }
            }

            fn storage<T>(s: GpuStorage<Self>) -> Storage<T> {
                Storage::$variant(s)
            }

            fn device(self: &Arc<Self>) -> Device {
                Device {
                    inner: DeviceInner::$variant(Arc::clone(self)),
                }
            }
        }
    };
}

tensor_gpu!("cuda", CudaDevice, Cuda);
tensor_gpu!("wgpu", WgpuDevice, Wgpu);
tensor_gpu!("ptx-interp", InterpDevice, PtxInterp);

/// The number of elements of a shape, or [`Error::SizeOverflow`] if it does not fit `usize`.
pub fn shape_len(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::SizeOverflow {
            op,
            what: format!("the element count of shape {shape:?} overflows usize"),
        })
}

impl<T: Element> Tensor<T> {
    /// Moves `data` to `device` as a tensor of this shape.
    ///
    /// # Errors
    /// [`Error::SizeOverflow`] if the shape's element count overflows, [`Error::BufferSize`] if
    /// `data.len()` differs from it, or the device's upload error.
    pub fn from_vec(device: &Device, shape: &[usize], data: Vec<T>) -> Result<Tensor<T>> {
        let len = shape_len("Tensor::from_vec", shape)?;
        if data.len() != len {
            return Err(Error::BufferSize {
                op: "Tensor::from_vec",
                arg: "data",
                expected: len,
                got: data.len(),
            });
        }
        on_device!(device,
            cpu => Tensor::from_storage(shape, Storage::Cpu(data)),
            gpu(g) => g.wrap(shape, g.upload(bytemuck::cast_slice(&data))?))
    }

    /// Copies `data` to `device` as a tensor of this shape.
    ///
    /// # Errors
    /// As [`Tensor::from_vec`].
    pub fn from_slice(device: &Device, shape: &[usize], data: &[T]) -> Result<Tensor<T>> {
        // Check the length before copying so a wrong call costs nothing.
        let len = shape_len("Tensor::from_slice", shape)?;
        if data.len() != len {
            return Err(Error::BufferSize {
                op: "Tensor::from_slice",
                arg: "data",
                expected: len,
                got: data.len(),
            });
        }
        // The host copy is allocated fallibly; a GPU uploads straight from `data`.
        on_device!(device,
            cpu => Tensor::from_storage(
                shape,
                Storage::Cpu(crate::alloc::collect("Tensor::from_slice", data.iter().copied())?),
            ),
            gpu(g) => g.wrap(shape, g.upload(bytemuck::cast_slice(data))?))
    }

    /// A tensor of this shape filled with zeros (all-zero bits).
    ///
    /// # Errors
    /// [`Error::SizeOverflow`] if the element count overflows, or the device's allocation error.
    pub fn zeros(device: &Device, shape: &[usize]) -> Result<Tensor<T>> {
        let len = shape_len("Tensor::zeros", shape)?;
        on_device!(device,
        cpu => Tensor::from_vec(device, shape, vec![T::zeroed(); len]),
        gpu(g) => {
            let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
                Error::SizeOverflow {
                    op: "Tensor::zeros",
                    what: format!("{len} elements of {} bytes", std::mem::size_of::<T>()),
                }
            })?;
            g.wrap(shape, g.alloc(bytes, Fill::Zero)?)
        })
    }

    /// A tensor over existing storage (the element count is checked by the caller's sizes).
    #[cfg_attr(
        not(any(feature = "cuda", feature = "wgpu", feature = "ptx-interp")),
        allow(dead_code, reason = "used by the GPU backends")
    )]
    pub(crate) fn from_storage(shape: &[usize], storage: Storage<T>) -> Result<Tensor<T>> {
        shape_len("Tensor::from_storage", shape)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage,
        })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        // Cannot overflow: checked when the tensor was made.
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same elements viewed with another shape of equal element count (no copy).
    ///
    /// # Errors
    /// [`Error::SizeOverflow`] or [`Error::BufferSize`] if the element counts differ.
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor<T>> {
        let len = shape_len("Tensor::reshape", shape)?;
        if len != self.len() {
            return Err(Error::BufferSize {
                op: "Tensor::reshape",
                arg: "shape",
                expected: self.len(),
                got: len,
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage,
        })
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        on_storage!(&self.storage, cpu(_) => Device::cpu(), gpu(s) => s.device.device())
    }

    /// Copies the elements to the host.
    ///
    /// # Errors
    /// The device's download error.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        on_storage!(&self.storage,
        cpu(v) => Ok(v.clone()),
        gpu(s) => Ok(bytemuck::pod_collect_to_vec(
            &s.device.download(&s.buffer, self.len() * std::mem::size_of::<T>())?,
        )))
    }

    /// A copy on the same device (device to device on a GPU; it does not wait for the copy).
    ///
    /// # Errors
    /// The device's allocation or copy error.
    pub fn try_clone(&self) -> Result<Tensor<T>> {
        on_storage!(&self.storage,
        cpu(v) => Tensor::from_storage(&self.shape, Storage::Cpu(v.clone())),
        gpu(s) => {
            let bytes = self.len() * std::mem::size_of::<T>();
            let mut copy = s.device.alloc(bytes, Fill::Zero)?;
            if bytes > 0 {
                s.device
                    .copy(&s.buffer, 0, &mut copy, 0, bytes.div_ceil(4) * 4)?;
            }
            s.device.wrap(&self.shape, copy)
        })
    }

    /// A copy on another device (through the host when the devices differ).
    ///
    /// # Errors
    /// The devices' download or upload error.
    pub fn to_device(&self, device: &Device) -> Result<Tensor<T>> {
        if self.device().same_as(device) {
            return self.try_clone();
        }
        Tensor::from_vec(device, &self.shape, self.to_vec()?)
    }

    /// The host slice of a CPU tensor; `None` on other devices.
    pub fn as_cpu_slice(&self) -> Option<&[T]> {
        match &self.storage {
            Storage::Cpu(v) => Some(v),
            #[allow(
                unreachable_patterns,
                reason = "reachable only with a GPU backend compiled"
            )]
            _ => None,
        }
    }

    /// Consumes a CPU tensor into its host vector; other devices download.
    ///
    /// # Errors
    /// The device's download error.
    pub fn into_vec(self) -> Result<Vec<T>> {
        match self.storage {
            Storage::Cpu(v) => Ok(v),
            #[allow(
                unreachable_patterns,
                reason = "reachable only with a GPU backend compiled"
            )]
            _ => self.to_vec(),
        }
    }
}
