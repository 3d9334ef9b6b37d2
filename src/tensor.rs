//! [`Tensor`]: a shaped, contiguous, row-major buffer on a device.

#[cfg(any(feature = "cuda", feature = "wgpu"))]
use std::sync::Arc;

#[cfg(feature = "cuda")]
use crate::cuda_backend::CudaStorage;
use crate::device::{Device, DeviceInner};
use crate::dtype::Element;
use crate::error::{Error, Result};
#[cfg(any(feature = "cuda", feature = "wgpu"))]
use crate::gpu::{Gpu, TensorGpu};
#[cfg(feature = "wgpu")]
use crate::wgpu_backend::WgpuStorage;

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
    Cuda(CudaStorage),
    #[cfg(feature = "wgpu")]
    Wgpu(WgpuStorage),
}

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
        let storage = match &device.inner {
            DeviceInner::Cpu => Storage::Cpu(data),
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => Storage::Cuda(CudaStorage {
                slice: d.upload_bytes(bytemuck::cast_slice(&data))?,
                device: Arc::clone(d),
            }),
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => Storage::Wgpu(WgpuStorage {
                buffer: d.upload_bytes(bytemuck::cast_slice(&data))?,
                device: Arc::clone(d),
            }),
        };
        Ok(Tensor {
            shape: shape.to_vec(),
            storage,
        })
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
        Tensor::from_vec(device, shape, data.to_vec())
    }

    /// A tensor of this shape filled with zeros (all-zero bits).
    ///
    /// # Errors
    /// [`Error::SizeOverflow`] if the element count overflows, or the device's allocation error.
    pub fn zeros(device: &Device, shape: &[usize]) -> Result<Tensor<T>> {
        let len = shape_len("Tensor::zeros", shape)?;
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        let bytes =
            len.checked_mul(std::mem::size_of::<T>())
                .ok_or_else(|| Error::SizeOverflow {
                    op: "Tensor::zeros",
                    what: format!("{len} elements of {} bytes", std::mem::size_of::<T>()),
                })?;
        match &device.inner {
            DeviceInner::Cpu => Tensor::from_vec(device, shape, vec![T::zeroed(); len]),
            #[cfg(feature = "cuda")]
            DeviceInner::Cuda(d) => d.wrap(shape, d.alloc(bytes, crate::gpu::Fill::Zero)?),
            #[cfg(feature = "wgpu")]
            DeviceInner::Wgpu(d) => d.wrap(shape, d.alloc(bytes, crate::gpu::Fill::Zero)?),
        }
    }

    /// A tensor over existing storage (the element count is checked by the caller's sizes).
    #[cfg_attr(
        not(any(feature = "cuda", feature = "wgpu")),
        allow(dead_code, reason = "used by the GPU backends")
    )]
    pub(crate) fn from_storage(shape: &[usize], storage: Storage<T>) -> Result<Tensor<T>> {
        shape_len("Tensor::from_storage", shape)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage,
        })
    }

    #[cfg_attr(
        not(any(feature = "cuda", feature = "wgpu")),
        allow(dead_code, reason = "used by the GPU backends")
    )]
    pub(crate) fn storage(&self) -> &Storage<T> {
        &self.storage
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
        match &self.storage {
            Storage::Cpu(_) => Device::cpu(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Device {
                inner: DeviceInner::Cuda(Arc::clone(&s.device)),
            },
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => Device {
                inner: DeviceInner::Wgpu(Arc::clone(&s.device)),
            },
        }
    }

    /// Copies the elements to the host.
    ///
    /// # Errors
    /// The device's download error.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let bytes = self.len() * std::mem::size_of::<T>();
        let _ = bytes;
        match &self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Ok(bytemuck::pod_collect_to_vec(
                &s.device.download(&s.slice, bytes)?,
            )),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => Ok(bytemuck::pod_collect_to_vec(
                &s.device.download(&s.buffer, bytes)?,
            )),
        }
    }

    /// A copy on the same device (device to device on a GPU; it does not wait for the copy).
    ///
    /// # Errors
    /// The device's allocation or copy error.
    pub fn try_clone(&self) -> Result<Tensor<T>> {
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        let bytes = self.len() * std::mem::size_of::<T>();
        match &self.storage {
            Storage::Cpu(v) => Tensor::from_storage(&self.shape, Storage::Cpu(v.clone())),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => {
                let mut copy = s.device.alloc(bytes, crate::gpu::Fill::Zero)?;
                if bytes > 0 {
                    s.device
                        .copy(&s.slice, 0, &mut copy, 0, bytes.div_ceil(4) * 4)?;
                }
                s.device.wrap(&self.shape, copy)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(s) => {
                let mut copy = s.device.alloc(bytes, crate::gpu::Fill::Zero)?;
                if bytes > 0 {
                    s.device
                        .copy(&s.buffer, 0, &mut copy, 0, bytes.div_ceil(4) * 4)?;
                }
                s.device.wrap(&self.shape, copy)
            }
        }
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
