//! DLPack's `DLTensor` (v0.8 / v1.x layout, which did not change), read into the ABI's
//! [`View`], and [`Borrows`]: the host path's typed slices over the caller's memory. The
//! `unsafe` blocks that read a caller's descriptors and host memory are in this file.
//!
//! A caller's tensor is read once ([`read`]) into a [`View`]: its shape, element type, place,
//! address and byte length, after checking the descriptor (null pointers, negative sizes,
//! strides that are not row-major contiguous, an address not aligned to the element, a size that
//! overflows). The host path then borrows the memory as a typed slice for the duration of one
//! call. An output is only borrowed mutably after [`Borrows`] has checked that it overlaps no
//! other tensor of the call, so no `&mut` slice ever aliases another slice.

use std::ffi::c_void;

use half::{bf16, f16};

use super::view::{check_no_overlap, Elem, Place, View};
use crate::error::{Error, Result};

/// The most dimensions a descriptor may claim (the ops' tensors have at most 5).
pub const MAX_NDIM: usize = 8;

/// `DLDeviceType::kDLCPU`.
pub const DL_CPU: i32 = 1;
/// `DLDeviceType::kDLCUDA`.
pub const DL_CUDA: i32 = 2;
/// `DLDeviceType::kDLCUDAHost` (pinned host memory: read like CPU memory).
pub const DL_CUDA_HOST: i32 = 3;

/// `DLDataTypeCode`: signed integer.
pub const DL_INT: u8 = 0;
/// `DLDataTypeCode`: unsigned integer.
pub const DL_UINT: u8 = 1;
/// `DLDataTypeCode`: IEEE float.
pub const DL_FLOAT: u8 = 2;
/// `DLDataTypeCode`: bfloat16.
pub const DL_BFLOAT: u8 = 4;

/// DLPack's `DLDevice`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDevice {
    /// `DLDeviceType` (1 CPU, 2 CUDA, 3 CUDA host, …).
    pub device_type: i32,
    /// The device ordinal.
    pub device_id: i32,
}

/// DLPack's `DLDataType`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDataType {
    /// `DLDataTypeCode` (0 int, 1 uint, 2 float, 4 bfloat).
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes per element; 1 for every tensor this crate accepts.
    pub lanes: u16,
}

/// DLPack's `DLTensor`: a borrowed description of a strided tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLTensor {
    /// The allocation (device pointer for CUDA tensors); the elements start `byte_offset` later.
    pub data: *mut c_void,
    /// Where the memory lives.
    pub device: DLDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` sizes.
    pub shape: *const i64,
    /// `ndim` strides in elements, or null for row-major contiguous.
    pub strides: *const i64,
    /// Offset of the first element from `data`, in bytes.
    pub byte_offset: u64,
}

/// The ABI's element type of a DLPack dtype, if it takes it.
fn elem_of(t: DLDataType) -> Option<Elem> {
    match (t.code, t.bits, t.lanes) {
        (DL_INT, 32, 1) => Some(Elem::I32),
        (DL_UINT, 32, 1) => Some(Elem::U32),
        (DL_INT, 64, 1) => Some(Elem::I64),
        (DL_FLOAT, 16, 1) => Some(Elem::F16),
        (DL_BFLOAT, 16, 1) => Some(Elem::BF16),
        (DL_FLOAT, 32, 1) => Some(Elem::F32),
        (DL_FLOAT, 64, 1) => Some(Elem::F64),
        _ => None,
    }
}

fn describe(t: DLDataType) -> String {
    let kind = match t.code {
        DL_INT => "int",
        DL_UINT => "uint",
        DL_FLOAT => "float",
        DL_BFLOAT => "bfloat",
        _ => "type-code-",
    };
    if t.lanes == 1 {
        format!("{kind}{}", t.bits)
    } else {
        format!("{kind}{}x{}", t.bits, t.lanes)
    }
}

fn invalid(op: &'static str, arg: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        op,
        arg,
        reason: reason.into(),
    }
}

/// Reads and checks the descriptor at `tensor` as argument `arg` of `op`.
///
/// # Safety
/// `tensor` is null or points to a `DLTensor` whose `shape` (and `strides`, when not null)
/// point to `ndim` readable `i64`s, all valid for the duration of this call.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad descriptor, [`Error::SizeOverflow`].
pub unsafe fn read(op: &'static str, arg: &'static str, tensor: *const DLTensor) -> Result<View> {
    // SAFETY: the caller guarantees `tensor` is null or valid; `as_ref` handles null.
    let Some(t) = (unsafe { tensor.as_ref() }) else {
        return Err(invalid(op, arg, "null pointer"));
    };
    // No op takes more than 5 dimensions; a larger `ndim` is a garbage descriptor, refused
    // before `shape` is read for that many entries.
    let ndim = usize::try_from(t.ndim)
        .ok()
        .filter(|&n| n <= MAX_NDIM)
        .ok_or_else(|| invalid(op, arg, format!("ndim {} (at most {MAX_NDIM})", t.ndim)))?;
    if ndim > 0 && t.shape.is_null() {
        return Err(invalid(op, arg, "null shape pointer"));
    }
    // A slice must be aligned even where the caller's pointer is merely readable.
    let misaligned = |p: *const i64| !(p as usize).is_multiple_of(std::mem::align_of::<i64>());
    if ndim > 0 && (misaligned(t.shape) || misaligned(t.strides)) {
        return Err(invalid(
            op,
            arg,
            "its shape or strides pointer is not aligned to 8 bytes",
        ));
    }
    let (sizes, strides): (&[i64], Option<&[i64]>) = if ndim == 0 {
        (&[], None)
    } else {
        // SAFETY: `shape` is non-null, aligned (checked above) and, by the caller's contract,
        // points to `ndim` i64s.
        let sizes = unsafe { std::slice::from_raw_parts(t.shape, ndim) };
        // SAFETY: likewise for `strides` when it is not null (aligned, checked above).
        let strides =
            (!t.strides.is_null()).then(|| unsafe { std::slice::from_raw_parts(t.strides, ndim) });
        (sizes, strides)
    };
    let mut shape = Vec::with_capacity(ndim);
    for &s in sizes {
        shape.push(
            usize::try_from(s).map_err(|_| invalid(op, arg, format!("size {s} in its shape")))?,
        );
    }
    let elem = elem_of(t.dtype).ok_or_else(|| {
        invalid(
            op,
            arg,
            format!(
                "dtype {}; the ABI takes int32/uint32/int64 indices and float16, bfloat16, float32, float64 values",
                describe(t.dtype)
            ),
        )
    })?;
    let place = match t.device.device_type {
        DL_CPU | DL_CUDA_HOST => Place::Host,
        DL_CUDA => Place::Cuda(t.device.device_id),
        other => {
            return Err(invalid(
                op,
                arg,
                format!("DLPack device type {other}; the ABI takes CPU and CUDA tensors"),
            ))
        }
    };
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .ok_or_else(|| Error::SizeOverflow {
            op,
            what: format!("`{arg}` with shape {shape:?}"),
        })?;
    if let Some(strides) = strides {
        // Row-major contiguous; a stride of a size-1 dimension is never used, so any is fine.
        let mut want = 1i64;
        for (d, (&size, &stride)) in sizes.iter().zip(strides).enumerate().rev() {
            if size != 1 && stride != want {
                return Err(invalid(
                    op,
                    arg,
                    format!(
                        "not contiguous: stride {stride} in dimension {d} (strides {strides:?}, shape {shape:?}); pass a contiguous tensor"
                    ),
                ));
            }
            want = want.saturating_mul(size);
        }
    }
    let len = numel
        .checked_mul(elem.size())
        .ok_or_else(|| Error::SizeOverflow {
            op,
            what: format!("bytes of `{arg}`"),
        })?;
    let addr = (t.data as usize)
        .checked_add(usize::try_from(t.byte_offset).unwrap_or(usize::MAX))
        .ok_or_else(|| invalid(op, arg, "data + byte_offset overflows"))?;
    if len > 0 {
        if t.data.is_null() {
            return Err(invalid(op, arg, "null data pointer"));
        }
        if addr % elem.size() != 0 {
            return Err(invalid(
                op,
                arg,
                format!(
                    "address {addr:#x} not aligned to its {}-byte elements",
                    elem.size()
                ),
            ));
        }
        if addr.checked_add(len).is_none() || len > isize::MAX as usize {
            return Err(Error::SizeOverflow {
                op,
                what: format!("the address range of `{arg}`"),
            });
        }
    }
    Ok(View {
        op,
        arg,
        shape,
        elem,
        place,
        addr,
        len,
    })
}

/// A caller's float elements, borrowed for one call.
#[derive(Clone, Copy, Debug)]
pub enum Floats<'a> {
    /// float16.
    F16(&'a [f16]),
    /// bfloat16.
    BF16(&'a [bf16]),
    /// float32.
    F32(&'a [f32]),
    /// float64.
    F64(&'a [f64]),
}

/// Runs `$body` with `$s` bound to the typed slice of a [`Floats`].
macro_rules! with_floats {
    ($floats:expr, $s:ident => $body:expr) => {
        match $floats {
            $crate::abi::dlpack::Floats::F16($s) => $body,
            $crate::abi::dlpack::Floats::BF16($s) => $body,
            $crate::abi::dlpack::Floats::F32($s) => $body,
            $crate::abi::dlpack::Floats::F64($s) => $body,
        }
    };
}
pub(crate) use with_floats;

/// The tensors of one call: inputs are borrowed shared, outputs mutably, and an output is only
/// handed out if it overlaps none of the call's other tensors.
#[derive(Default)]
pub struct Borrows {
    inputs: Vec<View>,
    outputs: Vec<View>,
}

impl Borrows {
    /// Registers an input.
    pub fn input(&mut self, v: &View) {
        self.inputs.push(v.clone());
    }

    /// Borrows an input's indices as `u32`. What the `u32` view cannot show is checked here:
    /// a negative `int32`/`int64` value is [`Error::IndexOutOfRange`] naming it (never read as
    /// `>= 2³¹`), and an `int64` value at or past `bound` (at most `2³²`) cannot be narrowed.
    /// Every other value is checked against `bound` by the op itself, so `uint32` indices are
    /// borrowed without a pass here.
    ///
    /// # Errors
    /// Those of the descriptor, and [`Error::IndexOutOfRange`].
    pub fn indices<'a>(&mut self, v: &'a View, bound: u64) -> Result<std::borrow::Cow<'a, [u32]>> {
        v.expect_index()?;
        v.host_only()?;
        self.input(v);
        let n = v.numel();
        if n == 0 {
            return Ok(std::borrow::Cow::Borrowed(&[]));
        }
        if v.elem == Elem::I64 {
            // SAFETY: as below, for `n` i64s (`View::read` checked 8-byte alignment for int64).
            let wide = unsafe { std::slice::from_raw_parts(v.addr as *const i64, n) };
            return Ok(std::borrow::Cow::Owned(
                crate::reference::index_cast::narrow(v.op, v.arg, wide, bound)?,
            ));
        }
        // SAFETY: `View::read` checked that the address is non-null, 4-byte aligned and that
        // `len` bytes from it do not overflow; the caller's contract (see `ultramem.h`) is that
        // they are readable host memory, live and not written during this call. `i32` and `u32`
        // have one size and alignment, and every bit pattern is a valid `u32`.
        let values = unsafe { std::slice::from_raw_parts(v.addr as *const u32, n) };
        if v.elem == Elem::I32 {
            if let Some(position) = values.iter().position(|&x| (x as i32) < 0) {
                return Err(Error::IndexOutOfRange {
                    op: v.op,
                    arg: v.arg,
                    position,
                    index: i64::from(values[position] as i32),
                    bound,
                });
            }
        }
        Ok(std::borrow::Cow::Borrowed(values))
    }

    /// Borrows an input's floats.
    pub fn floats<'a>(&mut self, v: &'a View) -> Result<Floats<'a>> {
        v.expect_float()?;
        v.host_only()?;
        self.input(v);
        let n = v.numel();
        if n == 0 {
            return Ok(Floats::F32(&[]));
        }
        let p = v.addr as *const u8;
        // SAFETY: as in `indices`: `View::read` checked non-null, alignment to the element size
        // and the byte range; the caller guarantees the memory is readable, live and unwritten
        // for this call; every bit pattern is a valid value of these types.
        let floats = unsafe {
            match v.elem {
                Elem::F16 => Floats::F16(std::slice::from_raw_parts(p.cast(), n)),
                Elem::BF16 => Floats::BF16(std::slice::from_raw_parts(p.cast(), n)),
                Elem::F32 => Floats::F32(std::slice::from_raw_parts(p.cast(), n)),
                Elem::F64 => Floats::F64(std::slice::from_raw_parts(p.cast(), n)),
                Elem::I32 | Elem::U32 | Elem::I64 => unreachable!("expect_float rejected indices"),
            }
        };
        Ok(floats)
    }

    /// An input's floats widened to f64 (the small operands; exact for every float dtype).
    pub fn floats_f64(&mut self, v: &View) -> Result<Vec<f64>> {
        use crate::dtype::Float;
        with_floats!(self.floats(v)?, s => crate::alloc::collect(v.op, s.iter().map(|x| x.to_f64())))
    }

    fn claim(&mut self, v: &View) -> Result<()> {
        v.host_only()?;
        check_no_overlap(v, self.inputs.iter().chain(&self.outputs))?;
        self.outputs.push(v.clone());
        Ok(())
    }

    /// Writes `values` to an index output (`int32` or `uint32`), after the checks of `claim`.
    /// An `int32` output refuses values of `2³¹` and more (they would read back negative).
    ///
    /// # Errors
    /// Those of the descriptor, and [`Error::Unsupported`] for a value an `int32` output cannot
    /// hold (nothing is written then).
    pub fn write_indices(&mut self, v: &View, values: &[u32]) -> Result<()> {
        v.expect_index()?;
        self.expect_len(v, values.len())?;
        self.claim(v)?;
        if v.elem == Elem::I32 {
            if let Some(position) = values.iter().position(|&x| x > i32::MAX as u32) {
                return Err(Error::Unsupported {
                    op: v.op,
                    backend: crate::backend::Backend::Cpu,
                    reason: format!(
                        "`{}[{position}]` = {} does not fit the int32 output; pass a uint32 one",
                        v.arg, values[position]
                    ),
                });
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        if v.elem == Elem::I64 {
            // SAFETY: as below, for `values.len()` i64s (8-byte aligned: `View::read`).
            let out = unsafe { std::slice::from_raw_parts_mut(v.addr as *mut i64, values.len()) };
            out.iter_mut()
                .zip(values)
                .for_each(|(o, &x)| *o = i64::from(x));
            return Ok(());
        }
        // SAFETY: as in `indices`, plus: `claim` checked this range overlaps no other tensor of
        // the call, so this is the only reference to it; the caller guarantees it is writable.
        let out = unsafe { std::slice::from_raw_parts_mut(v.addr as *mut u32, values.len()) };
        out.copy_from_slice(values);
        Ok(())
    }

    /// Writes `values` (f64) to a float output, rounded to its dtype.
    pub fn write_floats(&mut self, v: &View, values: &[f64]) -> Result<()> {
        use crate::dtype::Float;
        v.expect_float()?;
        self.expect_len(v, values.len())?;
        self.claim(v)?;
        let n = values.len();
        if n == 0 {
            return Ok(());
        }
        let p = v.addr as *mut u8;
        // SAFETY: as in `write_indices`: checked, aligned, writable, and exclusive (`claim`).
        unsafe {
            match v.elem {
                Elem::F16 => fill::<f16>(std::slice::from_raw_parts_mut(p.cast(), n), values),
                Elem::BF16 => fill::<bf16>(std::slice::from_raw_parts_mut(p.cast(), n), values),
                Elem::F32 => fill::<f32>(std::slice::from_raw_parts_mut(p.cast(), n), values),
                Elem::F64 => fill::<f64>(std::slice::from_raw_parts_mut(p.cast(), n), values),
                Elem::I32 | Elem::U32 | Elem::I64 => unreachable!("expect_float rejected indices"),
            }
        }
        fn fill<T: Float>(out: &mut [T], values: &[f64]) {
            for (o, &x) in out.iter_mut().zip(values) {
                *o = T::from_f64(x);
            }
        }
        Ok(())
    }

    fn expect_len(&self, v: &View, want: usize) -> Result<()> {
        if v.numel() == want {
            Ok(())
        } else {
            Err(Error::BufferSize {
                op: v.op,
                arg: v.arg,
                expected: want,
                got: v.numel(),
            })
        }
    }
}
