//! A PTX interpreter with sanitizer checks, so ultramem's hand-written kernels run — and are
//! differentially tested — on machines without a GPU. Test tooling, not published.
//!
//! It parses the PTX the kernels use (see [`ir`]), and runs an entry point over a grid of
//! blocks and threads: registers per thread, `.param` inputs (by-value structs too), `.global`
//! memory as byte buffers, `.shared` memory per block (declared in the entry or at module
//! scope), `bar.sync`, warps of 32 in lockstep for `shfl.sync`/`vote.sync` and `mma.sync`
//! (`m16n8k16`/`m16n8k8`, bf16/f16 inputs, f32 accumulators; see [`ir::Mma`]), atomics and
//! reductions (also sm_90's vector `red.global.add.v2/.v4.f32`, each element atomic),
//! predicates, branches with divergence and reconvergence, vector loads, `cvt` with rounding
//! modes, f16/bf16 conversions, and the special registers.
//!
//! It runs `.func` functions too: `call` (also `call.uni`, guarded, divergent) pushes a frame
//! of the callee's registers with their own written-or-not shadow, its `.reg` parameters set
//! from the arguments (registers or immediates) and its return values unwritten; `ret` pops it
//! and copies the return values to the caller's registers. `.param`-space parameters and
//! return values work as nvcc emits them (`st.param` into `.param` variables declared in a
//! `{ }` call sequence, `ld.param` of `retval0`), with a written-or-not shadow of their own.
//! Labels and declarations are local to their function (and `{ }` block); prototypes are
//! accepted; calls nest up to [`MAX_CALL_DEPTH`] deep. A module can be parsed from several
//! files joined ([`Module::parse_parts`]), every line reported in its own file.
//!
//! While it runs it stops with an [`ExecError`] naming the kernel, the function, the calls that
//! led there, the source file and line, the instruction, the block and the thread on: an
//! out-of-bounds or misaligned global or shared access, a read of shared memory no thread
//! wrote, a shared-memory race between two barriers, a barrier some thread of the block does
//! not reach (a `bar.sync` in a function matches only that function's barriers, so one called
//! by part of the block is caught), a warp collective whose lanes are not all there, a read of
//! a register or `.param` variable never written (a register passed as an argument must be
//! written; a function must write every return value before its `ret`), or an instruction it
//! does not implement.
//!
//! [`Machine::launch_profiled`] runs a launch (or a sample of its blocks) while counting what a
//! GPU performance model needs: warp-level instruction issues by class, global accesses with
//! their sectors, shared-memory bank conflicts, loads in flight, and a latency-only clock
//! simulation of each block's critical path (see [`profile`]). [`Machine::launch`] compiles
//! those hooks away.
//!
//! What it does not model (outside the profile's latency-only clock): timing, caches,
//! occupancy, the memory model beyond barriers and the cross-block race check (blocks run one
//! after another and atomics are trivially sequential: a missing fence goes unnoticed, and a
//! plain access that only a fence and an atomic flag order is reported as a race), the exact
//! error of `.approx` instructions (it computes them exactly), the tensor cores' internal
//! accumulation order (see [`ir::Mma`]), and anything the driver's JIT
//! would reject that ptxas accepts.
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
pub mod profile;

pub use profile::{
    AccessKind, BlockProfile, InflightStats, InstrClass, Latencies, LaunchProfile, ProfileConfig,
    StopRule, WarpAccess,
};

/// The deepest nesting of calls a thread may reach; one call more is an
/// [`ErrorKind::Unsupported`] error (unbounded recursion, most likely).
pub const MAX_CALL_DEPTH: usize = exec::MAX_CALL_DEPTH;

use std::fmt;

pub use parse::ParseError;

/// A parsed PTX module.
#[derive(Clone, Debug)]
pub struct Module {
    /// The file name errors cite (the first part's, for a module of several parts).
    pub file: String,
    /// Every file its parts come from, without repeats; [`ir::Instr::file`] indexes it.
    pub files: Vec<String>,
    /// Its `.entry` and `.func` functions, in the order of their first declaration.
    pub functions: Vec<ir::Function>,
}

/// A piece of PTX text from a file, for [`Module::parse_parts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourcePart<'a> {
    /// The file errors cite for the lines of this part.
    pub file: &'a str,
    /// The line of `file` that the first line of `text` is (1-based).
    pub first_line: u32,
    /// The text.
    pub text: &'a str,
}

/// Where each line of a joined text comes from: per part, the first joined line, the file
/// index and the line in that file.
struct LineMap {
    starts: Vec<(u32, u16, u32)>,
}

impl LineMap {
    /// The file index and original line of 1-based joined line `line`.
    fn map(&self, line: u32) -> (u16, u32) {
        let i = self.starts.partition_point(|&(start, _, _)| start <= line);
        match i.checked_sub(1).map(|i| self.starts[i]) {
            Some((start, file, first)) => (file, first + (line - start)),
            None => (self.starts.first().map_or(0, |s| s.1), line),
        }
    }
}

impl Module {
    /// Parses PTX text; `file` names it in errors. One [`SourcePart`] starting at line 1.
    ///
    /// # Errors
    /// The first syntax it cannot read, with its file and line.
    pub fn parse(file: &str, text: &str) -> Result<Module, ParseError> {
        Module::parse_parts(&[SourcePart {
            file,
            first_line: 1,
            text,
        }])
    }

    /// Parses the concatenation of `parts`, in order, as one module (e.g. a kernel's
    /// `.version`/`.target`/`.address_size` header, a file of shared `.func` helpers, and the
    /// rest of the kernel). Every line the module reports — [`ParseError`]'s and
    /// [`ExecError`]'s file and line, [`ir::Instr::file`]/[`ir::Instr::line`] — is the
    /// original file and line of its part. A part not ending in a newline is followed by one.
    ///
    /// ```
    /// use ptx_interp::{Module, SourcePart};
    /// let header = ".version 8.0\n.target sm_80\n.address_size 64\n";
    /// let helper = ".func (.reg .b32 %r) twice(.reg .b32 %x)\n{\n    add.u32 %r, %x, %x;\n    ret;\n}\n";
    /// let kernel = ".visible .entry k()\n{\n    .reg .b32 %v;\n    call (%v), twice, (21);\n    ret;\n}\n";
    /// let module = Module::parse_parts(&[
    ///     SourcePart { file: "k.ptx", first_line: 1, text: header },
    ///     SourcePart { file: "helpers.ptx", first_line: 1, text: helper },
    ///     SourcePart { file: "k.ptx", first_line: 4, text: kernel },
    /// ])
    /// .unwrap();
    /// let call = &module.function("k").unwrap().code[0];
    /// assert_eq!((module.files[call.file as usize].as_str(), call.line), ("k.ptx", 7));
    /// ```
    ///
    /// # Errors
    /// The first syntax it cannot read, with the file and line of its part.
    pub fn parse_parts(parts: &[SourcePart<'_>]) -> Result<Module, ParseError> {
        let mut files: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut map = LineMap { starts: Vec::new() };
        let mut next_line = 1u32;
        for p in parts {
            let file = match files.iter().position(|f| f == p.file) {
                Some(i) => i,
                None => {
                    files.push(p.file.to_string());
                    files.len() - 1
                }
            };
            let file = u16::try_from(file).map_err(|_| ParseError {
                file: p.file.to_string(),
                line: 0,
                message: "too many files".into(),
            })?;
            map.starts.push((next_line, file, p.first_line));
            text.push_str(p.text);
            if !p.text.is_empty() && !p.text.ends_with('\n') {
                text.push('\n');
            }
            let lines = p.text.lines().count() as u32;
            next_line += lines;
        }
        let first = parts.first().map_or("", |p| p.file).to_string();
        if files.is_empty() {
            files.push(first.clone());
        }
        let mut functions = parse::parse_module(&text).map_err(|mut e| {
            let (f, line) = map.map(e.line);
            e.file = files[f as usize].clone();
            e.line = line;
            e
        })?;
        for ins in functions.iter_mut().flat_map(|f| f.code.iter_mut()) {
            (ins.file, ins.line) = map.map(ins.line);
        }
        Ok(Module {
            file: first,
            files,
            functions,
        })
    }

    /// The function (`.entry` or `.func`) called `name`.
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
    /// A register (or a frame's `.param` variable) read before any write, a call argument never
    /// written, or a return value its function did not write before `ret`.
    UninitializedRegister,
    /// No thread can make progress.
    Deadlock,
    /// An instruction or form this interpreter does not implement (calls nested deeper than
    /// [`MAX_CALL_DEPTH`] too).
    Unsupported,
    /// Wrong launch arguments.
    Launch,
    /// An address formed from the result of a 32-bit integer `add`/`sub`/`mul`/`mad`/`shl`
    /// whose exact value did not fit 32 bits (carried through later arithmetic, conversions and
    /// moves; `and`/`or`/`xor` and calls clear it).
    WrappedAddress,
    /// Two blocks of one launch touch the same global bytes, at least one writing, without
    /// both accesses being atomic (checked by [`Machine::launch`] and
    /// [`Machine::launch_profiled`] over the blocks that run, when there are several).
    GlobalRace,
}

/// A `call` that led to where an [`ExecError`] happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSite {
    /// The calling function (the entry point for the outermost call).
    pub function: String,
    /// The file of the `call`.
    pub file: String,
    /// Its line.
    pub line: u32,
}

/// A stopped run: what happened, where and in which thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError {
    /// The entry point.
    pub kernel: String,
    /// The function the instruction is in: the entry point itself, or a `.func` it called.
    pub function: String,
    /// The calls that led there, innermost first (empty in the entry point itself).
    pub called_from: Vec<CallSite>,
    /// The PTX file of the instruction.
    pub file: String,
    /// 1-based source line of the instruction in that file.
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
        if self.function == self.kernel {
            write!(f, "{:?} in kernel {}", self.kind, self.kernel)?;
        } else {
            write!(
                f,
                "{:?} in function {} of kernel {}",
                self.kind, self.function, self.kernel
            )?;
        }
        write!(
            f,
            " at {}:{} `{}`, block {:?} thread {:?}: {}",
            self.file, self.line, self.instruction, self.block, self.thread, self.message
        )?;
        for (i, c) in self.called_from.iter().enumerate() {
            let sep = if i == 0 { " (called from" } else { "," };
            write!(f, "{sep} {} at {}:{}", c.function, c.file, c.line)?;
        }
        if !self.called_from.is_empty() {
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExecError {}

fn launch_error(kernel: &str, file: &str, message: String) -> Box<ExecError> {
    Box::new(ExecError {
        kernel: kernel.to_string(),
        function: kernel.to_string(),
        called_from: Vec::new(),
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
        let (index, block_params) = prepare(module, entry, grid, block, params)?;
        let launch = exec::Launch {
            module,
            func: &module.functions[index],
            entry: index,
            params: &block_params,
            grid,
            block,
        };
        let mut count = 0u64;
        // The cross-block race check: only grids of several blocks can race.
        self.mem.races = (grid.iter().product::<u32>() > 1).then(exec::Races::default);
        let outcome: Result<(), Box<ExecError>> =
            self.block_order(grid).into_iter().try_for_each(|b| {
                if let Some(r) = self.mem.races.as_mut() {
                    r.block = linear_block(grid, b) + 1;
                }
                count += exec::run_block::<false>(&launch, b, &mut self.mem, None)?;
                Ok(())
            });
        self.mem.races = None;
        outcome?;
        self.instructions += count;
        Ok(count)
    }

    /// [`launch`](Machine::launch) while profiling: runs the blocks `cfg` selects (all by
    /// default) and returns their counts — warp-level issues by [`InstrClass`], global accesses
    /// with their sectors, shared-memory wavefronts, loads in flight at waits, and each block's
    /// critical path in a clock simulation with `cfg.latency` (definitions in [`profile`]).
    /// Several times slower than `launch`; `launch` itself is unaffected.
    ///
    /// ```
    /// use ptx_interp::{InstrClass, Machine, Module, ProfileConfig};
    /// let module = Module::parse("k.ptx", r#"
    ///     .version 8.0
    ///     .target sm_80
    ///     .address_size 64
    ///     .visible .entry k(.param .u64 p)
    ///     {
    ///         .reg .b32 %t, %v;
    ///         .reg .b64 %a, %o;
    ///         ld.param.u64 %a, [p];
    ///         mov.u32 %t, %tid.x;
    ///         mul.wide.u32 %o, %t, 4;
    ///         add.u64 %a, %a, %o;
    ///         ld.global.u32 %v, [%a];
    ///         add.u32 %v, %v, 1;
    ///         st.global.u32 [%a], %v;
    ///         ret;
    ///     }
    /// "#).unwrap();
    /// let mut m = Machine::new();
    /// let buf = m.alloc(4 * 64);
    /// let p = m
    ///     .launch_profiled(&module, "k", [1, 1, 1], [64, 1, 1], &[&buf.to_le_bytes()],
    ///         &ProfileConfig::default())
    ///     .unwrap();
    /// let b = &p.blocks[0];
    /// assert_eq!(b.warps, 2);
    /// assert_eq!(b.issued(InstrClass::GlobalLoad), 2); // one per warp
    /// assert_eq!(b.global[0][0].sectors.len(), 4); // 32 lanes × 4 coalesced bytes
    /// ```
    ///
    /// # Errors
    /// The first [`ExecError`]; a block id outside the grid is an [`ErrorKind::Launch`] error.
    pub fn launch_profiled(
        &mut self,
        module: &Module,
        entry: &str,
        grid: [u32; 3],
        block: [u32; 3],
        params: &[&[u8]],
        cfg: &ProfileConfig,
    ) -> Result<LaunchProfile, Box<ExecError>> {
        let (index, block_params) = prepare(module, entry, grid, block, params)?;
        let launch = exec::Launch {
            module,
            func: &module.functions[index],
            entry: index,
            params: &block_params,
            grid,
            block,
        };
        let [gx, gy, gz] = grid;
        let linear = |b: [u32; 3]| linear_block(grid, b);
        let mut blocks = self.block_order(grid);
        let mut selected = Vec::new();
        if let Some(want) = &cfg.blocks {
            let total = u64::from(gx) * u64::from(gy) * u64::from(gz);
            if let Some(&bad) = want.iter().find(|&&b| u64::from(b) >= total) {
                return Err(launch_error(
                    entry,
                    &module.file,
                    format!("block {bad} is outside the grid of {total} blocks"),
                ));
            }
            selected = vec![false; total as usize];
            for &b in want {
                selected[b as usize] = true;
            }
            if !cfg.run_others {
                blocks.retain(|&b| selected[linear(b) as usize]);
            }
        }
        // With a stop rule, the listed blocks run first, in the list's order.
        if let (Some(want), Some(_)) = (&cfg.blocks, &cfg.stop) {
            let by_id = |id: u32| [id % gx, (id / gx) % gy, id / (gx * gy)];
            let mut listed: Vec<[u32; 3]> = Vec::with_capacity(want.len());
            let mut seen = vec![false; selected.len()];
            for &id in want {
                if !std::mem::replace(&mut seen[id as usize], true) {
                    listed.push(by_id(id));
                }
            }
            blocks.retain(|&b| !selected[linear(b) as usize]);
            listed.append(&mut blocks);
            blocks = listed;
        }
        let mut prof = profile::Prof::new(module, index, cfg.latency);
        let mut count = 0u64;
        let mut others = 0u64;
        let mut profiled = 0usize;
        let mut stopped = false;
        // The cross-block race check, as in `launch`, over the blocks that run.
        self.mem.races = (blocks.len() > 1).then(exec::Races::default);
        let outcome = blocks.into_iter().try_for_each(|b| {
            if let Some(r) = self.mem.races.as_mut() {
                r.block = linear(b) + 1;
            }
            let listed = selected.is_empty() || selected[linear(b) as usize];
            if listed && !stopped {
                count += exec::run_block::<true>(&launch, b, &mut self.mem, Some(&mut prof))?;
                profiled += 1;
                stopped = cfg
                    .stop
                    .is_some_and(|s| profiled >= s.min_blocks && count >= s.thread_instructions);
            } else if cfg.run_others {
                others += exec::run_block::<false>(&launch, b, &mut self.mem, None)?;
            }
            Ok::<(), Box<ExecError>>(())
        });
        self.mem.races = None;
        outcome?;
        self.instructions += count + others;
        Ok(LaunchProfile {
            thread_instructions: count,
            blocks: prof.blocks,
        })
    }

    /// The blocks of `grid` in the order they run: by id, or shuffled by `block_order_seed`.
    fn block_order(&self, grid: [u32; 3]) -> Vec<[u32; 3]> {
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
        blocks
    }
}

/// A block's linear id in `grid` (x fastest), as CUDA numbers them.
fn linear_block(grid: [u32; 3], b: [u32; 3]) -> u32 {
    b[0] + b[1] * grid[0] + b[2] * grid[0] * grid[1]
}

/// Checks a launch's entry, arguments and shape; returns the entry's index and the parameter
/// block.
fn prepare(
    module: &Module,
    entry: &str,
    grid: [u32; 3],
    block: [u32; 3],
    params: &[&[u8]],
) -> Result<(usize, Vec<u8>), Box<ExecError>> {
    let file = module.file.as_str();
    let index = module
        .functions
        .iter()
        .position(|f| f.name == entry && f.entry)
        .ok_or_else(|| launch_error(entry, file, format!("no entry `{entry}` in {file}")))?;
    let func = &module.functions[index];
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
    Ok((index, block_params))
}
