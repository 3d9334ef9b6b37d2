//! The backend interface: the primitives a GPU backend implements ([`Gpu`]) and, per op, the
//! launch sequence written once over them (`gpu/<op>.rs`), on untyped device buffers. Nothing
//! here knows about tensors or devices: `ops/` wraps these sequences for [`crate::Tensor`]s.
//!
//! The PTX and WGSL twins of a kernel take the same parameter struct and the same buffers in the
//! same order (PTX pointer `i` is WGSL `@binding(i + 1)`; binding 0 is the parameters), so one
//! sequence of launches drives both backends. Ordinary users call the ops in the crate root;
//! this module is public so that another executor of the same kernels can run the same launch
//! sequences, and the C ABI runs them over a caller's memory. It is not a stable interface.
//!
//! A backend that is not a set of our kernels fits here too: a library call for one product
//! (cuBLAS for the dense matmul) is a primitive the trait can grow with a default that launches
//! our kernel, and a graph-capturing device is a [`Gpu`] whose `launch` records instead of
//! running.

pub mod index_cast;
pub mod index_map;
pub mod matmul;
pub mod moe_ffn;
pub mod params;
pub mod peer_ffn;
pub mod product_key_topk;
pub mod rmsnorm;
pub mod row_sort;
pub mod score_fn;
pub mod weighted_gather;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::registry::KernelId;

/// How a fresh buffer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// All zero bits (accumulators, gradients of untouched rows).
    Zero,
    /// Every 32-bit word set to this pattern.
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

    /// Whether `buf` starts at a device address that is a multiple of `bytes` (at most 256),
    /// as vector loads need. Buffers a backend allocates are (the default); the CUDA backend
    /// checks, since the C ABI hands it the caller's memory.
    fn aligned(&self, buf: &Self::Buffer, bytes: usize) -> bool {
        let _ = (buf, bytes);
        true
    }

    /// Workgroup (shared) memory one workgroup may use, in bytes.
    fn max_workgroup_bytes(&self) -> u64;

    /// Whether float atomics are available (the `Atomic` backward mode).
    fn has_float_atomics(&self) -> bool;

    /// The device's check mode, its queued checks and its count of host synchronisations.
    fn sync_state(&self) -> &SyncState<Self::Buffer>;

    /// A one-line description of the device (name, backend, kind) for messages.
    fn describe(&self) -> String;
}

/// Turns an op's status words (and, where word 0 holds a position into an index buffer, the
/// index found there, as the caller's value: u32 entries zero-extended, int64 ones as they are)
/// into its error.
pub type Decode = Box<dyn Fn(&[u32], Option<i64>) -> Result<()> + Send + Sync>;

/// The index buffer a status word's position points into: `len` entries of `width` bytes (4:
/// u32, 8: int64).
pub(crate) struct IndexSource<'a, B> {
    pub buf: &'a B,
    pub len: usize,
    pub width: usize,
}

impl<'a, B> IndexSource<'a, B> {
    /// `len` u32 entries.
    pub fn u32(buf: &'a B, len: usize) -> Self {
        Self { buf, len, width: 4 }
    }
}

/// A status check an op queued instead of reading it back (the device defers checks): the
/// status words, a copy of the index buffer word 0 points into (with its entry width), and how
/// to decode them.
pub struct PendingCheck<B> {
    status: B,
    words: usize,
    indices: Option<(B, usize)>,
    decode: Decode,
}

/// The position a status word records: kernels store `!position` with an atomic max, so the
/// lowest position wins and a zeroed word means no error.
pub(crate) fn recorded(word: u32) -> Option<usize> {
    (word != 0).then_some(!word as usize)
}

/// Reports an op's `words` status words: at once, or queued when the device defers checks.
/// `indices` is the buffer that word 0's position indexes, if any; a deferred check keeps a
/// device copy of it, so the caller may drop or reuse the original.
pub(crate) fn report<G: Gpu>(
    gpu: &G,
    status: G::Buffer,
    words: usize,
    indices: Option<IndexSource<'_, G::Buffer>>,
    decode: Decode,
) -> Result<()> {
    if !gpu.sync_state().deferring() {
        let source = indices.map(|s| (s.buf, s.width));
        return resolve(gpu, &status, words, source, &decode);
    }
    let indices = match indices {
        Some(s) => {
            let bytes = s.len * s.width;
            let mut copy = gpu.alloc(bytes, Fill::Zero)?;
            if bytes > 0 {
                gpu.copy(s.buf, 0, &mut copy, 0, bytes)?;
            }
            Some((copy, s.width))
        }
        None => None,
    };
    gpu.sync_state().defer(PendingCheck {
        status,
        words,
        indices,
        decode,
    });
    Ok(())
}

fn resolve<G: Gpu>(
    gpu: &G,
    status: &G::Buffer,
    words: usize,
    indices: Option<(&G::Buffer, usize)>,
    decode: &Decode,
) -> Result<()> {
    let w = words_of(&gpu.download(status, words * 4)?);
    decode_words(gpu, &w, indices, decode)
}

fn words_of(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(first_word(b)))
        .collect()
}

/// Decodes read-back status words, reading the bad index itself (an entry of `width` bytes)
/// when word 0 recorded one.
fn decode_words<G: Gpu>(
    gpu: &G,
    w: &[u32],
    indices: Option<(&G::Buffer, usize)>,
    decode: &Decode,
) -> Result<()> {
    let value = match (indices, recorded(w[0])) {
        (Some((ix, width)), Some(position)) => {
            let mut one = gpu.alloc(8, Fill::Zero)?;
            gpu.copy(ix, position * width, &mut one, 0, width)?;
            let bytes = gpu.download(&one, 8)?;
            let mut le = [0u8; 8];
            le.copy_from_slice(&bytes[..8]);
            // int64 entries are the caller's values; u32 ones arrive zero-extended.
            Some(i64::from_le_bytes(le))
        }
        _ => None,
    };
    decode(w, value)
}

/// Resolves every queued check, oldest first, and reports every failing op: a single failure as
/// itself, several as [`Error::Several`] (oldest first; the later ones may be consequences of
/// the first, e.g. rows computed from a bad index). The status words are gathered on the device
/// and read back at once: one host synchronisation when nothing went wrong.
pub fn resolve_deferred<G: Gpu>(gpu: &G) -> Result<()> {
    let checks = gpu.sync_state().take();
    let total: usize = checks.iter().map(|c| c.words).sum();
    if total == 0 {
        return Ok(());
    }
    let mut all = gpu.alloc(total * 4, Fill::Zero)?;
    let mut at = 0;
    for c in &checks {
        gpu.copy(&c.status, 0, &mut all, at * 4, c.words * 4)?;
        at += c.words;
    }
    let words = words_of(&gpu.download(&all, total * 4)?);
    let mut at = 0;
    let mut errors = Vec::new();
    for c in &checks {
        let source = c.indices.as_ref().map(|(b, width)| (b, *width));
        if let Err(e) = decode_words(gpu, &words[at..at + c.words], source, &c.decode) {
            errors.push(e);
        }
        at += c.words;
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Several { errors }),
    }
}

/// A backend's check mode (at once, or deferred to [`resolve_deferred`]), its queued checks and
/// its count of host synchronisations.
pub struct SyncState<B> {
    deferred: AtomicBool,
    pending: Mutex<Vec<PendingCheck<B>>>,
    host_syncs: AtomicU64,
}

impl<B> Default for SyncState<B> {
    fn default() -> Self {
        SyncState {
            deferred: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            host_syncs: AtomicU64::new(0),
        }
    }
}

impl<B> SyncState<B> {
    /// Whether ops queue their status checks instead of reading them back at once.
    pub fn deferring(&self) -> bool {
        self.deferred.load(Ordering::Relaxed)
    }

    /// Turns deferral on or off (queued checks stay queued).
    pub fn set_deferred(&self, on: bool) {
        self.deferred.store(on, Ordering::Relaxed);
    }

    fn defer(&self, check: PendingCheck<B>) {
        self.queue().push(check);
    }

    fn take(&self) -> Vec<PendingCheck<B>> {
        std::mem::take(&mut *self.queue())
    }

    /// Counts one wait of the host for the device (backends call it in `download` and
    /// `synchronize`).
    pub fn count_sync(&self) {
        self.host_syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the host has waited for the device.
    pub fn host_syncs(&self) -> u64 {
        self.host_syncs.load(Ordering::Relaxed)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<PendingCheck<B>>> {
        // A panic while holding the lock cannot leave the Vec half-updated (push and take are
        // single operations), so a poisoned lock is still sound to use.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
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

/// A fresh status word (zero: no bad index yet).
pub(crate) fn status_word<G: Gpu>(gpu: &G) -> Result<G::Buffer> {
    gpu.alloc(4, Fill::Zero)
}

/// Reports a one-word status as [`Error::IndexOutOfRange`] when a kernel recorded the position
/// of a bad index there, with the index read from `indices` (`len` u32 entries).
pub(crate) fn check_status<G: Gpu>(
    gpu: &G,
    status: G::Buffer,
    op: &'static str,
    arg: &'static str,
    indices: &G::Buffer,
    len: usize,
    bound: u64,
) -> Result<()> {
    check_index_status(gpu, status, op, arg, IndexSource::u32(indices, len), bound)
}

/// [`check_status`] over an index buffer of any entry width.
pub(crate) fn check_index_status<G: Gpu>(
    gpu: &G,
    status: G::Buffer,
    op: &'static str,
    arg: &'static str,
    indices: IndexSource<'_, G::Buffer>,
    bound: u64,
) -> Result<()> {
    let decode: Decode = Box::new(move |w, index| match recorded(w[0]) {
        None => Ok(()),
        Some(position) => Err(Error::IndexOutOfRange {
            op,
            arg,
            position,
            index: index.unwrap_or(i64::from(u32::MAX)),
            bound,
        }),
    });
    report(gpu, status, 1, Some(indices), decode)
}

fn first_word(bytes: &[u8]) -> [u8; 4] {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[..4]);
    w
}
