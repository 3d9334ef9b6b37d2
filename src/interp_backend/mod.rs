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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use ptx_interp::ExecError;
use ptx_interp::{LaunchProfile, Machine, Module, ProfileConfig, SourcePart};

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
    profiling: Option<Profiling>,
}

/// What a [`BlockSampler`] is asked.
#[derive(Clone, Copy, Debug)]
pub struct SampleQuery<'a> {
    /// The entry.
    pub entry: &'a str,
    /// Blocks in the grid.
    pub grid_blocks: u32,
    /// The blocks that do work, ascending, when a [`WorkOracle`] knows them (the others leave
    /// at once).
    pub working: Option<&'a [u32]>,
}

/// Which blocks of a launch a profiling device profiles, and what each stands for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleChoice {
    /// `None` for every block, or the linear block ids to profile (in the order to profile
    /// them when `stop` is set).
    pub blocks: Option<Vec<u32>>,
    /// With `blocks`: the stratum weight of each listed block (parallel to `blocks`): listed
    /// blocks of equal weight form a stratum of `weight × count` grid blocks. `None`: one
    /// stratum, the whole grid.
    pub weights: Option<Vec<f64>>,
    /// Whether the blocks not profiled run anyway (unprofiled, so later launches read complete
    /// outputs) or not at all.
    pub run_others: bool,
    /// When to stop profiling the listed blocks.
    pub stop: Option<ptx_interp::StopRule>,
}

/// How many grid blocks each block that ran stands for: per stratum of `listed` (equal
/// `weights`, or one stratum of the whole grid), the stratum's size over its blocks that ran.
fn stratum_weights(
    listed: &[u32],
    weights: Option<&[f64]>,
    grid_blocks: u32,
    ran: &[u32],
) -> Vec<(u32, f64)> {
    let uniform = vec![f64::from(grid_blocks) / listed.len().max(1) as f64; listed.len()];
    let weights = weights.unwrap_or(&uniform);
    let ran: std::collections::HashSet<u32> = ran.iter().copied().collect();
    // (weight, listed, ran) per stratum.
    let mut strata: Vec<(f64, usize, usize)> = Vec::new();
    for (b, &w) in listed.iter().zip(weights) {
        let i = match strata.iter().position(|s| s.0 == w) {
            Some(i) => i,
            None => {
                strata.push((w, 0, 0));
                strata.len() - 1
            }
        };
        strata[i].1 += 1;
        strata[i].2 += usize::from(ran.contains(b));
    }
    listed
        .iter()
        .zip(weights)
        .filter(|(b, _)| ran.contains(b))
        .map(|(&b, &w)| {
            let (_, n_listed, n_ran) = strata
                .iter()
                .find(|s| s.0 == w)
                .copied()
                .unwrap_or((w, 1, 1));
            (b, w * n_listed as f64 / n_ran.max(1) as f64)
        })
        .collect()
}

/// Picks the blocks to profile.
pub type BlockSampler = Box<dyn Fn(&SampleQuery<'_>) -> SampleChoice + Send + Sync>;

/// The blocks of a launch that do work, from its parameter block, buffer addresses (0 for none)
/// and memory: `None` when not known for the entry.
pub type WorkOracle = Box<
    dyn Fn(&str, &[u8], &[u64], u32, &mut Machine) -> Option<std::result::Result<Vec<u32>, String>>
        + Send
        + Sync,
>;

/// Writes a sampled launch's whole output on the host: given the entry, the parameter block and
/// the buffer addresses (0 for none), `None` when the entry has no such twin, else whether it
/// succeeded. Launches with a twin run only their profiled blocks.
pub type OutputTwin = Box<
    dyn Fn(&str, &[u8], &[u64], &mut Machine) -> Option<std::result::Result<(), String>>
        + Send
        + Sync,
>;

/// How a profiling device ([`InterpDevice::profiling`]) runs launches.
pub struct ProfileOptions {
    /// The blocks each launch runs.
    pub sampler: BlockSampler,
    /// Completes the outputs of sampled launches whose later readers need them whole.
    pub twin: Option<OutputTwin>,
    /// Which blocks of a launch do work, where most leave at once (for stratified sampling).
    pub work: Option<WorkOracle>,
    /// The interpreter's profile settings (its latencies); `blocks` is set per launch from
    /// `sampler`.
    pub config: ProfileConfig,
}

struct Profiling {
    options: ProfileOptions,
    records: Mutex<Vec<Record>>,
    /// Live and freed allocations: start address → bytes (addresses are never reused).
    allocations: Mutex<BTreeMap<u64, usize>>,
}

/// What a profiling device saw, in order.
#[derive(Debug)]
pub enum Record {
    /// A kernel launch and its profile.
    Launch(Box<LaunchRecord>),
    /// A device-to-device copy of this many bytes.
    Copy {
        /// Bytes copied.
        bytes: usize,
    },
    /// A read back to the host (the host waits for the device): this many bytes.
    Download {
        /// Bytes read.
        bytes: usize,
    },
    /// A host upload of this many bytes.
    Upload {
        /// Bytes written.
        bytes: usize,
    },
}

/// One profiled launch.
#[derive(Debug)]
pub struct LaunchRecord {
    /// The kernel file.
    pub kernel: KernelId,
    /// The entry.
    pub entry: &'static str,
    /// Blocks in the grid.
    pub grid_blocks: u32,
    /// Threads per block.
    pub threads: u32,
    /// Whether only some blocks ran (see [`LaunchProfile::blocks`] for which).
    pub sampled: bool,
    /// How many grid blocks each profiled block stands for, by block id, when the sampler
    /// weighted them (stratified); `None` for `grid_blocks / profiled` each.
    pub weights: Option<Vec<(u32, f64)>>,
    /// The interpreter's counts for the blocks that ran.
    pub profile: LaunchProfile,
    /// Wall time the interpreter took.
    pub wall: Duration,
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
            profiling: None,
        }
    }

    /// An interpreter that profiles every launch for a performance model (`ultramem::model`):
    /// each launch runs the blocks `options.sampler` picks, and its counts are kept as a
    /// [`Record`] with every copy and read-back ([`take_records`](InterpDevice::take_records)).
    /// Output buffers start zeroed instead of poisoned, so that a sampled launch's unwritten
    /// outputs read as zeros, not NaN, downstream. Results of sampled launches are incomplete:
    /// a profiling device is for counting work, not for results.
    pub fn profiling(options: ProfileOptions) -> InterpDevice {
        InterpDevice {
            profiling: Some(Profiling {
                options,
                records: Mutex::new(Vec::new()),
                allocations: Mutex::new(BTreeMap::new()),
            }),
            ..InterpDevice::new()
        }
    }

    /// The records of a profiling device since the last call (empty on other devices).
    pub fn take_records(&self) -> Vec<Record> {
        match &self.profiling {
            Some(p) => std::mem::take(&mut *p.records.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }

    /// The allocation holding device address `addr`: its start and bytes (profiling devices
    /// only; `None` elsewhere or outside every allocation).
    pub fn allocation_of(&self, addr: u64) -> Option<(u64, usize)> {
        let p = self.profiling.as_ref()?;
        let allocations = p.allocations.lock().unwrap_or_else(|e| e.into_inner());
        let (&start, &bytes) = allocations.range(..=addr).next_back()?;
        (addr < start + bytes as u64).then_some((start, bytes))
    }

    fn record(&self, r: Record) {
        if let Some(p) = &self.profiling {
            p.records.lock().unwrap_or_else(|e| e.into_inner()).push(r);
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
            Fill::Output => (poisoning() && self.profiling.is_none()).then_some(POISON_BITS),
        };
        if let Some(w) = word {
            let data: Vec<u32> = vec![w; padded / 4];
            m.write(addr, bytemuck::cast_slice(&data))
                .map_err(host_error)?;
        }
        if let Some(p) = &self.profiling {
            p.allocations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(addr, padded);
        }
        Ok(InterpBuffer {
            addr,
            bytes: padded,
            machine: Arc::clone(&self.machine),
        })
    }

    fn upload(&self, bytes: &[u8]) -> Result<InterpBuffer> {
        let b = self.alloc(bytes.len(), Fill::Zero)?;
        self.record(Record::Upload { bytes: bytes.len() });
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
        self.record(Record::Download { bytes });
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
        self.record(Record::Copy { bytes });
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
        let grid = [l.grid.0, l.grid.1, 1];
        let block = [l.threads, 1, 1];
        let to_error = |e: Box<ExecError>| Error::Backend {
            backend: Backend::PtxInterp,
            source: e,
        };
        let count = match &self.profiling {
            None => lock(&self.machine)
                .launch(&module, l.entry, grid, block, &params)
                .map_err(to_error)?,
            Some(p) => {
                let grid_blocks = l.grid.0 * l.grid.1;
                let addrs: Vec<u64> = ptrs.iter().map(|p| u64::from_le_bytes(*p)).collect();
                let mut machine = lock(&self.machine);
                let working = match &p.options.work {
                    Some(oracle) => oracle(l.entry, l.params, &addrs, grid_blocks, &mut machine)
                        .transpose()
                        .map_err(|e| {
                            host_error(format!("the model's work map of {}: {e}", l.entry))
                        })?,
                    None => None,
                };
                let choice = (p.options.sampler)(&SampleQuery {
                    entry: l.entry,
                    grid_blocks,
                    working: working.as_deref(),
                });
                let listed = choice.blocks.clone();
                let config = ProfileConfig {
                    blocks: choice.blocks,
                    run_others: choice.run_others,
                    stop: choice.stop,
                    ..p.options.config.clone()
                };
                let profile = machine
                    .launch_profiled(&module, l.entry, grid, block, &params, &config)
                    .map_err(to_error)?;
                if config.blocks.is_some() {
                    if let Some(twin) = &p.options.twin {
                        if let Some(done) = twin(l.entry, l.params, &addrs, &mut machine) {
                            done.map_err(|e| {
                                host_error(format!("the model's twin of {}: {e}", l.entry))
                            })?;
                        }
                    }
                }
                drop(machine);
                let weights = listed.map(|listed| {
                    let ran: Vec<u32> = profile.blocks.iter().map(|b| b.block).collect();
                    stratum_weights(&listed, choice.weights.as_deref(), grid_blocks, &ran)
                });
                let count = profile.thread_instructions;
                self.record(Record::Launch(Box::new(LaunchRecord {
                    kernel: l.kernel,
                    entry: l.entry,
                    grid_blocks,
                    threads: l.threads,
                    sampled: config.blocks.is_some(),
                    weights,
                    profile,
                    wall: start.elapsed(),
                })));
                count
            }
        };
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
