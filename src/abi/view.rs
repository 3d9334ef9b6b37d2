//! [`View`]: the one description of a caller's tensor in the C ABI — its op and argument name
//! (for messages), shape, element type, place and memory range — and the checks both paths
//! make on it: exact output shapes, overlap between a call's tensors, the dtypes the GPU
//! kernels take. `dlpack.rs` reads a `DLTensor` into a `View`; the host path borrows its memory
//! through `dlpack::Borrows`, the GPU path (`device.rs`) gets its buffers from the backend.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// The element types the ABI takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// `int32` indices (negative values are out of range).
    I32,
    /// `uint32` indices.
    U32,
    /// `int64` indices (negative values are out of range; values past `2^32` too). Host tensors
    /// only: the kernels read 32-bit indices. Since ABI version 2.
    I64,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single.
    F32,
    /// IEEE double (the CPU path computes in f64: what `torch.autograd.gradcheck` needs).
    F64,
}

impl Elem {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Elem::F16 | Elem::BF16 => 2,
            Elem::I32 | Elem::U32 | Elem::F32 => 4,
            Elem::F64 | Elem::I64 => 8,
        }
    }

    /// Whether it is an index type.
    pub fn is_index(self) -> bool {
        matches!(self, Elem::I32 | Elem::U32 | Elem::I64)
    }
}

/// Where a tensor's memory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Host memory (CPU or pinned CUDA host memory).
    Host,
    /// CUDA device memory on this ordinal.
    Cuda(i32),
}

/// A checked description of one caller tensor: what an op needs to know of it besides its
/// elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The op, for messages.
    pub op: &'static str,
    /// The argument, for messages.
    pub arg: &'static str,
    /// The sizes.
    pub shape: Vec<usize>,
    /// The element type.
    pub elem: Elem,
    /// Where the memory lives.
    pub place: Place,
    /// The address of the first element (0 for a description without memory).
    pub(super) addr: usize,
    /// The byte length.
    pub(super) len: usize,
}

fn invalid(op: &'static str, arg: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        op,
        arg,
        reason: reason.into(),
    }
}

impl View {
    /// A description of a tensor whose memory is handed over separately (a GPU buffer): what
    /// the GPU path's functions take, and what tests build.
    ///
    /// # Errors
    /// [`Error::SizeOverflow`] if the shape's byte length overflows.
    pub fn described(
        op: &'static str,
        arg: &'static str,
        shape: &[usize],
        elem: Elem,
        place: Place,
    ) -> Result<View> {
        let len = shape
            .iter()
            .try_fold(elem.size(), |a, &s| a.checked_mul(s))
            .ok_or_else(|| Error::SizeOverflow {
                op,
                what: format!("bytes of `{arg}` with shape {shape:?}"),
            })?;
        Ok(View {
            op,
            arg,
            shape: shape.to_vec(),
            elem,
            place,
            addr: 0,
            len,
        })
    }

    /// The byte length.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.len / self.elem.size()
    }

    /// The device address of the first element and the byte length: what the CUDA path wraps
    /// (never dereferenced on the host).
    pub fn device_region(&self) -> (u64, usize) {
        (self.addr as u64, self.len)
    }

    /// Errors unless the shape is exactly `want` (an output, or an input the op fixes).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`].
    pub fn exactly(&self, want: &[usize]) -> Result<&Self> {
        if self.shape == want {
            Ok(self)
        } else {
            Err(Error::ShapeMismatch {
                op: self.op,
                arg: self.arg,
                expected: format!("{want:?}"),
                got: self.shape.clone(),
            })
        }
    }

    /// Errors unless the tensor holds indices (either path).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`].
    pub fn expect_index(&self) -> Result<&Self> {
        if self.elem.is_index() {
            Ok(self)
        } else {
            Err(invalid(
                self.op,
                self.arg,
                format!("dtype {:?}; indices are int32, uint32 or int64", self.elem),
            ))
        }
    }

    /// Errors unless the tensor holds floats (either path).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`].
    pub fn expect_float(&self) -> Result<&Self> {
        if self.elem.is_index() {
            Err(invalid(
                self.op,
                self.arg,
                format!("dtype {:?}; expected a float dtype", self.elem),
            ))
        } else {
            Ok(self)
        }
    }

    pub(crate) fn gpu_unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            op: self.op,
            backend: Backend::Cuda,
            reason: format!("`{}` has dtype {:?}; on a GPU {what}", self.arg, self.elem),
        }
    }

    /// Errors unless the tensor holds indices the GPU path takes, whose values (input) or
    /// possible values (output) lie below `bound`. The kernels read int32 as u32, where a
    /// negative value arrives as `>= 2^31`: out of range, and so reported, only while
    /// `bound <= 2^31`; past it an int32 tensor is refused (an output could not hold the values
    /// either). uint32 is read as it is; int64 is narrowed to u32 on the device first (inputs,
    /// each value checked) or widened from it (outputs).
    ///
    /// # Errors
    /// [`Error::Unsupported`].
    pub fn gpu_indices(&self, bound: u64) -> Result<&Self> {
        match self.elem {
            Elem::I32 if bound > 1 << 31 => Err(self.gpu_unsupported(&format!(
                "int32 indices cannot address {bound} entries (past 2^31): pass uint32 or int64"
            ))),
            Elem::I32 | Elem::U32 | Elem::I64 => Ok(self),
            _ => Err(self.gpu_unsupported("indices are int32, uint32 or int64")),
        }
    }

    /// Errors unless the tensor is float32 (every small operand and every output on a GPU).
    ///
    /// # Errors
    /// [`Error::Unsupported`].
    pub fn gpu_f32(&self) -> Result<&Self> {
        match self.elem {
            Elem::F32 => Ok(self),
            _ => {
                Err(self.gpu_unsupported("this operand is float32 (float64 runs on the CPU path)"))
            }
        }
    }

    /// The dtype of a table the GPU kernels read (f32, f16 or bf16).
    ///
    /// # Errors
    /// [`Error::Unsupported`].
    pub fn gpu_table(&self) -> Result<DType> {
        match self.elem {
            Elem::F32 => Ok(DType::F32),
            Elem::F16 => Ok(DType::F16),
            Elem::BF16 => Ok(DType::BF16),
            _ => Err(self.gpu_unsupported("tables are float32, float16 or bfloat16")),
        }
    }

    fn overlaps(&self, other: &View) -> bool {
        self.len > 0
            && other.len > 0
            && self.addr < other.addr + other.len
            && other.addr < self.addr + self.len
    }

    /// Errors unless the memory is host memory: the host path's borrows never touch device
    /// memory (the ops send CUDA tensors to the GPU path before; the Tucker proxy is host-only).
    ///
    /// # Errors
    /// [`Error::Unsupported`].
    pub fn host_only(&self) -> Result<()> {
        match self.place {
            Place::Host => Ok(()),
            Place::Cuda(ordinal) => Err(Error::Unsupported {
                op: self.op,
                backend: Backend::Cuda,
                reason: format!(
                    "`{}` is a CUDA tensor (device {ordinal}); this function takes host tensors",
                    self.arg
                ),
            }),
        }
    }
}

/// Errors if `output` overlaps any of `others` in memory (outputs must alias nothing, so no
/// `&mut` the host path hands out and no buffer the GPU path writes is read by the same call).
///
/// # Errors
/// [`Error::InvalidArgument`] naming the first tensor it overlaps.
pub fn check_no_overlap<'v>(
    output: &View,
    others: impl IntoIterator<Item = &'v View>,
) -> Result<()> {
    match others.into_iter().find(|o| output.overlaps(o)) {
        None => Ok(()),
        Some(other) => Err(invalid(
            output.op,
            output.arg,
            format!(
                "overlaps `{}` in memory; outputs must not alias any other tensor of the call",
                other.arg
            ),
        )),
    }
}

/// Errors when an output overlaps an input or an earlier output.
///
/// # Errors
/// [`Error::InvalidArgument`].
pub fn check_disjoint(inputs: &[&View], outputs: &[&View]) -> Result<()> {
    for (i, o) in outputs.iter().enumerate() {
        check_no_overlap(o, inputs.iter().chain(&outputs[..i]).copied())?;
    }
    Ok(())
}

/// Where one call runs: `None` on the host, `Some(ordinal)` on that CUDA device; tensors on
/// different devices are an error.
///
/// # Errors
/// [`Error::DeviceMismatch`].
pub fn placement(views: &[&View]) -> Result<Option<i32>> {
    let Some(first) = views.first() else {
        return Ok(None);
    };
    for v in views {
        if v.place != first.place {
            return Err(Error::DeviceMismatch {
                op: v.op,
                arg: v.arg,
                expected: format!("{:?} (as `{}`)", first.place, first.arg),
                got: format!("{:?}", v.place),
            });
        }
    }
    Ok(match first.place {
        Place::Host => None,
        Place::Cuda(ordinal) => Some(ordinal),
    })
}

/// Errors unless the PEER tables `down` and `up` share one dtype (on either path).
///
/// # Errors
/// [`Error::InvalidArgument`].
pub fn same_tables(down: &View, up: &View) -> Result<()> {
    if down.elem == up.elem {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        op: up.op,
        arg: up.arg,
        reason: format!(
            "dtype {:?} but `{}` has {:?}; the tables share one dtype",
            up.elem, down.arg, down.elem
        ),
    })
}
