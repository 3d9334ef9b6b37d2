//! The PTX interpreter as a backend (cargo feature `ptx-interp`, for tests): the kernels of
//! `kernels/` run by the repo's interpreter (`ptx-interp/`) with its sanitizer checks, through
//! the same launch sequences the CUDA backend uses. It makes every test written against a
//! [`crate::Device`] run the PTX on machines without a GPU.
//!
//! Memory is the interpreter's: one byte vector per buffer, freed when the buffer is dropped.
//! Blocks run one after another, so a launch is as slow as the sum of its blocks; a sanitizer
//! finding (an out-of-bounds access, a race on shared memory, a divergent barrier, …) is an
//! [`Error::Backend`] whose source is the interpreter's [`ExecError`] with kernel, file, line,
//! instruction, block and thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use ptx_interp::ExecError;
use ptx_interp::{Machine, Module, SourcePart};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gpu::{poisoning, Fill, Gpu, Launch, SyncState, POISON_BITS};
use crate::registry::KernelId;

/// A buffer in the interpreter's memory.
pub struct InterpBuffer {
    addr: u64,
    bytes: usize,
    machine: Arc<Mutex<Machine>>,
}

impl std::fmt::Debug for InterpBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InterpBuffer({:#x}, {} bytes)", self.addr, self.bytes)
    }
}

impl Drop for InterpBuffer {
    fn drop(&mut self) {
        lock(&self.machine).free(self.addr);
    }
}

/// One interpreter "device": its memory, the parsed kernel files, and counters of the work it
/// ran.
pub struct InterpDevice {
    machine: Arc<Mutex<Machine>>,
    modules: Mutex<HashMap<KernelId, Arc<Module>>>,
    sync: SyncState<InterpBuffer>,
    instructions: AtomicU64,
    nanos: AtomicU64,
}

impl std::fmt::Debug for InterpDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterpDevice")
    }
}

impl Default for InterpDevice {
    fn default() -> Self {
        InterpDevice::new()
    }
}

/// The machine, even if a panic elsewhere poisoned its lock (its state is plain data that a
/// panicking launch leaves as a failed launch leaves it).
fn lock(m: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn host_error(msg: String) -> Error {
    Error::Backend {
        backend: Backend::PtxInterp,
        source: msg.into(),
    }
}

impl InterpDevice {
    /// A fresh interpreter with empty memory.
    pub fn new() -> InterpDevice {
        InterpDevice {
            machine: Arc::new(Mutex::new(Machine::new())),
            modules: Mutex::new(HashMap::new()),
            sync: SyncState::default(),
            instructions: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    /// An interpreter that runs every launch's blocks in an order shuffled by `seed`, so a test
    /// can check that a result does not depend on the order blocks are scheduled in.
    pub fn with_block_order(seed: u64) -> InterpDevice {
        let d = InterpDevice::new();
        lock(&d.machine).block_order_seed = Some(seed);
        d
    }

    /// PTX instructions executed by this device's launches so far.
    pub fn instructions(&self) -> u64 {
        self.instructions.load(Ordering::Relaxed)
    }

    /// Wall time spent inside this device's launches so far.
    pub fn kernel_time(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn module(&self, kernel: KernelId) -> Result<Arc<Module>> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = modules.get(&kernel) {
            return Ok(Arc::clone(m));
        }
        // Parsed from its parts, so every error cites the original file and line
        // (kernels/helpers.ptx or the kernel file).
        let parts = kernel
            .ptx_parts()
            .map(|(file, first_line, text)| SourcePart {
                file,
                first_line,
                text,
            });
        let m = Arc::new(Module::parse_parts(&parts).map_err(|e| host_error(e.to_string()))?);
        modules.insert(kernel, Arc::clone(&m));
        Ok(m)
    }
}

impl Gpu for InterpDevice {
    type Buffer = InterpBuffer;
    const BACKEND: Backend = Backend::PtxInterp;

    fn alloc(&self, bytes: usize, fill: Fill) -> Result<InterpBuffer> {
        let padded = bytes.max(4).div_ceil(4) * 4;
        let mut m = lock(&self.machine);
        let addr = m.alloc(padded);
        let word = match fill {
            Fill::Zero => None,
            Fill::Word(w) => Some(w),
            Fill::Output => poisoning().then_some(POISON_BITS),
        };
        if let Some(w) = word {
            let data: Vec<u32> = vec![w; padded / 4];
            m.write(addr, bytemuck::cast_slice(&data))
                .map_err(host_error)?;
        }
        Ok(InterpBuffer {
            addr,
            bytes: padded,
            machine: Arc::clone(&self.machine),
        })
    }

    fn upload(&self, bytes: &[u8]) -> Result<InterpBuffer> {
        let b = self.alloc(bytes.len(), Fill::Zero)?;
        lock(&self.machine)
            .write(b.addr, bytes)
            .map_err(host_error)?;
        Ok(b)
    }

    fn download(&self, buf: &InterpBuffer, bytes: usize) -> Result<Vec<u8>> {
        if bytes > buf.bytes {
            return Err(host_error(format!(
                "download of {bytes} bytes from a {}-byte buffer",
                buf.bytes
            )));
        }
        self.sync.count_sync();
        lock(&self.machine)
            .read(buf.addr, bytes)
            .map_err(host_error)
    }

    fn copy(
        &self,
        src: &InterpBuffer,
        src_offset: usize,
        dst: &mut InterpBuffer,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()> {
        let mut m = lock(&self.machine);
        let data = m
            .read(src.addr + src_offset as u64, bytes)
            .map_err(host_error)?;
        m.write(dst.addr + dst_offset as u64, &data)
            .map_err(host_error)
    }

    fn launch(&self, l: &Launch<'_, InterpBuffer>) -> Result<()> {
        let module = self.module(l.kernel)?;
        let &(_, _, pointers) = l
            .kernel
            .entries()
            .iter()
            .find(|e| e.0 == l.entry)
            .ok_or_else(|| host_error(format!("no PTX entry {}", l.entry)))?;
        let ptrs: Vec<[u8; 8]> = (0..pointers)
            .map(|i| {
                l.args
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(0, |b| b.addr)
                    .to_le_bytes()
            })
            .collect();
        let mut params: Vec<&[u8]> = vec![l.params];
        params.extend(ptrs.iter().map(|p| &p[..]));
        let start = std::time::Instant::now();
        let count = lock(&self.machine)
            .launch(
                &module,
                l.entry,
                [l.grid.0, l.grid.1, 1],
                [l.threads, 1, 1],
                &params,
            )
            .map_err(|e| Error::Backend {
                backend: Backend::PtxInterp,
                source: e,
            })?;
        self.nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.instructions.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        // Launches run to completion before they return.
        self.sync.count_sync();
        Ok(())
    }

    fn max_binding_bytes(&self) -> u64 {
        u64::MAX
    }

    fn max_workgroup_bytes(&self) -> u64 {
        // As the CUDA backend: static shared memory without opting in to more.
        48 * 1024
    }

    fn has_float_atomics(&self) -> bool {
        true
    }

    fn sync_state(&self) -> &SyncState<InterpBuffer> {
        &self.sync
    }

    fn describe(&self) -> String {
        "PTX interpreter (kernels/*.ptx, sanitizer on)".into()
    }
}
