//! The backend interface: the primitives a GPU backend implements ([`Gpu`]) and, per op, the
//! launch sequence written once over them (`gpu/<op>.rs`), on untyped device buffers.
//!
//! The PTX and WGSL twins of a kernel take the same parameter struct and the same buffers in the
//! same order (PTX pointer `i` is WGSL `@binding(i + 1)`; binding 0 is the parameters), so one
//! sequence of launches drives both backends. Ordinary users call the ops in the crate root;
//! this module is public so that another executor of the same kernels can run the same launch
//! sequences — the repo's PTX interpreter does, in the tests. It is not a stable interface.

#![cfg_attr(
    not(any(feature = "cuda", feature = "wgpu")),
    allow(
        dead_code,
        reason = "the tensor-level wrappers serve the crate's own GPU backends"
    )
)]

pub mod index_map;
pub mod matmul;
pub mod params;
pub mod peer_ffn;
pub mod product_key_topk;
pub mod rmsnorm;
pub mod row_sort;
pub mod score_fn;
pub mod weighted_gather;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::device::Backend;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::registry::KernelId;
use crate::tensor::Tensor;

/// How a fresh buffer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// All zero bits (accumulators, gradients of untouched rows).
    Zero,
    /// Every 32-bit word set to this pattern (the status word's "no error" = `u32::MAX`).
    Word(u32),
    /// An output every element of which a kernel must write: poisoned with a NaN when
    /// [`poison_outputs`] is on, else left as the allocator gives it.
    Output,
}

/// The NaN written into outputs when poisoning is on; chosen to be recognisable in a dump.
pub const POISON_BITS: u32 = 0x7FC0_DEAD;

static POISON: AtomicBool = AtomicBool::new(false);

/// See [`crate::testing::poison_outputs`].
pub fn poison_outputs(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// Whether [`poison_outputs`] is on (a backend fills [`Fill::Output`] buffers then).
pub fn poisoning() -> bool {
    POISON.load(Ordering::Relaxed)
}

/// A buffer argument of a launch: the `i`-th entry is PTX pointer `i`, WGSL `@binding(i + 1)`.
pub type Args<'a, B> = &'a [Option<&'a B>];

/// One kernel launch.
pub struct Launch<'a, B> {
    /// The kernel file pair.
    pub kernel: KernelId,
    /// The entry point.
    pub entry: &'static str,
    /// The table dtype, for kernels that read a table (WGSL `TABLE_DTYPE`; PTX reads it from
    /// the parameters).
    #[cfg_attr(
        not(feature = "wgpu"),
        allow(dead_code, reason = "only the WGSL override reads it")
    )]
    pub table_dtype: DType,
    /// The parameter struct's bytes (its `grid_x` already set from `grid`).
    pub params: &'a [u8],
    /// The buffers, in the kernel's order; `None` where an entry does not use one.
    pub args: Args<'a, B>,
    /// Values of WGSL pipeline-overridable constants other than `TABLE_DTYPE` (the PTX twin
    /// is written for their largest values).
    pub overrides: &'a [(&'static str, u32)],
    /// Workgroups in x and y; kernels flatten them to `wid = x + y·grid_x`.
    pub grid: (u32, u32),
    /// Threads per workgroup (the kernel's fixed size).
    pub threads: u32,
}

/// A GPU backend's primitives.
pub trait Gpu: Sized {
    /// An untyped device buffer.
    type Buffer;

    /// The backend errors name (an executor of the PTX kernels reports as CUDA).
    const BACKEND: Backend;

    /// A buffer of `bytes` bytes (rounded up to whole 32-bit words).
    fn alloc(&self, bytes: usize, fill: Fill) -> Result<Self::Buffer>;

    /// A buffer holding `bytes` (rounded up to whole 32-bit words, zero-padded).
    fn upload(&self, bytes: &[u8]) -> Result<Self::Buffer>;

    /// Reads back the first `bytes` bytes.
    fn download(&self, buf: &Self::Buffer, bytes: usize) -> Result<Vec<u8>>;

    /// Copies `bytes` bytes between buffers (offsets and size multiples of 4).
    fn copy(
        &self,
        src: &Self::Buffer,
        src_offset: usize,
        dst: &mut Self::Buffer,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()>;

    /// Runs one kernel.
    fn launch(&self, launch: &Launch<'_, Self::Buffer>) -> Result<()>;

    /// Waits until every submitted operation has finished.
    fn synchronize(&self) -> Result<()>;

    /// The largest buffer one kernel argument may be, in bytes.
    fn max_binding_bytes(&self) -> u64;

    /// Workgroup (shared) memory one workgroup may use, in bytes.
    fn max_workgroup_bytes(&self) -> u64;

    /// Whether float atomics are available (the `Atomic` backward mode).
    fn has_float_atomics(&self) -> bool;
}

/// What the crate's own backends add: tensors over their buffers.
pub(crate) trait TensorGpu: Gpu + Send + Sync + 'static {
    /// The buffer behind a tensor of this backend.
    fn buffer<'t, T: Element>(
        op: &'static str,
        arg: &'static str,
        t: &'t Tensor<T>,
    ) -> Result<&'t Self::Buffer>;

    /// A tensor owning `buf`.
    fn wrap<T: Element>(self: &Arc<Self>, shape: &[usize], buf: Self::Buffer) -> Result<Tensor<T>>;
}

/// A flattened launch of `workgroups` workgroups as `(grid_x, grid_y)`, both at most 65535 (the
/// WebGPU limit per dimension); kernels recover `wid = x + y·grid_x` and skip `wid >= count`.
pub(crate) fn grid<G: Gpu>(op: &'static str, workgroups: usize) -> Result<(u32, u32)> {
    const MAX: usize = 65_535;
    let x = workgroups.clamp(1, MAX);
    let y = workgroups.div_ceil(x).max(1);
    if y > MAX {
        return Err(Error::Unsupported {
            op,
            backend: G::BACKEND,
            reason: format!("{workgroups} workgroups exceed 65535²"),
        });
    }
    Ok((x as u32, y as u32))
}

/// Errors unless `value` fits the `u32` counters the kernels use.
pub(crate) fn fits_u32(
    op: &'static str,
    backend: Backend,
    what: &str,
    value: usize,
) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Unsupported {
        op,
        backend,
        reason: format!("{what} = {value} does not fit the kernels' 32-bit counters"),
    })
}

/// Errors unless a buffer of `bytes` fits one kernel argument on this device.
pub(crate) fn fits_binding<G: Gpu>(
    gpu: &G,
    op: &'static str,
    what: &str,
    bytes: usize,
) -> Result<()> {
    if bytes as u64 > gpu.max_binding_bytes() {
        return Err(Error::Unsupported {
            op,
            backend: G::BACKEND,
            reason: format!(
                "{what} needs {bytes} bytes, more than this device's {} bytes per storage binding",
                gpu.max_binding_bytes()
            ),
        });
    }
    Ok(())
}

/// The table dtype a kernel can read: f32, f16, bf16.
pub(crate) fn table_dtype<G: Gpu>(op: &'static str, dtype: DType) -> Result<u32> {
    match dtype {
        DType::F32 => Ok(0),
        DType::F16 => Ok(1),
        DType::BF16 => Ok(2),
        other => Err(Error::UnsupportedDType {
            op,
            backend: G::BACKEND,
            dtype: other,
        }),
    }
}

/// A fresh status word (`u32::MAX`: no bad index yet).
pub(crate) fn status_word<G: Gpu>(gpu: &G) -> Result<G::Buffer> {
    gpu.alloc(4, Fill::Word(u32::MAX))
}

/// Turns the status word into [`Error::IndexOutOfRange`] when a kernel lowered it to the flat
/// position of a bad index, reading that index back from `indices`.
pub(crate) fn check_status<G: Gpu>(
    gpu: &G,
    status: &G::Buffer,
    op: &'static str,
    arg: &'static str,
    indices: &G::Buffer,
    bound: u64,
) -> Result<()> {
    let word = u32::from_le_bytes(first_word(&gpu.download(status, 4)?));
    if word == u32::MAX {
        return Ok(());
    }
    let position = word as usize;
    let mut scratch = gpu.alloc(4, Fill::Zero)?;
    gpu.copy(indices, position * 4, &mut scratch, 0, 4)?;
    let index = u32::from_le_bytes(first_word(&gpu.download(&scratch, 4)?));
    Err(Error::IndexOutOfRange {
        op,
        arg,
        position,
        index: u64::from(index),
        bound,
    })
}

fn first_word(bytes: &[u8]) -> [u8; 4] {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[..4]);
    w
}
