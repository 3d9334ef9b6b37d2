//! The C ABI (cargo feature `abi`, on by default): every op's forward and backward as an
//! `extern "C"` function over DLPack tensors, for PyTorch, JAX, C and anything else that speaks
//! DLPack. `include/ultramem.h` declares it; `python/` wraps it as `torch.ops.ultramem.*`.
//!
//! # Conventions
//! - Tensors are DLPack `DLTensor*` ([`dlpack::DLTensor`]), row-major contiguous (null strides
//!   or the contiguous strides; a size-1 dimension may have any stride), aligned to their
//!   element. Shapes are those of the Rust API ([`crate::WeightedGatherArgs`] and friends).
//! - Indices are `int32`, `uint32` or `int64` on either path (spec §I.6.1; on CUDA `int64` is
//!   narrowed to the kernels' u32 on the device, each value checked, and `int64` outputs
//!   widened from it); a negative index is [`ULTRAMEM_ERR_INDEX_OUT_OF_RANGE`] naming it.
//!   Values are `float16`, `bfloat16`, `float32` or `float64`, each
//!   input in any of them (an op's small operands are widened to f64 exactly; tables are read in
//!   their own dtype). Outputs are allocated by the caller, in any float dtype; the result is
//!   computed in f64 and rounded once to it. `float64` in and out gives the f64 reference
//!   itself, which is what `torch.autograd.gradcheck` needs.
//! - Every output is checked for its shape and for overlapping any other tensor of the call
//!   (an output that aliases an input is an error, not a silent wrong answer).
//! - Host tensors (`kDLCPU`, `kDLCUDAHost`) run the CPU reference. CUDA tensors (`kDLCUDA`,
//!   all of a call's on one device) run the crate's PTX kernels ([`device`]) over the
//!   caller's memory, ordered on the caller's `stream` (null: the legacy default stream) by
//!   events, with no copy of the inputs; results are copied into the caller's outputs. There,
//!   small operands and outputs are float32 and tables float32/float16/bfloat16, backward
//!   passes are deterministic, and each call waits for its kernels' status word so a bad index
//!   is a status code (so it cannot be captured in a CUDA graph yet). The CUDA path runs in the
//!   repo's PTX interpreter in CI; it has not yet run on a real GPU.
//! - Every function returns a status code ([`ULTRAMEM_OK`] = 0, or an `ULTRAMEM_ERR_*`) and
//!   never unwinds: a panic inside is caught and reported as [`ULTRAMEM_ERR_INTERNAL`]. The
//!   message of the last failure on the calling thread is [`ultramem_last_error`].
//! - Outputs are unspecified after a failure (an output may be partly written).

// Without the CUDA backend the GPU path's closures are compiled out, leaving their captures
// (the stream, sizes read for the GPU path) unused.
#![cfg_attr(
    not(feature = "cuda"),
    allow(unused_variables, reason = "the CUDA path is compiled out")
)]

pub mod device;
pub mod dlpack;
mod shapes;
pub mod view;

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use dlpack::{with_floats, Borrows, DLTensor, Floats};
#[cfg(feature = "cuda")]
use view::View;

use crate::error::{Error, Result};
use crate::reference;
use crate::{Activation, IndexMapConfig, ScoreFn};

/// The version of this ABI; bumped on any change to a signature or a convention.
pub const ULTRAMEM_ABI_VERSION: i32 = 3;

/// Success.
pub const ULTRAMEM_OK: i32 = 0;
/// A tensor's shape, or the sizes they name, are wrong ([`Error::ShapeMismatch`],
/// [`Error::ZeroSized`], [`Error::BufferSize`], [`Error::SizeOverflow`]).
pub const ULTRAMEM_ERR_SHAPE: i32 = 1;
/// A bad argument: a null pointer, a dtype, device, stride or alignment the op does not take,
/// aliasing outputs, `k` larger than the candidates ([`Error::InvalidArgument`],
/// [`Error::TooManySelected`], [`Error::DeviceMismatch`]).
pub const ULTRAMEM_ERR_INVALID_ARGUMENT: i32 = 2;
/// An index past its table ([`Error::IndexOutOfRange`]).
pub const ULTRAMEM_ERR_INDEX_OUT_OF_RANGE: i32 = 3;
/// A NaN or infinity where the op needs finite values ([`Error::NonFinite`]).
pub const ULTRAMEM_ERR_NON_FINITE: i32 = 4;
/// Valid, but not supported here: a dtype the GPU kernels do not take, no CUDA driver
/// ([`Error::Unsupported`], [`Error::UnsupportedDType`], [`Error::BackendNotCompiled`],
/// [`Error::BackendUnavailable`]).
pub const ULTRAMEM_ERR_UNSUPPORTED: i32 = 5;
/// The GPU runtime failed ([`Error::Backend`]).
pub const ULTRAMEM_ERR_BACKEND: i32 = 6;
/// A bug in this crate (a caught panic); please report it with the message.
pub const ULTRAMEM_ERR_INTERNAL: i32 = 7;
/// A host allocation failed ([`Error::OutOfMemory`]); nothing was written. Since ABI version 2.
pub const ULTRAMEM_ERR_OUT_OF_MEMORY: i32 = 8;

fn status_of(e: &Error) -> i32 {
    match e {
        Error::ShapeMismatch { .. }
        | Error::ZeroSized { .. }
        | Error::BufferSize { .. }
        | Error::SizeOverflow { .. } => ULTRAMEM_ERR_SHAPE,
        Error::InvalidArgument { .. }
        | Error::TooManySelected { .. }
        | Error::DeviceMismatch { .. } => ULTRAMEM_ERR_INVALID_ARGUMENT,
        Error::IndexOutOfRange { .. } => ULTRAMEM_ERR_INDEX_OUT_OF_RANGE,
        Error::NonFinite { .. } => ULTRAMEM_ERR_NON_FINITE,
        Error::Unsupported { .. }
        | Error::UnsupportedDType { .. }
        | Error::BackendNotCompiled { .. }
        | Error::BackendUnavailable { .. } => ULTRAMEM_ERR_UNSUPPORTED,
        Error::Backend { .. } => ULTRAMEM_ERR_BACKEND,
        Error::OutOfMemory { .. } => ULTRAMEM_ERR_OUT_OF_MEMORY,
        // The first failure decides the status; the message lists them all.
        Error::Several { errors } => errors.first().map_or(ULTRAMEM_ERR_INTERNAL, status_of),
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds NUL in practice; if one did, cut it there rather than lose it all.
    let text = message.split('\0').next().unwrap_or_default();
    let text = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs one ABI call: its status, with the message kept for [`ultramem_last_error`].
fn call(body: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            ULTRAMEM_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            status_of(&e)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            set_last_error(&format!(
                "internal error in ultramem (please report): {what}"
            ));
            ULTRAMEM_ERR_INTERNAL
        }
    }
}

/// Reads every descriptor of a call (see [`view::View::read`] for the contract on each pointer).
macro_rules! views {
    ($op:expr; $($name:ident),+ $(,)?) => {
        $(
            // SAFETY: the exported function's contract (`ultramem.h`, and its `# Safety`) is
            // that each tensor pointer is null or a valid `DLTensor` for this call.
            let $name = unsafe { dlpack::read($op, stringify!($name), $name) }?;
        )+
    };
}

/// Runs `body` over the CUDA memory of `inputs` then `outputs` (see
/// `CudaDevice::with_foreign` for the stream ordering).
#[cfg(feature = "cuda")]
fn cuda_call(
    ordinal: i32,
    stream: *mut c_void,
    inputs: &[&View],
    outputs: &[&View],
    body: impl FnOnce(
        &crate::cuda_backend::CudaDevice,
        &[cudarc::driver::CudaSlice<u8>],
        &mut [cudarc::driver::CudaSlice<u8>],
    ) -> Result<()>,
) -> Result<()> {
    let ordinal = usize::try_from(ordinal).map_err(|_| Error::InvalidArgument {
        op: inputs.first().map_or("abi", |v| v.op),
        arg: "device_id",
        reason: format!("CUDA device {ordinal}"),
    })?;
    let dev = crate::cuda_backend::abi_device(ordinal)?;
    let regions: Vec<(u64, usize)> = inputs
        .iter()
        .chain(outputs)
        .map(|v| v.device_region())
        .collect();
    // SAFETY: each region is the memory of a DLPack tensor on CUDA device `ordinal`, live and
    // not used by others for this call (the ABI's contract, `ultramem.h`), and `stream` is the
    // caller's stream on it or null.
    unsafe {
        dev.with_foreign(stream, &regions, |gpu, slices| {
            let (ins, outs) = slices.split_at_mut(inputs.len());
            body(gpu, ins, outs)
        })
    }
}

/// When the call's tensors are on a CUDA device, runs the GPU path and returns from the
/// enclosing closure; host tensors fall through to the CPU path.
macro_rules! on_cuda {
    ($stream:expr, [$($i:ident),*], [$($o:ident),*], |$gpu:ident, [$($ib:ident),*], [$($ob:ident),*]| $body:expr) => {
        if let Some(_ordinal) = view::placement(&[$(&$i,)* $(&$o,)*])? {
            view::check_disjoint(&[$(&$i),*], &[$(&$o),*])?;
            #[cfg(feature = "cuda")]
            return cuda_call(_ordinal, $stream, &[$(&$i),*], &[$(&$o),*], |$gpu, ins, outs| {
                let [$($ib),*] = ins else { unreachable!("one buffer per input") };
                let [$($ob),*] = outs else { unreachable!("one buffer per output") };
                $body
            });
            #[cfg(not(feature = "cuda"))]
            return Err(Error::BackendNotCompiled {
                backend: crate::Backend::Cuda,
                feature: "cuda",
            });
        }
    };
}

/// `k1` from the C convention: `<= 0` means the op's default.
fn stage1(k1: i64) -> Option<usize> {
    usize::try_from(k1).ok().filter(|&k| k > 0)
}

fn count(op: &'static str, arg: &'static str, v: i64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::InvalidArgument {
        op,
        arg,
        reason: format!("{v}; it must be >= 0"),
    })
}

fn activation_of(op: &'static str, code: i32) -> Result<Activation> {
    Ok(match code {
        0 => Activation::Identity,
        1 => Activation::Relu,
        2 => Activation::Gelu,
        3 => Activation::Silu,
        _ => {
            return Err(Error::InvalidArgument {
                op,
                arg: "activation",
                reason: format!("code {code}; 0 identity, 1 relu, 2 gelu, 3 silu"),
            })
        }
    })
}

fn score_function(code: i32) -> Result<ScoreFn> {
    Ok(match code {
        0 => ScoreFn::Raw,
        1 => ScoreFn::Softmax,
        2 => ScoreFn::Relu,
        3 => ScoreFn::Sigmoid,
        _ => {
            return Err(Error::InvalidArgument {
                op: "score_fn",
                arg: "func",
                reason: format!("code {code}; 0 raw, 1 softmax, 2 relu, 3 sigmoid"),
            })
        }
    })
}

/// The version of the ABI this library implements ([`ULTRAMEM_ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn ultramem_abi_version() -> i32 {
    ULTRAMEM_ABI_VERSION
}

/// The message of the last failed call on this thread ("" after a success). The pointer stays
/// valid until the next ABI call on this thread.
#[no_mangle]
pub extern "C" fn ultramem_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Weighted gather forward: `out[T, Dv]` from `rows[T, M]`, `weights[T, M, Cn]`,
/// `table[N, Dv]` ([`crate::weighted_gather`]).
///
/// # Safety
/// Each tensor pointer is null or points to a valid `DLTensor` whose memory is valid for the
/// call (readable for inputs, writable for outputs) and not used by another thread meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ultramem_weighted_gather_forward(
    rows: *const DLTensor,
    weights: *const DLTensor,
    table: *const DLTensor,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "weighted_gather";
    call(|| {
        let out = out.cast_const();
        views!(OP; rows, weights, table, out);
        on_cuda!(
            stream,
            [rows, weights, table],
            [out],
            |gpu, [r, w, t], [o]| {
                device::weighted_gather_forward(gpu, [&rows, &weights, &table, &out], [r, w, t], o)
            }
        );
        let d = shapes::weighted_gather_forward([&rows, &weights, &table, &out])?;
        let mut b = Borrows::default();
        let r = b.indices(&rows, d.table_rows as u64)?;
        let r = &*r;
        let w = b.floats_f64(&weights)?;
        let y = with_floats!(b.floats(&table)?, t => reference::weighted_gather::forward(&d, r, &w, t))?;
        b.write_floats(&out, &y)
    })
}

/// Weighted gather backward: `dweights[T, M, Cn]` and `dtable[N, Dv]` (the whole table,
/// zero where no slot read) from the forward's inputs and `dout[T, Dv]`.
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
pub unsafe extern "C" fn ultramem_weighted_gather_backward(
    rows: *const DLTensor,
    weights: *const DLTensor,
    table: *const DLTensor,
    dout: *const DLTensor,
    dweights: *mut DLTensor,
    dtable: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "weighted_gather";
    call(|| {
        let (dweights, dtable) = (dweights.cast_const(), dtable.cast_const());
        views!(OP; rows, weights, table, dout, dweights, dtable);
        on_cuda!(
            stream,
            [rows, weights, table, dout],
            [dweights, dtable],
            |gpu, [r, w, t, g], [dw, dt]| {
                let m = [&rows, &weights, &table, &dout, &dweights, &dtable];
                device::weighted_gather_backward(gpu, m, [r, w, t, g], [dw, dt])
            }
        );
        let d =
            shapes::weighted_gather_backward([&rows, &weights, &table, &dout, &dweights, &dtable])?;
        let mut b = Borrows::default();
        let r = b.indices(&rows, d.table_rows as u64)?;
        let r = &*r;
        let w = b.floats_f64(&weights)?;
        let g = b.floats_f64(&dout)?;
        let (dw, dt) = with_floats!(b.floats(&table)?, t => reference::weighted_gather::backward(&d, r, &w, t, &g))?;
        b.write_floats(&dweights, &dw)?;
        b.write_floats(&dtable, &dt)
    })
}

/// Runs `$body` with `$d` and `$u` bound to two same-typed table slices.
macro_rules! with_tables {
    ($pair:expr, ($d:ident, $u:ident) => $body:expr) => {
        match $pair {
            (Floats::F16($d), Floats::F16($u)) => $body,
            (Floats::BF16($d), Floats::BF16($u)) => $body,
            (Floats::F32($d), Floats::F32($u)) => $body,
            (Floats::F64($d), Floats::F64($u)) => $body,
            // Empty tables are typed F32 whatever their dtype; N = 0 is rejected by the dims.
            _ => Err(Error::InvalidArgument {
                op: "peer_ffn",
                arg: "down",
                reason: "an empty table".into(),
            }),
        }
    };
}

/// PEER per-slot FFN forward: `out[T, Dv]` from `rows[T, M]`, `scores[T, M, Cn]`, `z[T, Dp]`,
/// `down[N, Dp]`, `up[N, Dv]` and an activation code (0 identity, 1 relu, 2 gelu, 3 silu)
/// ([`crate::peer_ffn`]).
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
pub unsafe extern "C" fn ultramem_peer_ffn_forward(
    rows: *const DLTensor,
    scores: *const DLTensor,
    z: *const DLTensor,
    down: *const DLTensor,
    up: *const DLTensor,
    activation: i32,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "peer_ffn";
    call(|| {
        let out = out.cast_const();
        views!(OP; rows, scores, z, down, up, out);
        let act = activation_of(OP, activation)?;
        on_cuda!(
            stream,
            [rows, scores, z, down, up],
            [out],
            |gpu, [r, s, zb, dn, u], [o]| {
                let m = [&rows, &scores, &z, &down, &up, &out];
                device::peer_ffn_forward(gpu, m, act, [r, s, zb, dn, u], o)
            }
        );
        let d = shapes::peer_ffn_forward([&rows, &scores, &z, &down, &up, &out])?;
        let mut b = Borrows::default();
        let r = b.indices(&rows, d.table_rows as u64)?;
        let r = &*r;
        let s = b.floats_f64(&scores)?;
        let zz = b.floats_f64(&z)?;
        let y = with_tables!((b.floats(&down)?, b.floats(&up)?), (dn, upt) => reference::peer_ffn::forward(&d, act, r, &s, &zz, dn, upt))?;
        b.write_floats(&out, &y)
    })
}

/// PEER per-slot FFN backward: `dz[T, Dp]`, `dscores[T, M, Cn]`, `ddown[N, Dp]`, `dup[N, Dv]`
/// from the forward's inputs and `dout[T, Dv]`.
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
#[allow(
    clippy::too_many_arguments,
    reason = "one pointer per tensor of the op"
)]
pub unsafe extern "C" fn ultramem_peer_ffn_backward(
    rows: *const DLTensor,
    scores: *const DLTensor,
    z: *const DLTensor,
    down: *const DLTensor,
    up: *const DLTensor,
    activation: i32,
    dout: *const DLTensor,
    dz: *mut DLTensor,
    dscores: *mut DLTensor,
    ddown: *mut DLTensor,
    dup: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "peer_ffn";
    call(|| {
        let (dz, dscores, ddown, dup) = (
            dz.cast_const(),
            dscores.cast_const(),
            ddown.cast_const(),
            dup.cast_const(),
        );
        views!(OP; rows, scores, z, down, up, dout, dz, dscores, ddown, dup);
        let act = activation_of(OP, activation)?;
        on_cuda!(
            stream,
            [rows, scores, z, down, up, dout],
            [dz, dscores, ddown, dup],
            |gpu, [r, s, zb, dn, u, g], [o1, o2, o3, o4]| {
                let m = [
                    &rows, &scores, &z, &down, &up, &dout, &dz, &dscores, &ddown, &dup,
                ];
                device::peer_ffn_backward(gpu, m, act, [r, s, zb, dn, u, g], [o1, o2, o3, o4])
            }
        );
        let d = shapes::peer_ffn_backward([
            &rows, &scores, &z, &down, &up, &dout, &dz, &dscores, &ddown, &dup,
        ])?;
        let mut b = Borrows::default();
        let r = b.indices(&rows, d.table_rows as u64)?;
        let r = &*r;
        let s = b.floats_f64(&scores)?;
        let zz = b.floats_f64(&z)?;
        let g = b.floats_f64(&dout)?;
        let grads = with_tables!((b.floats(&down)?, b.floats(&up)?), (dn, upt) => reference::peer_ffn::backward(&d, act, r, &s, &zz, dn, upt, &g))?;
        b.write_floats(&dz, &grads.dz)?;
        b.write_floats(&dscores, &grads.dscores)?;
        b.write_floats(&ddown, &grads.ddown)?;
        b.write_floats(&dup, &grads.dup)
    })
}

/// Additive product-key top-k forward: `idx[T, H, k]` (int32/uint32, flat `i·n + j`, best
/// first) and `score[T, H, k]` from `q[T, H, Dk]` and `keys[H, 2, n, Dk/2]`; `k1 <= 0` means
/// `k1 = k` ([`crate::additive_topk`]).
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
pub unsafe extern "C" fn ultramem_additive_topk_forward(
    q: *const DLTensor,
    keys: *const DLTensor,
    k: i64,
    k1: i64,
    idx: *mut DLTensor,
    score: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "additive_topk";
    call(|| {
        let (idx, score) = (idx.cast_const(), score.cast_const());
        views!(OP; q, keys, idx, score);
        let top = count(OP, "k", k)?;
        on_cuda!(
            stream,
            [q, keys],
            [idx, score],
            |gpu, [qb, kb], [ib, sb]| {
                let m = [&q, &keys, &idx, &score];
                device::additive_topk_forward(gpu, m, top, stage1(k1), [qb, kb], [ib, sb])
            }
        );
        let d = shapes::additive_topk_forward([&q, &keys, &idx, &score], top, stage1(k1))?;
        let mut b = Borrows::default();
        let qq = b.floats_f64(&q)?;
        let (i, s) =
            with_floats!(b.floats(&keys)?, kk => reference::additive_topk::forward(&d, &qq, kk))?;
        b.write_indices(&idx, &i)?;
        b.write_floats(&score, &s)
    })
}

/// Additive product-key top-k backward: `dq[T, H, Dk]` and `dkeys[H, 2, n, Dk/2]` from `q`,
/// `keys`, the forward's `idx[T, H, k]` and `dscore[T, H, k]`.
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
pub unsafe extern "C" fn ultramem_additive_topk_backward(
    q: *const DLTensor,
    keys: *const DLTensor,
    idx: *const DLTensor,
    dscore: *const DLTensor,
    dq: *mut DLTensor,
    dkeys: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "additive_topk";
    call(|| {
        let (dq, dkeys) = (dq.cast_const(), dkeys.cast_const());
        views!(OP; q, keys, idx, dscore, dq, dkeys);
        on_cuda!(
            stream,
            [q, keys, idx, dscore],
            [dq, dkeys],
            |gpu, [qb, kb, ib, gb], [o1, o2]| {
                let m = [&q, &keys, &idx, &dscore, &dq, &dkeys];
                device::additive_topk_backward(gpu, m, [qb, kb, ib, gb], [o1, o2])
            }
        );
        let d = shapes::additive_topk_backward([&q, &keys, &idx, &dscore, &dq, &dkeys])?;
        let mut b = Borrows::default();
        let qq = b.floats_f64(&q)?;
        let i = b.indices(&idx, (d.n as u64).pow(2))?;
        let i = &*i;
        let g = b.floats_f64(&dscore)?;
        let (gq, gk) = with_floats!(b.floats(&keys)?, kk => reference::additive_topk::backward(&d, &qq, kk, i, &g))?;
        b.write_floats(&dq, &gq)?;
        b.write_floats(&dkeys, &gk)
    })
}

/// Tucker product-key top-k forward: `idx[T, H, m]` and per-core `score[T, H, m, Cn]` from
/// `q[T, H, 2, R, Dk]`, `keys[H, 2, R, n, Dk]`, `cores[H, Cn, R, R]` and the proxy
/// `u[H, R]`, `v[H, R]`; `k1 <= 0` means the default stage-1 width ([`crate::tucker_topk`]).
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
#[allow(
    clippy::too_many_arguments,
    reason = "one pointer per tensor of the op"
)]
pub unsafe extern "C" fn ultramem_tucker_topk_forward(
    q: *const DLTensor,
    keys: *const DLTensor,
    cores: *const DLTensor,
    u: *const DLTensor,
    v: *const DLTensor,
    m: i64,
    k1: i64,
    idx: *mut DLTensor,
    score: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "tucker_topk";
    call(|| {
        let (idx, score) = (idx.cast_const(), score.cast_const());
        views!(OP; q, keys, cores, u, v, idx, score);
        let top = count(OP, "m", m)?;
        on_cuda!(
            stream,
            [q, keys, cores, u, v],
            [idx, score],
            |gpu, [qb, kb, cb, ub, vb], [ib, sb]| {
                let metas = [&q, &keys, &cores, &u, &v, &idx, &score];
                device::tucker_topk_forward(
                    gpu,
                    metas,
                    top,
                    stage1(k1),
                    [qb, kb, cb, ub, vb],
                    [ib, sb],
                )
            }
        );
        let d = shapes::tucker_topk_forward(
            [&q, &keys, &cores, &u, &v, &idx, &score],
            top,
            stage1(k1),
        )?;
        let mut b = Borrows::default();
        let qq = b.floats_f64(&q)?;
        let cc = b.floats_f64(&cores)?;
        let (uu, vv) = (b.floats_f64(&u)?, b.floats_f64(&v)?);
        let (i, s) = with_floats!(b.floats(&keys)?, kk => reference::tucker_topk::forward(&d, &qq, kk, &cc, &uu, &vv))?;
        b.write_indices(&idx, &i)?;
        b.write_floats(&score, &s)
    })
}

/// Tucker product-key top-k backward: `dq`, `dkeys`, `dcores` (shapes of `q`, `keys`,
/// `cores`) from the forward's inputs, its `idx[T, H, m]` and `dscore[T, H, m, Cn]`. The proxy
/// `u, v` only chose the candidates and carries no gradient.
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
#[allow(
    clippy::too_many_arguments,
    reason = "one pointer per tensor of the op"
)]
pub unsafe extern "C" fn ultramem_tucker_topk_backward(
    q: *const DLTensor,
    keys: *const DLTensor,
    cores: *const DLTensor,
    u: *const DLTensor,
    v: *const DLTensor,
    idx: *const DLTensor,
    dscore: *const DLTensor,
    dq: *mut DLTensor,
    dkeys: *mut DLTensor,
    dcores: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "tucker_topk";
    call(|| {
        let (dq, dkeys, dcores) = (dq.cast_const(), dkeys.cast_const(), dcores.cast_const());
        views!(OP; q, keys, cores, u, v, idx, dscore, dq, dkeys, dcores);
        on_cuda!(
            stream,
            [q, keys, cores, u, v, idx, dscore],
            [dq, dkeys, dcores],
            |gpu, [qb, kb, cb, ub, vb, ib, gb], [o1, o2, o3]| {
                let m = [
                    &q, &keys, &cores, &u, &v, &idx, &dscore, &dq, &dkeys, &dcores,
                ];
                device::tucker_topk_backward(gpu, m, [qb, kb, cb, ub, vb, ib, gb], [o1, o2, o3])
            }
        );
        let d = shapes::tucker_topk_backward([
            &q, &keys, &cores, &u, &v, &idx, &dscore, &dq, &dkeys, &dcores,
        ])?;
        let mut b = Borrows::default();
        let qq = b.floats_f64(&q)?;
        let cc = b.floats_f64(&cores)?;
        // The proxy is checked (shape, dtype, place) like every input, though unused here.
        b.floats(&u)?;
        b.floats(&v)?;
        let i = b.indices(&idx, (d.n as u64).pow(2))?;
        let i = &*i;
        let g = b.floats_f64(&dscore)?;
        let grads = with_floats!(b.floats(&keys)?, kk => reference::tucker_topk::backward(&d, &qq, kk, &cc, i, &g))?;
        b.write_floats(&dq, &grads.dq)?;
        b.write_floats(&dkeys, &grads.dkeys)?;
        b.write_floats(&dcores, &grads.dcores)
    })
}

/// Index map: `out` (shape of `idx`) = `(ν' mod rows_per_layer + offset) mod total_rows` with
/// `ν' = shuffle[ν]` when `shuffle` (rank 1) is not null, else `ν` ([`crate::index_map`]).
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`]; `shuffle` may be null.
#[no_mangle]
pub unsafe extern "C" fn ultramem_index_map_forward(
    idx: *const DLTensor,
    shuffle: *const DLTensor,
    rows_per_layer: u64,
    offset: u64,
    total_rows: u64,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "index_map";
    call(|| {
        let out = out.cast_const();
        views!(OP; idx, out);
        let shuffle = if shuffle.is_null() {
            None
        } else {
            views!(OP; shuffle);
            Some(shuffle)
        };
        let map = IndexMapConfig {
            rows_per_layer,
            offset,
            total_rows,
        };
        let mut inputs = vec![&idx];
        inputs.extend(shuffle.as_ref());
        let mut all = inputs.clone();
        all.push(&out);
        if let Some(_ordinal) = view::placement(&all)? {
            view::check_disjoint(&inputs, &[&out])?;
            #[cfg(feature = "cuda")]
            return cuda_call(_ordinal, stream, &inputs, &[&out], |gpu, ins, outs| {
                let table = shuffle.as_ref().zip(ins.get(1));
                device::index_map_forward(gpu, [&idx, &out], table, map, &ins[0], &mut outs[0])
            });
            #[cfg(not(feature = "cuda"))]
            return Err(Error::BackendNotCompiled {
                backend: crate::Backend::Cuda,
                feature: "cuda",
            });
        }
        let d = shapes::index_map_forward([&idx, &out], shuffle.as_ref(), map)?;
        let mut b = Borrows::default();
        let i = b.indices(&idx, d.shuffle_len.map_or(1 << 32, |s| s as u64))?;
        let i = &*i;
        let table = match &shuffle {
            Some(s) => Some(b.indices(s, 1 << 32)?),
            None => None,
        };
        let rows = reference::index_map::forward(&d, i, table.as_deref())?;
        b.write_indices(&out, &rows)
    })
}

/// Score function forward: `out` (shape of `score`, `[T, H, k]` or `[T, H, k, Cn]`) with a
/// function code (0 raw, 1 softmax over each head's `k`, 2 relu, 3 sigmoid)
/// ([`crate::score_fn`]).
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
pub unsafe extern "C" fn ultramem_score_fn_forward(
    score: *const DLTensor,
    func: i32,
    out: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "score_fn";
    call(|| {
        let out = out.cast_const();
        views!(OP; score, out);
        let f = score_function(func)?;
        on_cuda!(stream, [score], [out], |gpu, [sb], [o]| {
            device::score_fn_run(gpu, [&score, &out], f, sb, None, o)
        });
        let d = shapes::score_fn(&score, &[&out])?;
        let mut b = Borrows::default();
        let y = with_floats!(b.floats(&score)?, s => reference::score_fn::forward(&d, f, s))?;
        b.write_floats(&out, &y)
    })
}

/// Score function backward: `dscore` (shape of `score`) from the forward's input and `dout`.
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`].
#[no_mangle]
pub unsafe extern "C" fn ultramem_score_fn_backward(
    score: *const DLTensor,
    func: i32,
    dout: *const DLTensor,
    dscore: *mut DLTensor,
    stream: *mut c_void,
) -> i32 {
    const OP: &str = "score_fn";
    call(|| {
        let dscore = dscore.cast_const();
        views!(OP; score, dout, dscore);
        let f = score_function(func)?;
        on_cuda!(stream, [score, dout], [dscore], |gpu, [sb, gb], [o]| {
            device::score_fn_run(gpu, [&score, &dscore], f, sb, Some((&dout, gb)), o)
        });
        let d = shapes::score_fn(&score, &[&dout, &dscore])?;
        let mut b = Borrows::default();
        let g = b.floats_f64(&dout)?;
        let y = with_floats!(b.floats(&score)?, s => reference::score_fn::backward(&d, f, s, &g))?;
        b.write_floats(&dscore, &y)
    })
}

/// The Tucker proxy `(u[H, R], v[H, R])` from `cores[H, Cn, R, R]`: the top singular pair of
/// each head's `Σ_c C_c`, with the sign closest to `prev_u`, `prev_v` when both are given (may
/// be null) ([`crate::layer::tucker_proxy::tucker_proxy`]). A host computation, once per
/// optimiser step.
///
/// # Safety
/// As [`ultramem_weighted_gather_forward`]; `prev_u` and `prev_v` may be null.
#[no_mangle]
pub unsafe extern "C" fn ultramem_tucker_proxy(
    cores: *const DLTensor,
    prev_u: *const DLTensor,
    prev_v: *const DLTensor,
    u: *mut DLTensor,
    v: *mut DLTensor,
) -> i32 {
    const OP: &str = "tucker_proxy";
    call(|| {
        let (u, v) = (u.cast_const(), v.cast_const());
        views!(OP; cores, u, v);
        let (heads, n_cores, rank) = shapes::tucker_proxy([&cores, &u, &v], None)?;
        let mut b = Borrows::default();
        let prev = match (prev_u.is_null(), prev_v.is_null()) {
            (true, true) => None,
            (false, false) => {
                views!(OP; prev_u, prev_v);
                shapes::tucker_proxy([&cores, &u, &v], Some([&prev_u, &prev_v]))?;
                Some((b.floats_f64(&prev_u)?, b.floats_f64(&prev_v)?))
            }
            _ => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    arg: "prev_v",
                    reason: "give both of prev_u and prev_v, or neither".into(),
                })
            }
        };
        let prev = prev.as_ref().map(|(pu, pv)| (&pu[..], &pv[..]));
        let (pu, pv) = with_floats!(b.floats(&cores)?, c => crate::layer::tucker_proxy::tucker_proxy(c, heads, n_cores, rank, prev))?;
        b.write_floats(&u, &pu)?;
        b.write_floats(&v, &pv)
    })
}
