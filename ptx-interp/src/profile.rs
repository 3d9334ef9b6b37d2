//! Profiled launches ([`Machine::launch_profiled`](crate::Machine::launch_profiled)): counts a
//! GPU performance model needs, taken while the interpreter runs a kernel.
//!
//! Everything here is opt-in: [`Machine::launch`](crate::Machine::launch) runs the interpreter
//! with its profiling hooks compiled away (a `const` generic), so it costs nothing there.
//!
//! # What is counted, per block
//!
//! **Warp-level issues.** The interpreter runs a warp's lanes one after another, so a warp's
//! issues are defined from per-lane counts: for each warp and each static instruction (a
//! function and a pc), the warp issues it as many times as the lane that executed it most
//! often; the warp's issues are the sum over static instructions. That is exact for convergent
//! code, counts both sides of a divergent branch, and counts a loop whose trip count differs
//! between lanes at the longest trip count (SIMT). An instruction whose guard is false still
//! issues. Issues are split by [`InstrClass`]; `mma.sync` issues also by their opcode.
//!
//! **Warp-level accesses.** The `k`-th execution of a static memory instruction by each lane of
//! a warp belongs to one warp-level access, whose lanes are the lanes that executed it a `k`-th
//! time. Global ones (loads, stores, atomics, reductions; a generic address counts as global,
//! as the interpreter resolves it there) are listed per warp with their 32-byte sectors,
//! 128-byte lines and useful bytes ([`WarpAccess`]); shared ones are counted with their
//! wavefronts (bank conflicts): over the 32 banks of 4 bytes (bank = (address / 4) % 32), the
//! most *distinct 4-byte words* any bank holds among the bytes the lanes touch (lanes reading
//! the same word broadcast; a 64- or 128-bit access counts each of its words, so a `v4` access
//! by 32 lanes takes at least 4 wavefronts).
//!
//! **Memory-level parallelism** ([`InflightStats`]): see there.
//!
//! **Critical path** (a latency-only clock simulation; no issue-port or bandwidth limits):
//! each thread keeps a clock and a ready time per register. An instruction issues at the
//! maximum of the thread's clock and the ready times of the registers it reads (its guard
//! included); the clock becomes issue + 1 (issue + [`Latencies::branch`] for the
//! [`InstrClass::Branch`] class: `bra`, `call`, `ret`, `exit`); its destinations are ready at
//! issue + the latency of its class ([`Latencies`]). A global load's latency is
//! [`Latencies::global_first_touch`] when no earlier warp-level access of this launch touched
//! its 32-byte sector (every lane of the warp-level access that first touches a sector sees the
//! DRAM latency, since the warp issues them together), [`Latencies::global_l1_hit`] when an
//! earlier access of the same block touched it (the block's SM has it in L1; L1 capacity is not
//! modelled), else [`Latencies::global_retouch`];
//! every global access (stores, atomics, reductions too) marks its sectors touched. Stores and
//! reductions make nothing wait. At `bar.sync` every thread of the block leaves at the latest
//! arrival + [`Latencies::barrier`]. At `shfl.sync`/`vote.sync` the lanes leave (and their
//! results are ready) at the maximum over the lanes of their clocks and their operands' ready
//! times, + [`Latencies::shuffle`]. `mma.sync` waits for the lanes the same way, then each lane
//! goes on one cycle later and D is ready [`Latencies::mma`] cycles after. A `call` reads its
//! argument registers and the callee's parameter registers are ready when it issues; `ret`
//! reads the return-value registers and the caller's are ready when it issues. A block's
//! critical path is the latest clock any of its threads reaches. `%clock`/`%clock64` read the
//! thread's clock (just after the reading instruction issued).

use std::collections::HashMap;

use crate::exec::{Ctx, Thread, XResult};
use crate::ir::*;
use crate::Module;

/// The classes of warp-level instruction issues ([`BlockProfile::issues`] is indexed by
/// `class as usize`). Where the ISA leaves room, this crate decides:
///
/// - `mov` of anything but a special register, and `and`/`or`/`xor`/`not` on predicates, are
///   [`Int`](InstrClass::Int); `mov` of a special register (`%tid`, `%clock`, ...) is
///   [`Other`](InstrClass::Other).
/// - Float arithmetic (`add`/`sub`/`mul`/`fma`/`mad`/`min`/`max`/`neg`/`abs`/`copysign`,
///   `setp`/`selp` on a float type) is [`Fp64`](InstrClass::Fp64) on `.f64` and
///   [`Fp32`](InstrClass::Fp32) on `.f32`, `.f16` and `.bf16`.
/// - `rcp`, `sqrt`, `rsqrt`, `ex2`, `lg2`, `sin`, `cos`, `tanh` are [`Sfu`](InstrClass::Sfu) on
///   32 bits or less whatever their rounding (IEEE-rounded ones are really an SFU op plus a few
///   FMAs), and [`Fp64`](InstrClass::Fp64) on `.f64` (the hardware runs those as DFMA
///   sequences). `div.approx.f32`/`div.full.f32` are `Sfu`; `div.rn.f32` (and other rounded
///   `div.f32`) is `Fp32`; `div.f64` is `Fp64`; integer `div`/`rem` are `Int`.
/// - `ld`/`st`/`atom`/`red` without a state space (generic) count as global, as the
///   interpreter resolves generic addresses there. `red.shared` is
///   [`SharedAtomic`](InstrClass::SharedAtomic). `ld.param` (kernel parameters, and a frame's
///   `.param` variables in call sequences) is [`ParamLoad`](InstrClass::ParamLoad); `st.param`
///   is `Other`.
/// - `cvt` is [`Conversion`](InstrClass::Conversion) whatever its types; `cvta` is `Other`.
/// - `bar`/`barrier` are [`Barrier`](InstrClass::Barrier); `bra`, `call`, `ret`, `exit` are
///   [`Branch`](InstrClass::Branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstrClass {
    /// f32/f16/bf16 arithmetic, comparison and selection.
    Fp32,
    /// f64 arithmetic, comparison and selection (and f64 `rcp`/`sqrt`/`rsqrt`).
    Fp64,
    /// Integer arithmetic, logic, shifts, comparison, selection, `mov`, `popc`/`clz`/`brev`.
    Int,
    /// `cvt`.
    Conversion,
    /// Special-function unit: `ex2`, `lg2`, `rcp`, `rsqrt`, `sqrt`, `sin`, `cos`, `tanh`,
    /// `div.approx`/`div.full` on f32.
    Sfu,
    /// `ld.global` (and generic `ld`).
    GlobalLoad,
    /// `st.global` (and generic `st`).
    GlobalStore,
    /// `atom.global` (and generic `atom`).
    GlobalAtomic,
    /// `red.global` (and generic `red`).
    GlobalReduction,
    /// `ld.shared`.
    SharedLoad,
    /// `st.shared`.
    SharedStore,
    /// `atom.shared`, `red.shared`.
    SharedAtomic,
    /// `shfl.sync`.
    Shuffle,
    /// `vote.sync`.
    Vote,
    /// `bar.sync`, `barrier.sync`.
    Barrier,
    /// `bra`, `call`, `ret`, `exit`.
    Branch,
    /// `mma.sync`.
    Mma,
    /// `ld.param`.
    ParamLoad,
    /// Everything else: `mov` of special registers, `cvta`, `st.param`, unimplemented ones.
    Other,
}

impl InstrClass {
    /// The number of classes.
    pub const COUNT: usize = 19;

    /// Every class, in index order.
    pub const ALL: [InstrClass; InstrClass::COUNT] = [
        InstrClass::Fp32,
        InstrClass::Fp64,
        InstrClass::Int,
        InstrClass::Conversion,
        InstrClass::Sfu,
        InstrClass::GlobalLoad,
        InstrClass::GlobalStore,
        InstrClass::GlobalAtomic,
        InstrClass::GlobalReduction,
        InstrClass::SharedLoad,
        InstrClass::SharedStore,
        InstrClass::SharedAtomic,
        InstrClass::Shuffle,
        InstrClass::Vote,
        InstrClass::Barrier,
        InstrClass::Branch,
        InstrClass::Mma,
        InstrClass::ParamLoad,
        InstrClass::Other,
    ];

    /// A short name (`"fp32"`, `"global_load"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            InstrClass::Fp32 => "fp32",
            InstrClass::Fp64 => "fp64",
            InstrClass::Int => "int",
            InstrClass::Conversion => "conversion",
            InstrClass::Sfu => "sfu",
            InstrClass::GlobalLoad => "global_load",
            InstrClass::GlobalStore => "global_store",
            InstrClass::GlobalAtomic => "global_atomic",
            InstrClass::GlobalReduction => "global_reduction",
            InstrClass::SharedLoad => "shared_load",
            InstrClass::SharedStore => "shared_store",
            InstrClass::SharedAtomic => "shared_atomic",
            InstrClass::Shuffle => "shuffle",
            InstrClass::Vote => "vote",
            InstrClass::Barrier => "barrier",
            InstrClass::Branch => "branch",
            InstrClass::Mma => "mma",
            InstrClass::ParamLoad => "param_load",
            InstrClass::Other => "other",
        }
    }

    /// The class of an operation (see the type's documentation for the decisions).
    pub fn of(op: &Op) -> InstrClass {
        let float = |ty: Ty| match ty {
            Ty::F64 => InstrClass::Fp64,
            _ => InstrClass::Fp32,
        };
        match *op {
            Op::Mov {
                a: Operand::Special(_),
                ..
            } => InstrClass::Other,
            Op::Mov { .. } => InstrClass::Int,
            Op::Bin {
                op: BinOp::Div,
                ty: Ty::F32 | Ty::F16 | Ty::Bf16,
                round: Round::Default,
                ..
            } => InstrClass::Sfu,
            Op::Bin { ty, .. } | Op::Mad { ty, .. } | Op::Setp { ty, .. } | Op::Selp { ty, .. }
                if ty.is_float() =>
            {
                float(ty)
            }
            Op::Un { op, ty, .. } if ty.is_float() => match (op, ty) {
                (UnOp::Neg | UnOp::Abs, _) | (_, Ty::F64) => float(ty),
                _ => InstrClass::Sfu,
            },
            Op::Bin { .. } | Op::Mad { .. } | Op::Un { .. } | Op::Setp { .. } | Op::Selp { .. } => {
                InstrClass::Int
            }
            Op::Cvt { .. } => InstrClass::Conversion,
            Op::Cvta { .. } => InstrClass::Other,
            Op::Ld {
                addr:
                    Addr {
                        base: AddrBase::Local(_),
                        ..
                    },
                ..
            }
            | Op::Ld {
                space: Space::Param,
                ..
            } => InstrClass::ParamLoad,
            Op::Ld {
                space: Space::Shared,
                ..
            } => InstrClass::SharedLoad,
            Op::Ld { .. } => InstrClass::GlobalLoad,
            Op::St {
                addr:
                    Addr {
                        base: AddrBase::Local(_),
                        ..
                    },
                ..
            }
            | Op::St {
                space: Space::Param,
                ..
            } => InstrClass::Other,
            Op::St {
                space: Space::Shared,
                ..
            } => InstrClass::SharedStore,
            Op::St { .. } => InstrClass::GlobalStore,
            Op::Atom {
                space: Space::Shared,
                ..
            } => InstrClass::SharedAtomic,
            Op::Atom { d: None, .. } | Op::RedVec { .. } => InstrClass::GlobalReduction,
            Op::Atom { .. } => InstrClass::GlobalAtomic,
            Op::Shfl { .. } => InstrClass::Shuffle,
            Op::Vote { .. } => InstrClass::Vote,
            Op::Mma(_) => InstrClass::Mma,
            Op::Bar { .. } => InstrClass::Barrier,
            Op::Bra { .. } | Op::Call(_) | Op::Ret | Op::Exit => InstrClass::Branch,
            Op::Unsupported(_) => InstrClass::Other,
        }
    }
}

/// Latencies, in cycles, of the clock simulation (see the [module](self) documentation):
/// when an instruction's destination registers are ready after it issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latencies {
    /// [`InstrClass::Int`], [`InstrClass::ParamLoad`] and [`InstrClass::Other`].
    pub alu: u32,
    /// [`InstrClass::Fp32`].
    pub fp32: u32,
    /// [`InstrClass::Fp64`].
    pub fp64: u32,
    /// [`InstrClass::Conversion`].
    pub conversion: u32,
    /// [`InstrClass::Sfu`].
    pub sfu: u32,
    /// `ld.shared` ([`InstrClass::SharedLoad`]).
    pub shared: u32,
    /// A global load of a 32-byte sector no earlier warp-level access of this launch touched
    /// (DRAM).
    pub global_first_touch: u32,
    /// A global load of a sector another block touched before in this launch (L2).
    pub global_retouch: u32,
    /// A global load of a sector an earlier access of the same block touched (L1).
    pub global_l1_hit: u32,
    /// `atom` with a destination, global or shared.
    pub atomic: u32,
    /// `shfl.sync`/`vote.sync`: the lanes leave this long after the last of them is ready.
    pub shuffle: u32,
    /// `bar.sync`: the threads leave this long after the last arrives.
    pub barrier: u32,
    /// `mma.sync`: D is ready this long after it issues.
    pub mma: u32,
    /// [`InstrClass::Branch`]: the thread's next instruction issues this long after it (at
    /// least 1).
    pub branch: u32,
}

impl Default for Latencies {
    /// Rough H100-class figures from public microbenchmarks; a model should set its own.
    fn default() -> Latencies {
        Latencies {
            alu: 4,
            fp32: 4,
            fp64: 8,
            conversion: 6,
            sfu: 16,
            shared: 30,
            global_first_touch: 600,
            global_retouch: 260,
            global_l1_hit: 40,
            atomic: 600,
            shuffle: 24,
            barrier: 24,
            mma: 32,
            branch: 4,
        }
    }
}

/// What [`Machine::launch_profiled`](crate::Machine::launch_profiled) runs and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileConfig {
    /// Linear block ids (x + y·gx + z·gx·gy) to run; `None` runs every block. Blocks not listed
    /// do not run at all (a model scales their cost from the sampled ones). The listed blocks
    /// run in the launch's order (by id, or shuffled by
    /// [`Machine::block_order_seed`](crate::Machine::block_order_seed)); an id listed twice
    /// runs once; an id outside the grid is a launch error.
    pub blocks: Option<Vec<u32>>,
    /// With `blocks` set: run the blocks not listed too, without profiling them (their memory
    /// effects happen, as in [`Machine::launch`](crate::Machine::launch); their counts are not
    /// kept, nor in [`LaunchProfile::thread_instructions`]), so that later launches read
    /// complete outputs.
    pub run_others: bool,
    /// With `blocks` set: the listed blocks run in the list's order, and profiling stops once
    /// the profiled blocks have executed this many thread instructions and at least this many
    /// blocks ran; the listed blocks after that do not run (or run unprofiled with
    /// `run_others`). [`LaunchProfile::blocks`] says which ran.
    pub stop: Option<StopRule>,
    /// Latencies of the clock simulation.
    pub latency: Latencies,
}

/// When a sampled profile may stop early ([`ProfileConfig::stop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRule {
    /// Thread instructions of the profiled blocks after which no further block is profiled.
    pub thread_instructions: u64,
    /// Blocks profiled at least, whatever their instructions.
    pub min_blocks: usize,
}

/// A global warp-level access's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// `ld.global` (or generic `ld`).
    Load,
    /// `st.global` (or generic `st`).
    Store,
    /// `atom.global` (or generic `atom`).
    Atomic,
    /// `red.global` (or generic `red`).
    Reduction,
}

/// One warp-level global access: the lanes of a warp that executed a static memory
/// instruction for the same (`k`-th) time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarpAccess {
    /// Its kind.
    pub kind: AccessKind,
    /// The static instruction: an index into [`Module::functions`](crate::Module::functions)
    /// and the instruction's index in that function's code.
    pub instruction: (u32, u32),
    /// How many lanes took part.
    pub lanes: u32,
    /// Bytes each lane accesses (a vector's whole width: `ld.global.v4.f32` is 16).
    pub bytes_per_lane: u32,
    /// The distinct 32-byte sectors (address / 32) touched, in first-touch order (lanes in
    /// lane order, each lane's bytes in address order).
    pub sectors: Vec<u64>,
    /// The distinct 128-byte lines touched.
    pub lines: u32,
    /// The distinct bytes the lanes touch.
    pub useful_bytes: u32,
}

/// Memory-level parallelism of a block's global loads.
///
/// Per thread, a global load is *pending* from its execution until the first instruction that
/// reads one of its destination registers (an instruction that overwrites one without reading
/// it ends it too, without a wait; so does returning from the function whose register it is).
/// A *wait* is an executed instruction that reads a pending load's register; at a wait the
/// thread's bytes in flight are the sum of the bytes per lane of its pending loads (the ones
/// waited for included). Waits are taken to warp level like accesses: the lanes of a warp
/// that wait at the `k`-th execution of the same static instruction make one warp-level wait,
/// whose bytes are the sum of those lanes' bytes in flight (for convergent code, a lane's
/// bytes × the warp's lanes: "the bytes a warp has in flight when it waits").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InflightStats {
    /// Warp-level waits.
    pub waits: u64,
    /// The sum of their bytes in flight.
    pub total_warp_bytes_at_wait: u64,
    /// `total_warp_bytes_at_wait / waits` (0 without waits).
    pub mean_warp_bytes_at_wait: f64,
    /// The most bytes in flight at any warp-level wait.
    pub max_warp_bytes_at_wait: u64,
    /// Mean over the block's warps of the global loads a warp issues before it first waits:
    /// per warp, the most over its lanes of the global loads a lane executed before its first
    /// wait (all its global loads if it never waits).
    pub global_loads_before_first_wait: f64,
}

/// The counts of one block.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockProfile {
    /// Its linear id, x + y·gx + z·gx·gy.
    pub block: u32,
    /// Its warps (threads / 32, rounded up).
    pub warps: u32,
    /// Thread instructions it executed (as [`Machine::launch`](crate::Machine::launch) counts).
    pub thread_instructions: u64,
    /// Warp-level issues by [`InstrClass`] (index `class as usize`).
    pub issues: [u64; InstrClass::COUNT],
    /// Warp-level `mma.sync` issues by full opcode (shape and types), the opcodes this block
    /// issued, in order of their first appearance in the module.
    pub mma: Vec<(String, u64)>,
    /// Per warp, its warp-level global accesses in program order (ordered by the earliest
    /// position any of its lanes executed it at, among that lane's global accesses; ties by
    /// the lowest lane).
    pub global: Vec<Vec<WarpAccess>>,
    /// Warp-level shared-memory accesses (loads, stores, atomics).
    pub shared_requests: u64,
    /// Their wavefronts.
    pub shared_wavefronts: u64,
    /// Memory-level parallelism.
    pub inflight: InflightStats,
    /// The latest clock any thread of the block reaches in the clock simulation.
    pub critical_path_cycles: u64,
}

impl BlockProfile {
    /// Warp-level issues of one class.
    pub fn issued(&self, class: InstrClass) -> u64 {
        self.issues[class as usize]
    }

    /// Warp-level issues of every class.
    pub fn total_issues(&self) -> u64 {
        self.issues.iter().sum()
    }
}

/// What [`Machine::launch_profiled`](crate::Machine::launch_profiled) returns.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchProfile {
    /// Thread instructions executed by the blocks that ran.
    pub thread_instructions: u64,
    /// One per block that ran, in run order.
    pub blocks: Vec<BlockProfile>,
}

/// Where a static instruction accesses memory, for the profiler.
#[derive(Clone, Copy, Debug)]
enum Mem {
    None,
    Global {
        kind: AccessKind,
        bytes: u32,
        addr: Addr,
    },
    Shared {
        bytes: u32,
        addr: Addr,
    },
}

/// What the profiler knows of a static instruction.
struct InstrInfo {
    /// Its function (an index into the module's functions) and pc.
    at: (u32, u32),
    class: InstrClass,
    /// Registers it reads (its guard first, if any), in the running function's frame.
    reads: Vec<u16>,
    /// Registers it writes (a `call`'s return registers are written at the `ret`).
    writes: Vec<u16>,
    mem: Mem,
    /// An index into `Prof::mma_names`, or `u32::MAX`.
    mma: u32,
}

/// A pending global load of a thread.
#[derive(Clone, Copy)]
struct Pending {
    depth: u16,
    regs: [u16; 4],
    n: u8,
    bytes: u32,
}

impl Pending {
    fn holds(&self, depth: u16, regs: &[u16]) -> bool {
        self.depth == depth
            && self.regs[..self.n as usize]
                .iter()
                .any(|r| regs.contains(r))
    }
}

/// One execution of a memory instruction by a thread: the static instruction (global index),
/// which execution of it (1-based), the address and bytes.
#[derive(Clone, Copy)]
struct Rec {
    g: u32,
    k: u32,
    addr: u64,
    bytes: u32,
}

/// The profile state of one thread in the running block.
#[derive(Default)]
struct ThreadProf {
    /// Executions per static instruction (global index).
    counts: Vec<u32>,
    /// Ready times of the running frame's registers.
    ready: Vec<u64>,
    /// The callers' ready times, innermost last.
    ready_stack: Vec<Vec<u64>>,
    spare: Vec<Vec<u64>>,
    pending: Vec<Pending>,
    global: Vec<Rec>,
    shared: Vec<Rec>,
    /// Waits: static instruction, execution, bytes in flight.
    waits: Vec<(u32, u32, u32)>,
    loads: u32,
    loads_before_wait: Option<u32>,
    /// The issue cycle of the last branch-class instruction (for `call`/`ret`).
    last_issue: u64,
}

/// A warp-level access that first touched a sector.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AccessId {
    block: u32,
    warp: u32,
    g: u32,
    k: u32,
}

/// The profiler of one launch.
pub(crate) struct Prof {
    lat: Latencies,
    /// Per function, the global index of its first instruction (`u32::MAX` for a function
    /// the entry cannot call).
    base: Vec<u32>,
    info: Vec<InstrInfo>,
    mma_names: Vec<String>,
    touched: HashMap<u64, AccessId>,
    /// The sectors the running block touched (its L1), with the access that touched each first.
    block_touched: HashMap<u64, AccessId>,
    /// Blocks started so far (tells accesses of different blocks apart).
    block_seq: u32,
    threads: Vec<ThreadProf>,
    /// The profiles of the blocks that ran.
    pub(crate) blocks: Vec<BlockProfile>,
}

fn reg_of(o: Operand, out: &mut Vec<u16>) {
    if let Operand::Reg(r) = o {
        out.push(r);
    }
}

fn addr_reg(a: Addr, out: &mut Vec<u16>) {
    if let AddrBase::Reg(r) = a.base {
        out.push(r);
    }
}

/// The registers an instruction reads and writes.
fn regs_of(ins: &Instr, func: &Function) -> (Vec<u16>, Vec<u16>) {
    let (mut r, mut w) = (Vec::new(), Vec::new());
    if let Some((p, _)) = ins.guard {
        r.push(p);
    }
    match &ins.op {
        Op::Mov { d, a, .. } | Op::Un { d, a, .. } | Op::Cvt { d, a, .. } | Op::Cvta { d, a } => {
            reg_of(*a, &mut r);
            w.push(*d);
        }
        Op::Bin { d, a, b, .. } => {
            reg_of(*a, &mut r);
            reg_of(*b, &mut r);
            w.push(*d);
        }
        Op::Mad { d, a, b, c, .. } | Op::Selp { d, a, b, c, .. } => {
            reg_of(*a, &mut r);
            reg_of(*b, &mut r);
            reg_of(*c, &mut r);
            w.push(*d);
        }
        Op::Setp {
            d,
            d_not,
            a,
            b,
            combine,
            ..
        } => {
            reg_of(*a, &mut r);
            reg_of(*b, &mut r);
            if let Some((_, c, _)) = combine {
                reg_of(*c, &mut r);
            }
            w.push(*d);
            w.extend(*d_not);
        }
        Op::Ld { d, vec, addr, .. } => {
            addr_reg(*addr, &mut r);
            w.extend_from_slice(&d[..*vec as usize]);
        }
        Op::St { src, vec, addr, .. } => {
            addr_reg(*addr, &mut r);
            for s in &src[..*vec as usize] {
                reg_of(*s, &mut r);
            }
        }
        Op::RedVec { src, vec, addr } => {
            addr_reg(*addr, &mut r);
            for s in &src[..*vec as usize] {
                reg_of(*s, &mut r);
            }
        }
        Op::Atom { d, addr, a, b, .. } => {
            addr_reg(*addr, &mut r);
            reg_of(*a, &mut r);
            reg_of(*b, &mut r);
            w.extend(*d);
        }
        Op::Shfl {
            d,
            d_pred,
            a,
            b,
            c,
            mask,
            ..
        } => {
            for o in [*a, *b, *c, *mask] {
                reg_of(o, &mut r);
            }
            w.push(*d);
            w.extend(*d_pred);
        }
        Op::Vote { d, a, mask, .. } => {
            reg_of(*a, &mut r);
            reg_of(*mask, &mut r);
            w.push(*d);
        }
        Op::Mma(m) => {
            r.extend_from_slice(&m.a[..m.shape.a_regs()]);
            r.extend_from_slice(&m.b[..m.shape.b_regs()]);
            for c in m.c {
                reg_of(c, &mut r);
            }
            w.extend_from_slice(&m.d);
        }
        Op::Bar { id } => reg_of(*id, &mut r),
        Op::Call(c) => {
            for a in &c.args {
                if let CallArg::Value(o) = a {
                    reg_of(*o, &mut r);
                }
            }
        }
        Op::Ret => {
            for f in &func.rets {
                if let FormalLoc::Reg(x) = f.loc {
                    r.push(x);
                }
            }
        }
        Op::Bra { .. } | Op::Exit | Op::Unsupported(_) => {}
    }
    (r, w)
}

fn mem_of(op: &Op, class: InstrClass) -> Mem {
    let kind = match class {
        InstrClass::GlobalLoad => AccessKind::Load,
        InstrClass::GlobalStore => AccessKind::Store,
        InstrClass::GlobalAtomic => AccessKind::Atomic,
        InstrClass::GlobalReduction => AccessKind::Reduction,
        InstrClass::SharedLoad | InstrClass::SharedStore | InstrClass::SharedAtomic => {
            AccessKind::Load
        }
        _ => return Mem::None,
    };
    let (bytes, addr) = match *op {
        Op::Ld { ty, vec, addr, .. } | Op::St { ty, vec, addr, .. } => {
            (ty.bytes() as u32 * u32::from(vec), addr)
        }
        Op::Atom { ty, addr, .. } => (ty.bytes() as u32, addr),
        Op::RedVec { vec, addr, .. } => (4 * u32::from(vec), addr),
        _ => return Mem::None,
    };
    match class {
        InstrClass::SharedLoad | InstrClass::SharedStore | InstrClass::SharedAtomic => {
            Mem::Shared { bytes, addr }
        }
        _ => Mem::Global { kind, bytes, addr },
    }
}

impl Prof {
    /// A profiler for launches of `module`'s functions.
    /// A profiler for launches of entry `entry` of `module`: the static instructions it indexes
    /// are those of the entry and of the functions it can call.
    pub(crate) fn new(module: &Module, entry: usize, lat: Latencies) -> Prof {
        let mut reachable = vec![false; module.functions.len()];
        let mut todo = vec![entry];
        while let Some(f) = todo.pop() {
            if std::mem::replace(&mut reachable[f], true) {
                continue;
            }
            for ins in &module.functions[f].code {
                if let Op::Call(c) = &ins.op {
                    todo.push(c.func);
                }
            }
        }
        let mut base = vec![u32::MAX; module.functions.len()];
        let mut info = Vec::new();
        let mut mma_names: Vec<String> = Vec::new();
        for (fi, f) in module.functions.iter().enumerate() {
            if !reachable[fi] {
                continue;
            }
            base[fi] = info.len() as u32;
            for (pc, ins) in f.code.iter().enumerate() {
                let class = InstrClass::of(&ins.op);
                let (reads, writes) = regs_of(ins, f);
                let mma = match &ins.op {
                    Op::Mma(m) => match mma_names.iter().position(|n| *n == m.opcode) {
                        Some(i) => i as u32,
                        None => {
                            mma_names.push(m.opcode.clone());
                            (mma_names.len() - 1) as u32
                        }
                    },
                    _ => u32::MAX,
                };
                info.push(InstrInfo {
                    at: (fi as u32, pc as u32),
                    class,
                    reads,
                    writes,
                    mem: mem_of(&ins.op, class),
                    mma,
                });
            }
        }
        Prof {
            lat,
            base,
            info,
            mma_names,
            touched: HashMap::new(),
            block_touched: HashMap::new(),
            block_seq: 0,
            threads: Vec::new(),
            blocks: Vec::new(),
        }
    }

    fn latency(&self, class: InstrClass) -> u64 {
        let l = &self.lat;
        u64::from(match class {
            InstrClass::Fp32 => l.fp32,
            InstrClass::Fp64 => l.fp64,
            InstrClass::Conversion => l.conversion,
            InstrClass::Sfu => l.sfu,
            InstrClass::SharedLoad => l.shared,
            InstrClass::GlobalLoad => l.global_first_touch,
            InstrClass::GlobalAtomic | InstrClass::SharedAtomic => l.atomic,
            InstrClass::Shuffle | InstrClass::Vote => l.shuffle,
            InstrClass::Barrier => l.barrier,
            InstrClass::Mma => l.mma,
            InstrClass::Branch => l.branch,
            InstrClass::Int
            | InstrClass::ParamLoad
            | InstrClass::Other
            | InstrClass::GlobalStore
            | InstrClass::GlobalReduction
            | InstrClass::SharedStore => l.alu,
        })
    }

    /// Resets the per-thread state for a block of `n` threads whose entry has `regs` registers.
    pub(crate) fn start_block(&mut self, n: usize, regs: usize) {
        let ni = self.info.len();
        self.block_touched.clear();
        self.threads.resize_with(n, ThreadProf::default);
        for tp in &mut self.threads {
            tp.counts.clear();
            tp.counts.resize(ni, 0);
            tp.ready.clear();
            tp.ready.resize(regs, 0);
            tp.spare.append(&mut tp.ready_stack);
            tp.pending.clear();
            tp.global.clear();
            tp.shared.clear();
            tp.waits.clear();
            tp.loads = 0;
            tp.loads_before_wait = None;
            tp.last_issue = 0;
        }
    }

    /// An instruction whose guard is false: it issues, reading only its guard.
    pub(crate) fn skipped(&mut self, t: &mut Thread, guard: u16) {
        let g = self.base[t.func] as usize + t.pc;
        let tp = &mut self.threads[t.linear as usize];
        tp.counts[g] += 1;
        let issue = t.clock.max(tp.ready[guard as usize]);
        t.clock = issue
            + if self.info[g].class == InstrClass::Branch {
                u64::from(self.lat.branch.max(1))
            } else {
                1
            };
    }

    /// After `call` pushed the callee's frame: its parameter registers are ready when the call
    /// issued.
    pub(crate) fn called(&mut self, t: &Thread, callee: &Function) {
        let tp = &mut self.threads[t.linear as usize];
        let mut ready = tp.spare.pop().unwrap_or_default();
        ready.clear();
        ready.resize(callee.regs.len(), 0);
        for f in &callee.args {
            if let FormalLoc::Reg(r) = f.loc {
                ready[r as usize] = tp.last_issue;
            }
        }
        let caller = std::mem::replace(&mut tp.ready, ready);
        tp.ready_stack.push(caller);
    }

    /// After `ret` popped back to the caller (at the instruction after call `c`): the call's
    /// return registers are ready when the `ret` issued; loads pending in the callee's frame
    /// are dropped.
    pub(crate) fn returned(&mut self, t: &Thread, c: &Call) {
        let tp = &mut self.threads[t.linear as usize];
        let Some(caller) = tp.ready_stack.pop() else {
            return;
        };
        let callee = std::mem::replace(&mut tp.ready, caller);
        tp.spare.push(callee);
        let depth = t.depth() as u16;
        let mut rets = Vec::new();
        for r in &c.rets {
            if let CallArg::Value(Operand::Reg(r)) = *r {
                tp.ready[r as usize] = tp.last_issue;
                rets.push(r);
            }
        }
        tp.pending
            .retain(|p| p.depth < depth || (p.depth == depth && !p.holds(depth, &rets)));
    }

    /// The arrival of every thread of the block at a `bar.sync`: all leave at the latest
    /// arrival + the barrier latency.
    pub(crate) fn barrier(&mut self, threads: &mut [Thread]) {
        let last = threads.iter().map(|t| t.clock).max().unwrap_or(0);
        for t in threads {
            t.clock = last + u64::from(self.lat.barrier);
        }
    }

    /// A warp collective just executed by `lanes` (thread indices; all at the same
    /// instruction).
    pub(crate) fn collective(&mut self, threads: &mut [Thread], lanes: &[usize]) {
        let Some(&first) = lanes.first() else {
            return;
        };
        let g = self.base[threads[first].func] as usize + threads[first].pc;
        let info = &self.info[g];
        let mut at = 0u64;
        for &i in lanes {
            let tp = &self.threads[threads[i].linear as usize];
            let ready = info.reads.iter().map(|&r| tp.ready[r as usize]).max();
            at = at.max(threads[i].clock).max(ready.unwrap_or(0));
        }
        let (clock, ready) = if info.class == InstrClass::Mma {
            (at + 1, at + u64::from(self.lat.mma))
        } else {
            let leave = at + u64::from(self.lat.shuffle);
            (leave, leave)
        };
        for &i in lanes {
            let t = &mut threads[i];
            t.clock = clock;
            let tp = &mut self.threads[t.linear as usize];
            for &w in &info.writes {
                tp.ready[w as usize] = ready;
            }
        }
    }

    /// Folds the finished block's per-thread counts into its [`BlockProfile`].
    pub(crate) fn finish_block(
        &mut self,
        block: u32,
        clocks: impl Iterator<Item = u64>,
        instructions: u64,
    ) {
        let critical_path_cycles = clocks.max().unwrap_or(0);
        let n = self.threads.len();
        let nwarps = n.div_ceil(32);
        let mut issues = [0u64; InstrClass::COUNT];
        let mut mma = vec![0u64; self.mma_names.len()];
        let mut global = Vec::with_capacity(nwarps);
        let (mut shared_requests, mut shared_wavefronts) = (0u64, 0u64);
        let mut inflight = InflightStats::default();
        let mut loads_before_wait = 0u64;
        let mut maxes = vec![0u32; self.info.len()];
        for w in 0..nwarps {
            let lanes = &self.threads[w * 32..(w * 32 + 32).min(n)];
            maxes.fill(0);
            for tp in lanes {
                for (m, &c) in maxes.iter_mut().zip(&tp.counts) {
                    *m = (*m).max(c);
                }
            }
            for (info, &m) in self.info.iter().zip(&maxes) {
                if m != 0 {
                    issues[info.class as usize] += u64::from(m);
                    if info.mma != u32::MAX {
                        mma[info.mma as usize] += u64::from(m);
                    }
                }
            }
            // Global accesses.
            let groups = group(lanes, |tp| &tp.global);
            let mut accesses = Vec::with_capacity(groups.len());
            for grp in groups {
                let info = &self.info[grp.g as usize];
                let Mem::Global { kind, bytes, .. } = info.mem else {
                    unreachable!("global records come from global accesses")
                };
                accesses.push(warp_access(info.at, kind, bytes, &grp));
            }
            global.push(accesses);
            // Shared accesses.
            for grp in group(lanes, |tp| &tp.shared) {
                shared_requests += 1;
                shared_wavefronts += wavefronts(&grp.members);
            }
            // Waits.
            let mut waits: HashMap<(u32, u32), u64> = HashMap::new();
            for tp in lanes {
                for &(g, k, bytes) in &tp.waits {
                    *waits.entry((g, k)).or_insert(0) += u64::from(bytes);
                }
            }
            inflight.waits += waits.len() as u64;
            for &b in waits.values() {
                inflight.total_warp_bytes_at_wait += b;
                inflight.max_warp_bytes_at_wait = inflight.max_warp_bytes_at_wait.max(b);
            }
            loads_before_wait += lanes
                .iter()
                .map(|tp| u64::from(tp.loads_before_wait.unwrap_or(tp.loads)))
                .max()
                .unwrap_or(0);
        }
        if inflight.waits > 0 {
            inflight.mean_warp_bytes_at_wait =
                inflight.total_warp_bytes_at_wait as f64 / inflight.waits as f64;
        }
        if nwarps > 0 {
            inflight.global_loads_before_first_wait = loads_before_wait as f64 / nwarps as f64;
        }
        self.blocks.push(BlockProfile {
            block,
            warps: nwarps as u32,
            thread_instructions: instructions,
            issues,
            mma: self
                .mma_names
                .iter()
                .zip(mma)
                .filter(|&(_, n)| n != 0)
                .map(|(name, n)| (name.clone(), n))
                .collect(),
            global,
            shared_requests,
            shared_wavefronts,
            inflight,
            critical_path_cycles,
        });
        self.block_seq += 1;
    }
}

/// The lanes of one warp-level access.
struct Group {
    g: u32,
    /// (position among its lane's accesses, lane) of its earliest lane.
    order: (usize, usize),
    /// Address and bytes per lane, in lane order.
    members: Vec<(u64, u32)>,
}

/// Groups a warp's lanes' records into warp-level accesses, in program order.
fn group(lanes: &[ThreadProf], recs: impl Fn(&ThreadProf) -> &Vec<Rec>) -> Vec<Group> {
    let mut index: HashMap<(u32, u32), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (lane, tp) in lanes.iter().enumerate() {
        for (j, r) in recs(tp).iter().enumerate() {
            let i = *index.entry((r.g, r.k)).or_insert_with(|| {
                groups.push(Group {
                    g: r.g,
                    order: (j, lane),
                    members: Vec::new(),
                });
                groups.len() - 1
            });
            let grp = &mut groups[i];
            grp.order = grp.order.min((j, lane));
            grp.members.push((r.addr, r.bytes));
        }
    }
    groups.sort_by_key(|g| g.order);
    groups
}

fn warp_access(at: (u32, u32), kind: AccessKind, bytes: u32, grp: &Group) -> WarpAccess {
    let mut sectors: Vec<u64> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(grp.members.len());
    for &(addr, b) in &grp.members {
        let end = addr.saturating_add(u64::from(b.max(1)) - 1);
        for s in addr / 32..=end / 32 {
            if !sectors.contains(&s) {
                sectors.push(s);
            }
        }
        for l in addr / 128..=end / 128 {
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        ranges.push((addr, end.saturating_add(1)));
    }
    ranges.sort_unstable();
    let (mut useful, mut reach) = (0u64, 0u64);
    for (s, e) in ranges {
        let s = s.max(reach);
        if e > s {
            useful += e - s;
        }
        reach = reach.max(e);
    }
    WarpAccess {
        kind,
        instruction: at,
        lanes: grp.members.len() as u32,
        bytes_per_lane: bytes,
        sectors,
        lines: lines.len() as u32,
        useful_bytes: useful as u32,
    }
}

/// Wavefronts of a shared warp-level access: over the 32 banks, the most distinct 4-byte words
/// in one bank.
fn wavefronts(members: &[(u64, u32)]) -> u64 {
    let mut words: Vec<u64> = Vec::with_capacity(members.len());
    for &(addr, b) in members {
        let end = addr.saturating_add(u64::from(b.max(1)) - 1);
        words.extend(addr / 4..=end / 4);
    }
    words.sort_unstable();
    words.dedup();
    let mut banks = [0u64; 32];
    for w in words {
        banks[(w % 32) as usize] += 1;
    }
    banks.into_iter().max().unwrap_or(0).max(1)
}

/// The profiling of one executed instruction (its guard true or absent), before it runs:
/// counts it, finds the waits it makes, issues it on the thread's clock and records its memory
/// access. Warp collectives and `bar.sync` are timed when they resolve.
#[inline(never)]
pub(crate) fn executed(ctx: &mut Ctx<'_>, t: &mut Thread) -> XResult<()> {
    let Some(p) = ctx.prof.as_deref() else {
        return Ok(());
    };
    let g = p.base[t.func] as usize + t.pc;
    let mem = p.info[g].mem;
    let addr = match mem {
        Mem::None => 0,
        Mem::Global { addr, .. } | Mem::Shared { addr, .. } => ctx.addr(t, addr)?,
    };
    let Some(p) = ctx.prof.as_deref_mut() else {
        return Ok(());
    };
    let lat_global = (
        u64::from(p.lat.global_first_touch),
        u64::from(p.lat.global_retouch),
        u64::from(p.lat.global_l1_hit),
    );
    let branch = u64::from(p.lat.branch.max(1));
    let latency = p.latency(p.info[g].class);
    let info = &p.info[g];
    let tp = &mut p.threads[t.linear as usize];
    tp.counts[g] += 1;
    let k = tp.counts[g];
    let depth = t.depth() as u16;
    // Waits, and loads ended by a write.
    if !tp.pending.is_empty() {
        if tp.pending.iter().any(|q| q.holds(depth, &info.reads)) {
            let bytes = tp.pending.iter().map(|q| q.bytes).sum();
            tp.waits.push((g as u32, k, bytes));
            if tp.loads_before_wait.is_none() {
                tp.loads_before_wait = Some(tp.loads);
            }
            tp.pending.retain(|q| !q.holds(depth, &info.reads));
        }
        tp.pending.retain(|q| !q.holds(depth, &info.writes));
    }
    let class = info.class;
    if matches!(
        class,
        InstrClass::Shuffle | InstrClass::Vote | InstrClass::Mma
    ) {
        return Ok(());
    }
    let issue = info
        .reads
        .iter()
        .fold(t.clock, |c, &r| c.max(tp.ready[r as usize]));
    t.clock = issue
        + if class == InstrClass::Branch {
            branch
        } else {
            1
        };
    if class == InstrClass::Branch {
        tp.last_issue = issue;
    }
    let mut ready = issue + latency;
    match mem {
        Mem::None => {}
        Mem::Shared { bytes, .. } => tp.shared.push(Rec {
            g: g as u32,
            k,
            addr,
            bytes,
        }),
        Mem::Global { kind, bytes, .. } => {
            tp.global.push(Rec {
                g: g as u32,
                k,
                addr,
                bytes,
            });
            let me = AccessId {
                block: p.block_seq,
                warp: t.linear / 32,
                g: g as u32,
                k,
            };
            let end = addr.saturating_add(u64::from(bytes.max(1)) - 1);
            // The slowest sector decides: DRAM, then L2, then L1. The lanes of one warp-level
            // access (issued together) all see what its first lane sees.
            let (mut first, mut l2) = (false, false);
            for s in addr / 32..=end / 32 {
                let owner = *p.touched.entry(s).or_insert(me);
                first |= owner == me;
                let block_owner = *p.block_touched.entry(s).or_insert(me);
                l2 |= block_owner == me;
            }
            if kind == AccessKind::Load {
                ready = issue
                    + if first {
                        lat_global.0
                    } else if l2 {
                        lat_global.1
                    } else {
                        lat_global.2
                    };
                let tp = &mut p.threads[t.linear as usize];
                tp.loads += 1;
                let mut q = Pending {
                    depth,
                    regs: [0; 4],
                    n: info.writes.len().min(4) as u8,
                    bytes,
                };
                q.regs[..q.n as usize].copy_from_slice(&info.writes[..q.n as usize]);
                tp.pending.push(q);
            }
        }
    }
    let tp = &mut p.threads[t.linear as usize];
    for &w in &info.writes {
        tp.ready[w as usize] = ready;
    }
    Ok(())
}
