//! A PTX interpreter with sanitizer checks, so ultramem's hand-written kernels run — and are
//! differentially tested — on machines without a GPU. Test tooling, not published.
//!
//! It parses the PTX the kernels use (see [`ir`]), and runs an entry point over a grid of
//! blocks and threads: registers per thread, `.param` inputs (by-value structs too), `.global`
//! memory as byte buffers, `.shared` memory per block, `bar.sync`, warps of 32 in lockstep for
//! `shfl.sync`/`vote.sync`, atomics, predicates, branches with divergence and reconvergence,
//! vector loads, `cvt` with rounding modes, f16/bf16 conversions, and the special registers.
//!
//! While it runs it stops with an [`ExecError`] naming the kernel, the source line, the
//! instruction, the block and the thread on: an out-of-bounds or misaligned global or shared
//! access, a read of shared memory no thread wrote, a shared-memory race between two barriers, a
//! barrier some thread of the block does not reach, a warp collective whose lanes are not all
//! there, a read of a register never written, or an instruction it does not implement.
//!
//! What it does not model: timing, caches, occupancy, the memory model beyond barriers (blocks
//! run one after another and atomics are trivially sequential, so inter-block races on global
//! memory and missing fences go unnoticed), the exact error of `.approx` instructions (it
//! computes them exactly), and anything the driver's JIT would reject that ptxas accepts.
//!
//! ```
//! use ptx_interp::{Machine, Module};
//! let module = Module::parse("add.ptx", r#"
//!     .version 8.0
//!     .target sm_80
//!     .address_size 64
//!     .visible .entry add_one(.param .u64 p)
//!     {
//!         .reg .b32 %v;
//!         .reg .b64 %a;
//!         ld.param.u64 %a, [p];
//!         cvta.to.global.u64 %a, %a;
//!         ld.global.u32 %v, [%a];
//!         add.u32 %v, %v, 1;
//!         st.global.u32 [%a], %v;
//!         ret;
//!     }
//! "#).unwrap();
//! let mut m = Machine::new();
//! let buf = m.alloc(4);
//! m.write(buf, &41u32.to_le_bytes()).unwrap();
//! m.launch(&module, "add_one", [1, 1, 1], [1, 1, 1], &[&buf.to_le_bytes()]).unwrap();
//! assert_eq!(m.read(buf, 4).unwrap(), 42u32.to_le_bytes());
//! ```

mod exec;
pub mod ir;
mod parse;

use std::fmt;

pub use parse::ParseError;

/// A parsed PTX module.
#[derive(Clone, Debug)]
pub struct Module {
    /// The file name errors cite.
    pub file: String,
    /// Its entry points.
    pub functions: Vec<ir::Function>,
}

impl Module {
    /// Parses PTX text; `file` names it in errors.
    ///
    /// # Errors
    /// The first syntax it cannot read, with its line.
    pub fn parse(file: &str, text: &str) -> Result<Module, ParseError> {
        Ok(Module {
            file: file.to_string(),
            functions: parse::parse_module(text)?,
        })
    }

    /// The entry point called `name`.
    pub fn function(&self, name: &str) -> Option<&ir::Function> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// What a sanitizer check or the interpreter found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// An access outside its buffer, the shared window or the parameter block.
    OutOfBounds,
    /// An access not aligned to its size.
    Misaligned,
    /// A read of shared memory no thread has written.
    UninitializedShared,
    /// Two threads touch the same shared byte between two barriers, one of them writing.
    SharedRace,
    /// A `bar.sync` that some thread of the block does not reach.
    BarrierDivergence,
    /// A `shfl.sync`/`vote.sync` whose mask names lanes that are not at it.
    WarpSync,
    /// A register read before any write.
    UninitializedRegister,
    /// No thread can make progress.
    Deadlock,
    /// An instruction or form this interpreter does not implement.
    Unsupported,
    /// Wrong launch arguments.
    Launch,
}

/// A stopped run: what happened, where and in which thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError {
    /// The entry point.
    pub kernel: String,
    /// The PTX file.
    pub file: String,
    /// 1-based source line of the instruction.
    pub line: u32,
    /// The instruction's text.
    pub instruction: String,
    /// `%ctaid` of the thread.
    pub block: [u32; 3],
    /// `%tid` of the thread.
    pub thread: [u32; 3],
    /// What was found.
    pub kind: ErrorKind,
    /// Details.
    pub message: String,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} in kernel {} at {}:{} `{}`, block {:?} thread {:?}: {}",
            self.kind,
            self.kernel,
            self.file,
            self.line,
            self.instruction,
            self.block,
            self.thread,
            self.message
        )
    }
}

impl std::error::Error for ExecError {}

fn launch_error(kernel: &str, file: &str, message: String) -> Box<ExecError> {
    Box::new(ExecError {
        kernel: kernel.to_string(),
        file: file.to_string(),
        line: 0,
        instruction: String::new(),
        block: [0; 3],
        thread: [0; 3],
        kind: ErrorKind::Launch,
        message,
    })
}

/// A simulated device: global memory and an instruction counter.
#[derive(Default)]
pub struct Machine {
    mem: exec::Memory,
    /// PTX instructions executed so far (by any thread, guarded-off ones included).
    pub instructions: u64,
    /// When set, blocks run in an order shuffled by this seed instead of by block id, so a test
    /// can check that a result does not depend on the order blocks are scheduled in.
    pub block_order_seed: Option<u64>,
}

impl Machine {
    /// An empty device.
    pub fn new() -> Machine {
        Machine::default()
    }

    /// Allocates `bytes` zeroed bytes; returns the device address of the first.
    pub fn alloc(&mut self, bytes: usize) -> u64 {
        self.mem.buffers.push(Some(vec![0; bytes]));
        (self.mem.buffers.len() as u64) << exec::BUFFER_SHIFT
    }

    /// Frees the allocation starting at `addr` (later accesses to it are errors).
    pub fn free(&mut self, addr: u64) {
        let id = (addr >> exec::BUFFER_SHIFT) as usize;
        if let Some(slot) = id.checked_sub(1).and_then(|i| self.mem.buffers.get_mut(i)) {
            *slot = None;
        }
    }

    fn buffer(&mut self, addr: u64, len: usize) -> Result<(&mut Vec<u8>, usize), String> {
        let id = (addr >> exec::BUFFER_SHIFT) as usize;
        let off = (addr & ((1u64 << exec::BUFFER_SHIFT) - 1)) as usize;
        let buf = id
            .checked_sub(1)
            .and_then(|i| self.mem.buffers.get_mut(i))
            .and_then(|b| b.as_mut())
            .ok_or_else(|| format!("no buffer at {addr:#x}"))?;
        if off + len > buf.len() {
            return Err(format!(
                "{len} bytes at offset {off} of a {}-byte buffer",
                buf.len()
            ));
        }
        Ok((buf, off))
    }

    /// Copies host bytes to the device.
    ///
    /// # Errors
    /// If the range is not inside one live allocation.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        let (buf, off) = self.buffer(addr, data.len())?;
        buf[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Copies device bytes to the host.
    ///
    /// # Errors
    /// If the range is not inside one live allocation.
    pub fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        let (buf, off) = self.buffer(addr, len)?;
        Ok(buf[off..off + len].to_vec())
    }

    /// Runs `entry` over `grid` blocks of `block` threads with the given parameters (the raw
    /// bytes of each, in order, e.g. a struct's bytes or a pointer's `u64`).
    ///
    /// # Errors
    /// The first [`ExecError`]; memory keeps what the kernel wrote before it.
    pub fn launch(
        &mut self,
        module: &Module,
        entry: &str,
        grid: [u32; 3],
        block: [u32; 3],
        params: &[&[u8]],
    ) -> Result<u64, Box<ExecError>> {
        let file = module.file.as_str();
        let func = module
            .function(entry)
            .ok_or_else(|| launch_error(entry, file, format!("no entry `{entry}` in {file}")))?;
        if params.len() != func.params.len() {
            return Err(launch_error(
                entry,
                file,
                format!(
                    "{} parameters given, {} declared",
                    params.len(),
                    func.params.len()
                ),
            ));
        }
        let mut block_params = vec![0u8; func.param_bytes];
        for (p, bytes) in func.params.iter().zip(params) {
            if bytes.len() != p.size {
                return Err(launch_error(
                    entry,
                    file,
                    format!(
                        "parameter {} takes {} bytes, {} given",
                        p.name,
                        p.size,
                        bytes.len()
                    ),
                ));
            }
            block_params[p.offset..p.offset + p.size].copy_from_slice(bytes);
        }
        let threads = block.iter().product::<u32>();
        if threads == 0 || grid.contains(&0) {
            return Err(launch_error(entry, file, "empty grid or block".into()));
        }
        if let Some(max) = func.max_threads {
            if threads > max {
                return Err(launch_error(
                    entry,
                    file,
                    format!("{threads} threads per block, .maxntid allows {max}"),
                ));
            }
        }
        let launch = exec::Launch {
            func,
            file,
            params: &block_params,
            grid,
            block,
        };
        let mut blocks: Vec<[u32; 3]> = (0..grid[2])
            .flat_map(|z| (0..grid[1]).flat_map(move |y| (0..grid[0]).map(move |x| [x, y, z])))
            .collect();
        if let Some(seed) = self.block_order_seed {
            // Fisher–Yates with SplitMix64.
            let mut state = seed;
            let mut next = || {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            };
            for i in (1..blocks.len()).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                blocks.swap(i, j);
            }
        }
        let mut count = 0u64;
        for b in blocks {
            count += exec::run_block(&launch, b, &mut self.mem)?;
        }
        self.instructions += count;
        Ok(count)
    }
}
