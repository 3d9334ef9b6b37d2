//! [`Tensor`]: a shaped, contiguous, row-major buffer on a device.

use std::sync::Arc;

use crate::device::{Device, DeviceInner};
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::{cuda_backend, wgpu_backend};

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

#[derive(Debug)]
pub(crate) enum Storage<T> {
    Cpu(Vec<T>),
    #[expect(dead_code, reason = "constructed once the CUDA backend's kernels land")]
    Cuda(cuda_backend::CudaStorage<T>),
    #[expect(dead_code, reason = "constructed once the wgpu backend's shaders land")]
    Wgpu(wgpu_backend::WgpuStorage<T>),
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
            DeviceInner::Cuda(d) => d.unreachable(),
            DeviceInner::Wgpu(d) => d.unreachable(),
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
        Tensor::from_vec(device, shape, vec![T::zeroed(); len])
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
            Storage::Cuda(s) => Device {
                inner: DeviceInner::Cuda(Arc::clone(&s.device)),
            },
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
        match &self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::Cuda(s) => s.device.unreachable(),
            Storage::Wgpu(s) => s.device.unreachable(),
        }
    }

    /// The host slice of a CPU tensor; `None` on other devices.
    pub fn as_cpu_slice(&self) -> Option<&[T]> {
        match &self.storage {
            Storage::Cpu(v) => Some(v),
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
            _ => self.to_vec(),
        }
    }
}
