//! The execution engine: a grid of blocks run one after another; inside a block every thread
//! runs on its own until it reaches a synchronisation point (`bar.sync`, or a warp-collective
//! `shfl.sync`/`vote.sync`), which is resolved once every thread it waits for has arrived. That
//! gives each thread its own program counter (divergence and reconvergence come for free, as
//! with independent thread scheduling) and makes the warp-collectives see their 32 lanes in
//! lockstep. Shared memory is shadowed per byte for the sanitizer checks.

use crate::ir::*;
use crate::profile::{self, Prof};
use crate::{CallSite, ErrorKind, ExecError, Module};

/// Calls nested deeper than this are an error (unbounded recursion, most likely).
pub(crate) const MAX_CALL_DEPTH: usize = 64;

/// Errors are rare and large: keep them off the hot path's return values.
pub(crate) type XResult<T> = Result<T, Box<ExecError>>;

/// Global addresses: buffer `i` starts at `(i + 1) << BUFFER_SHIFT`, so a pointer names its
/// buffer and every access can be bounds-checked against that buffer alone.
pub(crate) const BUFFER_SHIFT: u32 = 40;

/// Device memory: one byte vector per allocation.
#[derive(Default)]
pub(crate) struct Memory {
    pub buffers: Vec<Option<Vec<u8>>>,
    /// The running launch's cross-block race shadow (`None`: not checked, e.g. one block).
    pub races: Option<Races>,
}

/// Who touched a 2-byte granule of global memory in this launch: block ids + 1 (0: none).
#[derive(Clone, Copy, Default)]
struct Granule {
    writer: u32,
    reader: u32,
    atomic: u32,
    /// A second block read it too.
    readers: bool,
}

const GRANULES_PER_CHUNK: usize = 2048;

/// The cross-block race check of one launch. Blocks of a launch may run in any order and at
/// once, so two of them touching the same global bytes, one writing, is a race unless both
/// accesses are atomic. Shadow granules (2 bytes: the smallest store the kernels make) are
/// allocated in chunks as they are touched.
#[derive(Default)]
pub(crate) struct Races {
    /// The running block's linear id + 1.
    pub block: u32,
    chunks: std::collections::HashMap<u64, usize>,
    store: Vec<Box<[Granule; GRANULES_PER_CHUNK]>>,
}

/// How an access touches memory, for the race check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touch {
    Read,
    Write,
    Atomic,
}

impl Races {
    /// Records `len` bytes at `addr` touched by the running block; the first conflicting
    /// earlier block (id) if any.
    pub(crate) fn touch(&mut self, addr: u64, len: usize, how: Touch) -> Option<u32> {
        let me = self.block;
        let first = addr >> 1;
        let last = (addr + len.max(1) as u64 - 1) >> 1;
        for g in first..=last {
            let key = g / GRANULES_PER_CHUNK as u64;
            let next = self.store.len();
            let at = *self.chunks.entry(key).or_insert(next);
            if at == next {
                self.store
                    .push(Box::new([Granule::default(); GRANULES_PER_CHUNK]));
            }
            let cell = &mut self.store[at][(g % GRANULES_PER_CHUNK as u64) as usize];
            let other = |id: u32| id != 0 && id != me;
            let conflict = match how {
                Touch::Read => [cell.writer, cell.atomic].into_iter().find(|&b| other(b)),
                Touch::Write => [cell.writer, cell.reader, cell.atomic]
                    .into_iter()
                    .find(|&b| other(b))
                    .or((cell.readers).then_some(cell.reader)),
                Touch::Atomic => [cell.writer, cell.reader]
                    .into_iter()
                    .find(|&b| other(b))
                    .or((cell.readers).then_some(cell.reader)),
            };
            if conflict.is_some() {
                return conflict;
            }
            match how {
                Touch::Read if cell.reader == 0 => cell.reader = me,
                Touch::Read if cell.reader != me => cell.readers = true,
                Touch::Read => {}
                Touch::Write => cell.writer = me,
                Touch::Atomic if cell.atomic == 0 => cell.atomic = me,
                Touch::Atomic => {}
            }
        }
        None
    }
}

impl Memory {
    /// Records an access for the race check; an error message when it races with another
    /// block's earlier access.
    pub(crate) fn touch(&mut self, addr: u64, len: usize, how: Touch) -> Result<(), String> {
        let Some(races) = self.races.as_mut() else {
            return Ok(());
        };
        match races.touch(addr, len, how) {
            None => Ok(()),
            Some(other) => {
                let what = match how {
                    Touch::Read => "reads",
                    Touch::Write => "writes",
                    Touch::Atomic => "updates atomically",
                };
                Err(format!(
                    "this block {what} global bytes at {addr:#x} that block {} of the same \
                     launch also touched, one of them writing without both being atomic: \
                     blocks run in any order and at once",
                    other - 1
                ))
            }
        }
    }

    /// The buffer and offset of `len` bytes at `addr`, or why not.
    fn locate(&mut self, addr: u64, len: usize) -> Result<(&mut Vec<u8>, usize), String> {
        let id = (addr >> BUFFER_SHIFT) as usize;
        let offset = (addr & ((1u64 << BUFFER_SHIFT) - 1)) as usize;
        if id == 0 {
            return Err(format!(
                "address {addr:#x} is not in any buffer (null or a bad pointer)"
            ));
        }
        let buf = match self.buffers.get_mut(id - 1) {
            Some(Some(b)) => b,
            _ => return Err(format!("address {addr:#x} is in no live buffer")),
        };
        let size = buf.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(format!(
                "{len} bytes at offset {offset} of a {size}-byte buffer"
            ));
        }
        Ok((buf, offset))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    /// Waiting at `bar.sync` with this barrier id.
    Barrier(u32),
    /// Waiting at a warp-collective instruction.
    Warp,
    Exited,
}

/// The registers and `.param` area of one function activation, with their init shadows.
#[derive(Default)]
struct Frame {
    regs: Vec<u64>,
    init: Vec<bool>,
    wrapped: Vec<bool>,
    local: Vec<u8>,
    local_init: Vec<bool>,
    /// The function, and (saved caller frames) the pc of its `call`.
    func: usize,
    pc: usize,
}

pub(crate) struct Thread {
    /// The running function's frame (its `func`/`pc` fields unused: see below).
    regs: Vec<u64>,
    init: Vec<bool>,
    /// Per register: its value derives from a 32-bit integer operation whose exact result did
    /// not fit 32 bits (see [`wraps`]); such a value may not form an address.
    wrapped: Vec<bool>,
    local: Vec<u8>,
    local_init: Vec<bool>,
    /// The running function (an index into the module's functions) and its pc.
    pub(crate) func: usize,
    pub(crate) pc: usize,
    /// The callers' frames, innermost last.
    frames: Vec<Frame>,
    /// Frames of returned calls, kept to reuse their allocations.
    spare: Vec<Frame>,
    state: State,
    tid: [u32; 3],
    pub(crate) linear: u32,
    /// The simulated clock of a profiled launch (0 otherwise): what `%clock` reads.
    pub(crate) clock: u64,
}

impl Thread {
    /// How many calls deep the thread is (0 in the entry point).
    pub(crate) fn depth(&self) -> usize {
        self.frames.len()
    }
}

/// A thread that has touched a shared byte in the current epoch: `NONE`, a thread index + 1,
/// `MANY` (several readers) or `ATOMIC`.
const NONE: u32 = 0;
const MANY: u32 = u32::MAX;
const ATOMIC: u32 = u32::MAX - 1;

/// Shared memory of one block with its shadow state.
struct Shared {
    data: Vec<u8>,
    written: Vec<bool>,
    writer: Vec<u32>,
    writer_epoch: Vec<u32>,
    reader: Vec<u32>,
    reader_epoch: Vec<u32>,
    /// Barrier intervals elapsed; accesses race only within one.
    epoch: u32,
}

impl Shared {
    fn new(bytes: usize) -> Shared {
        Shared {
            data: vec![0; bytes],
            written: vec![false; bytes],
            writer: vec![NONE; bytes],
            writer_epoch: vec![0; bytes],
            reader: vec![NONE; bytes],
            reader_epoch: vec![0; bytes],
            epoch: 1,
        }
    }

    fn check(&self, addr: u64, len: usize) -> Result<usize, String> {
        let a = addr as usize;
        if addr > usize::MAX as u64 || a.checked_add(len).is_none_or(|e| e > self.data.len()) {
            return Err(format!(
                "{len} bytes at shared offset {addr} of {} bytes",
                self.data.len()
            ));
        }
        Ok(a)
    }

    fn read(&mut self, addr: u64, len: usize, thread: u32) -> Result<u64, (ErrorKind, String)> {
        let a = self
            .check(addr, len)
            .map_err(|m| (ErrorKind::OutOfBounds, m))?;
        let me = thread + 1;
        for i in a..a + len {
            if !self.written[i] {
                return Err((
                    ErrorKind::UninitializedShared,
                    format!("read of shared byte {i}, which no thread has written"),
                ));
            }
            if self.writer_epoch[i] == self.epoch && self.writer[i] != me && self.writer[i] != NONE
            {
                let who = self.writer[i];
                let what = if who == ATOMIC {
                    "an atomic".to_string()
                } else {
                    format!("thread {}", who - 1)
                };
                return Err((
                    ErrorKind::SharedRace,
                    format!("read of shared byte {i} written by {what} since the last barrier"),
                ));
            }
            if self.reader_epoch[i] != self.epoch {
                self.reader_epoch[i] = self.epoch;
                self.reader[i] = me;
            } else if self.reader[i] != me {
                self.reader[i] = MANY;
            }
        }
        let mut v = 0u64;
        for (k, &b) in self.data[a..a + len].iter().enumerate() {
            v |= u64::from(b) << (8 * k);
        }
        Ok(v)
    }

    fn write(
        &mut self,
        addr: u64,
        len: usize,
        value: u64,
        thread: u32,
        atomic: bool,
    ) -> Result<(), (ErrorKind, String)> {
        let a = self
            .check(addr, len)
            .map_err(|m| (ErrorKind::OutOfBounds, m))?;
        let me = if atomic { ATOMIC } else { thread + 1 };
        for i in a..a + len {
            let w = self.writer[i];
            if self.writer_epoch[i] == self.epoch && w != NONE && w != me {
                let what = if w == ATOMIC {
                    "an atomic".to_string()
                } else {
                    format!("thread {}", w - 1)
                };
                return Err((
                    ErrorKind::SharedRace,
                    format!(
                        "write of shared byte {i}, also written by {what} since the last barrier"
                    ),
                ));
            }
            let r = self.reader[i];
            if !atomic && self.reader_epoch[i] == self.epoch && r != NONE && r != thread + 1 {
                let what = if r == MANY {
                    "other threads".to_string()
                } else {
                    format!("thread {}", r - 1)
                };
                return Err((
                    ErrorKind::SharedRace,
                    format!("write of shared byte {i}, read by {what} since the last barrier"),
                ));
            }
            self.written[i] = true;
            self.writer[i] = me;
            self.writer_epoch[i] = self.epoch;
            self.data[i] = (value >> (8 * (i - a))) as u8;
        }
        Ok(())
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        ((v << (64 - bits)) as i64) >> (64 - bits)
    }
}

fn f32_of(v: u64) -> f32 {
    f32::from_bits(v as u32)
}

fn bits32(f: f32) -> u64 {
    u64::from(f.to_bits())
}

fn ftz32(f: f32) -> f32 {
    if f.is_subnormal() {
        0.0f32.copysign(f)
    } else {
        f
    }
}

/// PTX `max.f32`/`min.f32`: a NaN operand yields the other one; −0 < +0.
fn fmax(a: f64, b: f64, max: bool) -> f64 {
    if a.is_nan() {
        return b;
    }
    if b.is_nan() {
        return a;
    }
    if a == b {
        // Equal, perhaps zeros of opposite sign.
        let a_neg = a.is_sign_negative();
        return if a_neg == max { b } else { a };
    }
    if (a > b) == max {
        a
    } else {
        b
    }
}

/// Value of a float type as f64 and back.
fn float_in(v: u64, ty: Ty) -> f64 {
    match ty {
        Ty::F32 => f64::from(f32_of(v)),
        Ty::F64 => f64::from_bits(v),
        Ty::F16 => half::f16::from_bits(v as u16).to_f64(),
        _ => half::bf16::from_bits(v as u16).to_f64(),
    }
}

/// f64 to f32 with a rounding mode (`as f32` is round-to-nearest-even).
fn round_f32(x: f64, round: Round) -> f32 {
    let r = x as f32;
    if x.is_nan() || f64::from(r) == x {
        return r;
    }
    match round {
        Round::Zero if f64::from(r).abs() > x.abs() => toward_zero(r),
        Round::Down if f64::from(r) > x => next_down(r),
        Round::Up if f64::from(r) < x => next_up(r),
        _ => r,
    }
}

fn next_up(f: f32) -> f32 {
    if f.is_nan() || f == f32::INFINITY {
        return f;
    }
    if f == 0.0 {
        return f32::from_bits(1);
    }
    let b = f.to_bits();
    f32::from_bits(if f > 0.0 { b + 1 } else { b - 1 })
}

fn next_down(f: f32) -> f32 {
    -next_up(-f)
}

fn toward_zero(f: f32) -> f32 {
    if f > 0.0 {
        next_down(f)
    } else {
        next_up(f)
    }
}

/// Float to a float type's bits.
fn float_out(x: f64, ty: Ty, round: Round) -> Result<u64, String> {
    Ok(match ty {
        Ty::F64 => x.to_bits(),
        Ty::F32 => bits32(round_f32(x, round)),
        Ty::F16 | Ty::Bf16 => {
            if !matches!(round, Round::Nearest | Round::Default) {
                return Err(format!("cvt to {ty:?} with rounding {round:?}"));
            }
            // Through f32 first only when that is exact, to avoid double rounding.
            if ty == Ty::F16 {
                u64::from(half::f16::from_f64(x).to_bits())
            } else {
                u64::from(half::bf16::from_f64(x).to_bits())
            }
        }
        _ => return Err(format!("{ty:?} is not a float type")),
    })
}

/// Float to integer with PTX's saturation (NaN → 0).
fn float_to_int(x: f64, ty: Ty, round: Round) -> u64 {
    if x.is_nan() {
        return 0;
    }
    let r = match round {
        Round::Nearest => x.round_ties_even(),
        Round::Down => x.floor(),
        Round::Up => x.ceil(),
        _ => x.trunc(),
    };
    let bits = ty.bits();
    match ty {
        Ty::S(_) => {
            let lo = -(2f64.powi(bits as i32 - 1));
            let hi = 2f64.powi(bits as i32 - 1) - 1.0;
            (r.clamp(lo, hi) as i64 as u64) & mask(bits)
        }
        _ => {
            let hi = 2f64.powi(bits as i32) - 1.0;
            (r.clamp(0.0, hi) as u64) & mask(bits)
        }
    }
}

/// Everything one launch needs.
pub(crate) struct Launch<'a> {
    pub module: &'a Module,
    /// The entry point and its index in the module.
    pub func: &'a Function,
    pub entry: usize,
    pub params: &'a [u8],
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

pub(crate) struct Ctx<'a> {
    pub(crate) l: &'a Launch<'a>,
    ctaid: [u32; 3],
    instructions: u64,
    /// The profiler of a profiled launch.
    pub(crate) prof: Option<&'a mut Prof>,
}

impl Ctx<'_> {
    /// The file, line and text of instruction `pc` of function `func` (its last instruction's
    /// file and line when `pc` is past its end).
    fn site(&self, func: usize, pc: usize) -> (String, u32, String) {
        let m = self.l.module;
        let code = &m.functions[func].code;
        match code.get(pc) {
            Some(i) => (m.files[i.file as usize].clone(), i.line, i.text.clone()),
            None => code.last().map_or((m.file.clone(), 0, String::new()), |i| {
                (m.files[i.file as usize].clone(), i.line, String::new())
            }),
        }
    }

    fn error(&self, t: &Thread, kind: ErrorKind, message: String) -> Box<ExecError> {
        let (file, line, instruction) = self.site(t.func, t.pc);
        let functions = &self.l.module.functions;
        let called_from = t
            .frames
            .iter()
            .rev()
            .map(|f| {
                let (file, line, _) = self.site(f.func, f.pc);
                CallSite {
                    function: functions[f.func].name.clone(),
                    file,
                    line,
                }
            })
            .collect();
        Box::new(ExecError {
            kernel: self.l.func.name.clone(),
            function: functions[t.func].name.clone(),
            called_from,
            file,
            line,
            instruction,
            block: self.ctaid,
            thread: t.tid,
            kind,
            message,
        })
    }

    fn special(&self, t: &Thread, s: Special) -> u64 {
        let (b, g) = (self.l.block, self.l.grid);
        u64::from(match s {
            Special::Tid(d) => t.tid[d as usize],
            Special::Ntid(d) => b[d as usize],
            Special::Ctaid(d) => self.ctaid[d as usize],
            Special::Nctaid(d) => g[d as usize],
            Special::Laneid => t.linear % 32,
            Special::Warpid => t.linear / 32,
            Special::Clock => t.clock as u32,
            Special::Clock64 => return t.clock,
        })
    }

    pub(crate) fn val(&self, t: &Thread, o: Operand) -> XResult<u64> {
        match o {
            Operand::Reg(r) => {
                if !t.init[r as usize] {
                    let name = &self.l.module.functions[t.func].regs[r as usize];
                    return Err(self.error(
                        t,
                        ErrorKind::UninitializedRegister,
                        format!("read of register {name} before any write"),
                    ));
                }
                Ok(t.regs[r as usize])
            }
            Operand::Imm(v) => Ok(v),
            Operand::Special(s) => Ok(self.special(t, s)),
            Operand::Shared(off) => Ok(off),
        }
    }

    #[inline(always)]
    pub(crate) fn addr(&self, t: &Thread, a: Addr) -> XResult<u64> {
        let base = match a.base {
            AddrBase::Reg(r) if t.wrapped[r as usize] => return Err(self.wrapped_address(t, r)),
            AddrBase::Reg(r) => self.val(t, Operand::Reg(r))?,
            AddrBase::Param(off) => u64::from(off),
            AddrBase::Shared(off) => off,
            AddrBase::Local(_) => return Err(self.local_address(t)),
        };
        Ok(base.wrapping_add(a.offset as u64))
    }

    /// An address formed from a wrapped 32-bit result: the offset the kernel meant does not fit
    /// the 32 bits it was computed in (`kernels/README.md`'s 64-bit rule).
    #[cold]
    #[inline(never)]
    fn wrapped_address(&self, t: &Thread, r: u16) -> Box<ExecError> {
        let name = &self.l.module.functions[t.func].regs[r as usize];
        self.error(
            t,
            ErrorKind::WrappedAddress,
            format!(
                "address {name} derives from a 32-bit integer operation that wrapped (its exact \
                 result did not fit 32 bits): compute the offset in 64 bits (mul.wide/mad.wide)"
            ),
        )
    }

    /// `ld`/`st` read and write a frame's `.param` variables; other uses of their address
    /// (atomics on them, `mov` of their address) are not implemented.
    #[cold]
    #[inline(never)]
    fn local_address(&self, t: &Thread) -> Box<ExecError> {
        unsupported(
            self,
            t,
            "this access to a .param variable of the frame".into(),
        )
    }

    /// The frame `.param` variable holding byte `at`, for messages.
    fn local_name(&self, t: &Thread, at: usize) -> String {
        self.l.module.functions[t.func]
            .locals
            .iter()
            .find(|l| (l.offset as usize..(l.offset + l.size) as usize).contains(&at))
            .map_or_else(|| format!("byte {at}"), |l| format!("`{}`", l.name))
    }

    /// The byte range `[off + delta, +len)` of the frame's `.param` area, or an error.
    fn local_range(&self, t: &Thread, off: u32, delta: i64, len: usize) -> XResult<usize> {
        let at = i64::from(off) + delta;
        match usize::try_from(at) {
            Ok(a) if a + len <= t.local.len() => Ok(a),
            _ => Err(self.error(
                t,
                ErrorKind::OutOfBounds,
                format!(
                    "{len} bytes at offset {at} of the {}-byte .param area of the frame",
                    t.local.len()
                ),
            )),
        }
    }

    /// Reads `len` ≤ 8 bytes of the frame's `.param` area; every byte must have been written.
    fn read_local(&self, t: &Thread, off: u32, delta: i64, len: usize) -> XResult<u64> {
        let a = self.local_range(t, off, delta, len)?;
        if let Some(k) = (a..a + len).find(|&k| !t.local_init[k]) {
            return Err(self.error(
                t,
                ErrorKind::UninitializedRegister,
                format!(
                    "read of .param {} before any write (byte {k} of the frame's parameters)",
                    self.local_name(t, k)
                ),
            ));
        }
        Ok(t.local[a..a + len]
            .iter()
            .enumerate()
            .fold(0u64, |v, (k, &b)| v | u64::from(b) << (8 * k)))
    }
}

/// Writes `len` ≤ 8 bytes of `v` to `local` at `a`, marking them written.
fn put_local(local: &mut [u8], init: &mut [bool], a: usize, len: usize, v: u64) {
    for k in 0..len {
        local[a + k] = (v >> (8 * k)) as u8;
        init[a + k] = true;
    }
}

/// The value of a call argument in the caller's frame.
fn arg_value(ctx: &Ctx<'_>, t: &Thread, a: &CallArg) -> XResult<u64> {
    match *a {
        CallArg::Value(op) => ctx.val(t, op),
        CallArg::Param { offset, size } => ctx.read_local(t, offset, 0, size as usize),
    }
}

/// `call`: pushes a frame for the callee with its parameters set from the arguments.
#[inline(never)]
fn call(ctx: &Ctx<'_>, t: &mut Thread, c: &Call) -> XResult<()> {
    let callee = &ctx.l.module.functions[c.func];
    if t.frames.len() >= MAX_CALL_DEPTH {
        return Err(ctx.error(
            t,
            ErrorKind::Unsupported,
            format!(
                "call of `{}` nested deeper than {MAX_CALL_DEPTH} calls (unbounded recursion?)",
                callee.name
            ),
        ));
    }
    let mut fr = t.spare.pop().unwrap_or_default();
    fr.regs.clear();
    fr.regs.resize(callee.regs.len(), 0);
    fr.init.clear();
    fr.init.resize(callee.regs.len(), false);
    fr.wrapped.clear();
    fr.wrapped.resize(callee.regs.len(), false);
    fr.local.clear();
    fr.local.resize(callee.local_bytes, 0);
    fr.local_init.clear();
    fr.local_init.resize(callee.local_bytes, false);
    for (a, f) in c.args.iter().zip(&callee.args) {
        match (a, f.loc) {
            (&CallArg::Param { offset, size }, FormalLoc::Param { offset: to, .. }) => {
                // A byte copy, shadow included: unwritten bytes stay unwritten.
                let (from, to, n) = (offset as usize, to as usize, size as usize);
                fr.local[to..to + n].copy_from_slice(&t.local[from..from + n]);
                fr.local_init[to..to + n].copy_from_slice(&t.local_init[from..from + n]);
            }
            (a, FormalLoc::Param { offset, size }) => {
                let v = arg_value(ctx, t, a)?;
                put_local(
                    &mut fr.local,
                    &mut fr.local_init,
                    offset as usize,
                    size as usize,
                    v,
                );
            }
            (a, FormalLoc::Reg(r)) => {
                let v = arg_value(ctx, t, a)?;
                fr.regs[r as usize] = v & mask(f.ty.bits());
                fr.init[r as usize] = true;
                // A wrapped value stays wrapped in the callee (the helpers form addresses from
                // their arguments: ultramem_table_load's element index).
                fr.wrapped[r as usize] = matches!(*a, CallArg::Value(o) if wrapped(t, o));
            }
        }
    }
    std::mem::swap(&mut fr.regs, &mut t.regs);
    std::mem::swap(&mut fr.init, &mut t.init);
    std::mem::swap(&mut fr.wrapped, &mut t.wrapped);
    std::mem::swap(&mut fr.local, &mut t.local);
    std::mem::swap(&mut fr.local_init, &mut t.local_init);
    fr.func = t.func;
    fr.pc = t.pc;
    t.frames.push(fr);
    t.func = c.func;
    t.pc = 0;
    Ok(())
}

/// `ret` (or the end of a body): back to the caller with the return values, which the callee
/// must all have written. `false` when there is no caller: the thread ends.
#[inline(never)]
fn ret(ctx: &Ctx<'_>, t: &mut Thread) -> XResult<bool> {
    let Some(caller) = t.frames.last() else {
        return Ok(false);
    };
    let functions = &ctx.l.module.functions;
    let callee = &functions[t.func];
    let Op::Call(c) = &functions[caller.func].code[caller.pc].op else {
        unreachable!("a saved frame's pc is at its call")
    };
    for f in &callee.rets {
        let written = match f.loc {
            FormalLoc::Reg(r) => t.init[r as usize],
            FormalLoc::Param { offset, size } => t.local_init
                [offset as usize..(offset + size) as usize]
                .iter()
                .all(|&b| b),
        };
        if !written {
            return Err(ctx.error(
                t,
                ErrorKind::UninitializedRegister,
                format!(
                    "`{}` returns without writing its return value {}",
                    callee.name, f.name
                ),
            ));
        }
    }
    let Some(mut fr) = t.frames.pop() else {
        unreachable!("checked above")
    };
    for (d, f) in c.rets.iter().zip(&callee.rets) {
        // A return value computed from a wrapped operation stays wrapped in the caller (values
        // passed through `.param` memory carry no mark).
        let w = matches!(f.loc, FormalLoc::Reg(r) if t.wrapped[r as usize]);
        let v = match f.loc {
            FormalLoc::Reg(r) => t.regs[r as usize],
            FormalLoc::Param { offset, size } => match *d {
                CallArg::Param { offset: to, .. } => {
                    let (from, to, n) = (offset as usize, to as usize, size as usize);
                    fr.local[to..to + n].copy_from_slice(&t.local[from..from + n]);
                    fr.local_init[to..to + n].fill(true);
                    continue;
                }
                _ => t.local[offset as usize..(offset + size) as usize]
                    .iter()
                    .enumerate()
                    .fold(0u64, |v, (k, &b)| v | u64::from(b) << (8 * k)),
            },
        };
        match *d {
            CallArg::Value(Operand::Reg(r)) => {
                fr.regs[r as usize] = v;
                fr.init[r as usize] = true;
                fr.wrapped[r as usize] = w;
            }
            CallArg::Param { offset, size } => put_local(
                &mut fr.local,
                &mut fr.local_init,
                offset as usize,
                size as usize,
                v,
            ),
            CallArg::Value(_) => unreachable!("return values go to registers or .params"),
        }
    }
    std::mem::swap(&mut fr.regs, &mut t.regs);
    std::mem::swap(&mut fr.init, &mut t.init);
    std::mem::swap(&mut fr.wrapped, &mut t.wrapped);
    std::mem::swap(&mut fr.local, &mut t.local);
    std::mem::swap(&mut fr.local_init, &mut t.local_init);
    t.func = fr.func;
    t.pc = fr.pc + 1;
    t.spare.push(fr);
    Ok(true)
}

#[inline(always)]
fn set(t: &mut Thread, d: u16, v: u64) {
    set_wrapped(t, d, v, false);
}

/// Writes a register with its wrap shadow.
#[inline(always)]
fn set_wrapped(t: &mut Thread, d: u16, v: u64, wrapped: bool) {
    t.regs[d as usize] = v;
    t.init[d as usize] = true;
    t.wrapped[d as usize] = wrapped;
}

/// Whether an operand's value derives from a wrapped 32-bit operation.
#[inline(always)]
fn wrapped(t: &Thread, o: Operand) -> bool {
    matches!(o, Operand::Reg(r) if t.wrapped[r as usize])
}

/// Whether integer `op` at a 32-bit type wraps: its exact result (as the type's signedness
/// reads the operands) does not fit 32 bits. The rule of `kernels/README.md`: such a result
/// must not reach an address. Other widths are not checked (64-bit offsets do not wrap at
/// the sizes a GPU holds; 16-bit arithmetic does not form offsets in these kernels).
fn wraps(op: BinOp, ty: Ty, a: u64, b: u64) -> bool {
    if ty.bits() != 32 || !matches!(op, BinOp::Add | BinOp::Sub | BinOp::MulLo | BinOp::Shl) {
        return false;
    }
    // 32-bit operands: every exact result below fits 64 bits (the shift is checked < 32).
    let shift = b & 0xffff_ffff;
    if matches!(ty, Ty::S(_)) {
        let (x, y) = (sext(a, 32), sext(b, 32));
        let exact = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::MulLo => x * y,
            _ if shift < 32 => x << shift,
            _ => return false,
        };
        exact != i64::from(exact as i32)
    } else {
        let (x, y) = (a & 0xffff_ffff, b & 0xffff_ffff);
        match op {
            BinOp::Add => x + y > 0xffff_ffff,
            BinOp::Sub => x < y,
            BinOp::MulLo => x * y > 0xffff_ffff,
            _ => shift < 32 && (x << shift) > 0xffff_ffff,
        }
    }
}

/// Whether `op`'s result carries its operands' wrap: arithmetic does; bit operations (`and`,
/// `or`, `xor`) are deliberate manipulation of the bits and do not.
fn carries_wrap(op: BinOp) -> bool {
    !matches!(op, BinOp::And | BinOp::Or | BinOp::Xor)
}

/// Integer binary operation at `ty`'s width.
fn int_bin(op: BinOp, ty: Ty, a: u64, b: u64) -> u64 {
    let bits = ty.bits();
    let signed = matches!(ty, Ty::S(_));
    let m = mask(bits);
    let (a, b) = (
        a & m,
        b & if matches!(op, BinOp::Shl | BinOp::Shr) {
            u64::from(u32::MAX)
        } else {
            m
        },
    );
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    match op {
        BinOp::Add => a.wrapping_add(b) & m,
        BinOp::Sub => a.wrapping_sub(b) & m,
        BinOp::MulLo => a.wrapping_mul(b) & m,
        BinOp::MulHi => {
            if signed {
                ((i128::from(sa) * i128::from(sb)) >> bits) as u64 & m
            } else {
                ((u128::from(a) * u128::from(b)) >> bits) as u64 & m
            }
        }
        BinOp::MulWide => {
            let wm = mask(2 * bits);
            if signed {
                (i128::from(sa) * i128::from(sb)) as u64 & wm
            } else {
                (u128::from(a) * u128::from(b)) as u64 & wm
            }
        }
        BinOp::Div => {
            if b == 0 {
                m
            } else if signed {
                (sa.wrapping_div(sb) as u64) & m
            } else {
                a / b
            }
        }
        BinOp::Rem => {
            if b == 0 {
                a
            } else if signed {
                (sa.wrapping_rem(sb) as u64) & m
            } else {
                a % b
            }
        }
        BinOp::Min | BinOp::Max => {
            let less = if signed { sa < sb } else { a < b };
            if less == (op == BinOp::Min) {
                a
            } else {
                b
            }
        }
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
        BinOp::Shl => {
            if b >= u64::from(bits) {
                0
            } else {
                (a << b) & m
            }
        }
        BinOp::Shr => {
            if signed {
                let s = b.min(u64::from(bits) - 1);
                (sa >> s) as u64 & m
            } else if b >= u64::from(bits) {
                0
            } else {
                a >> b
            }
        }
        BinOp::Copysign => a,
    }
}

fn float_bin(op: BinOp, ty: Ty, a: u64, b: u64, ftz: bool) -> Result<u64, String> {
    if ty == Ty::F32 {
        let (mut x, mut y) = (f32_of(a), f32_of(b));
        if ftz {
            x = ftz32(x);
            y = ftz32(y);
        }
        let r = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::MulLo => x * y,
            BinOp::Div => x / y,
            BinOp::Min => fmax(f64::from(x), f64::from(y), false) as f32,
            BinOp::Max => fmax(f64::from(x), f64::from(y), true) as f32,
            // copysign.f32 d, a, b: b with the sign of a.
            BinOp::Copysign => y.copysign(x),
            _ => return Err(format!("{op:?}.f32")),
        };
        return Ok(bits32(if ftz { ftz32(r) } else { r }));
    }
    if ty == Ty::F64 {
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let r = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::MulLo => x * y,
            BinOp::Div => x / y,
            BinOp::Min => fmax(x, y, false),
            BinOp::Max => fmax(x, y, true),
            BinOp::Copysign => y.copysign(x),
            _ => return Err(format!("{op:?}.f64")),
        };
        return Ok(r.to_bits());
    }
    Err(format!("{op:?} on {ty:?}"))
}

fn compare(cmp: Cmp, ty: Ty, a: u64, b: u64) -> bool {
    if ty.is_float() {
        let (x, y) = (float_in(a, ty), float_in(b, ty));
        let nan = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !nan && x == y,
            Cmp::Ne => !nan && x != y,
            Cmp::Lt => !nan && x < y,
            Cmp::Le => !nan && x <= y,
            Cmp::Gt => !nan && x > y,
            Cmp::Ge => !nan && x >= y,
            Cmp::Equ => nan || x == y,
            Cmp::Neu => nan || x != y,
            Cmp::Ltu => nan || x < y,
            Cmp::Leu => nan || x <= y,
            Cmp::Gtu => nan || x > y,
            Cmp::Geu => nan || x >= y,
            Cmp::Num => !nan,
            Cmp::Nan => nan,
        };
    }
    let bits = ty.bits();
    let ord = if matches!(ty, Ty::S(_)) {
        sext(a, bits).cmp(&sext(b, bits))
    } else {
        (a & mask(bits)).cmp(&(b & mask(bits)))
    };
    use std::cmp::Ordering::*;
    match cmp {
        Cmp::Eq | Cmp::Equ => ord == Equal,
        Cmp::Ne | Cmp::Neu => ord != Equal,
        Cmp::Lt | Cmp::Ltu => ord == Less,
        Cmp::Le | Cmp::Leu => ord != Greater,
        Cmp::Gt | Cmp::Gtu => ord == Greater,
        Cmp::Ge | Cmp::Geu => ord != Less,
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

fn convert(dty: Ty, sty: Ty, round: Round, sat: bool, ftz: bool, a: u64) -> Result<u64, String> {
    let v = match (sty.is_float(), dty.is_float()) {
        (false, false) => {
            let sbits = sty.bits();
            let wide = if matches!(sty, Ty::S(_)) {
                sext(a, sbits) as u64
            } else {
                a & mask(sbits)
            };
            if sat {
                let x = if matches!(sty, Ty::S(_)) {
                    sext(a, sbits) as f64
                } else {
                    wide as f64
                };
                return Ok(float_to_int(x, dty, Round::Zero));
            }
            wide & mask(dty.bits())
        }
        (false, true) => {
            let x = if matches!(sty, Ty::S(_)) {
                sext(a, sty.bits()) as f64
            } else {
                (a & mask(sty.bits())) as f64
            };
            if sty.bits() > 32 && !matches!(round, Round::Nearest | Round::Default) {
                return Err(format!("cvt from {sty:?} with rounding {round:?}"));
            }
            float_out(x, dty, round)?
        }
        (true, false) => {
            let mut x = float_in(a, sty);
            if ftz && sty == Ty::F32 {
                x = f64::from(ftz32(x as f32));
            }
            float_to_int(x, dty, round)
        }
        (true, true) => {
            let mut x = float_in(a, sty);
            if ftz && sty == Ty::F32 {
                x = f64::from(ftz32(x as f32));
            }
            // Rounding to an integer value within the float type (cvt.rni.f32.f32 and kin).
            if dty == sty && round != Round::Default {
                x = match round {
                    Round::Nearest => x.round_ties_even(),
                    Round::Zero => x.trunc(),
                    Round::Down => x.floor(),
                    _ => x.ceil(),
                };
            }
            if sat {
                x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
            }
            let out = float_out(x, dty, round)?;
            if ftz && dty == Ty::F32 {
                bits32(ftz32(f32_of(out)))
            } else {
                out
            }
        }
    };
    Ok(v)
}

fn float_un(op: UnOp, ty: Ty, a: u64, ftz: bool) -> Result<u64, String> {
    if ty == Ty::F32 {
        let mut x = f32_of(a);
        if ftz {
            x = ftz32(x);
        }
        let r = match op {
            UnOp::Neg => -x,
            UnOp::Abs => x.abs(),
            UnOp::Rcp => 1.0 / x,
            UnOp::Sqrt => x.sqrt(),
            UnOp::Rsqrt => 1.0 / x.sqrt(),
            UnOp::Ex2 => x.exp2(),
            UnOp::Lg2 => x.log2(),
            UnOp::Sin => x.sin(),
            UnOp::Cos => x.cos(),
            UnOp::Tanh => x.tanh(),
            _ => return Err(format!("{op:?}.f32")),
        };
        return Ok(bits32(if ftz { ftz32(r) } else { r }));
    }
    if ty == Ty::F64 {
        let x = f64::from_bits(a);
        let r = match op {
            UnOp::Neg => -x,
            UnOp::Abs => x.abs(),
            UnOp::Rcp => 1.0 / x,
            UnOp::Sqrt => x.sqrt(),
            UnOp::Rsqrt => 1.0 / x.sqrt(),
            _ => return Err(format!("{op:?}.f64")),
        };
        return Ok(r.to_bits());
    }
    Err(format!("{op:?} on {ty:?}"))
}

fn int_un(op: UnOp, ty: Ty, a: u64) -> Result<u64, String> {
    let bits = ty.bits();
    let m = mask(bits);
    let a = a & m;
    Ok(match op {
        UnOp::Neg => a.wrapping_neg() & m,
        UnOp::Abs => (sext(a, bits).wrapping_abs() as u64) & m,
        UnOp::Not => !a & m,
        UnOp::Cnot => u64::from(a == 0),
        UnOp::Popc => u64::from(a.count_ones()),
        UnOp::Clz => u64::from(a.leading_zeros() - (64 - bits)),
        UnOp::Brev => a.reverse_bits() >> (64 - bits),
        _ => return Err(format!("{op:?} on {ty:?}")),
    })
}

/// What a thread does after one instruction.
enum Flow {
    Next,
    Jump(usize),
    /// The instruction is a `call`.
    Call,
    /// `ret`.
    Ret,
    Stop(State),
}

/// Runs one block to completion; with `P`, while profiling it into `prof` (which must then be
/// given). `P = false` compiles every profiling hook away.
pub(crate) fn run_block<const P: bool>(
    l: &Launch<'_>,
    ctaid: [u32; 3],
    mem: &mut Memory,
    prof: Option<&mut Prof>,
) -> XResult<u64> {
    let [bx, by, bz] = l.block;
    let n = (bx * by * bz) as usize;
    let nregs = l.func.regs.len();
    let nlocal = l.func.local_bytes;
    let mut threads: Vec<Thread> = (0..n as u32)
        .map(|i| Thread {
            regs: vec![0; nregs],
            init: vec![false; nregs],
            wrapped: vec![false; nregs],
            local: vec![0; nlocal],
            local_init: vec![false; nlocal],
            func: l.entry,
            pc: 0,
            frames: Vec::new(),
            spare: Vec::new(),
            state: State::Running,
            tid: [i % bx, (i / bx) % by, i / (bx * by)],
            linear: i,
            clock: 0,
        })
        .collect();
    let mut shared = Shared::new(l.func.shared_bytes);
    let mut ctx = Ctx {
        l,
        ctaid,
        instructions: 0,
        prof,
    };
    if P {
        if let Some(p) = ctx.prof.as_deref_mut() {
            p.start_block(n, nregs);
        }
    }
    loop {
        for t in threads.iter_mut() {
            if t.state == State::Running {
                run_thread::<P>(&mut ctx, t, &mut shared, mem)?;
            }
        }
        if threads.iter().all(|t| t.state == State::Exited) {
            if P {
                if let Some(p) = ctx.prof.as_deref_mut() {
                    let [gx, gy, _] = l.grid;
                    let linear = ctaid[0] + ctaid[1] * gx + ctaid[2] * gx * gy;
                    let clocks = threads.iter().map(|t| t.clock);
                    p.finish_block(linear, clocks, ctx.instructions);
                }
            }
            return Ok(ctx.instructions);
        }
        if resolve_warps::<P>(&mut ctx, &mut threads)? {
            continue;
        }
        resolve_barrier::<P>(&mut ctx, &mut threads, &mut shared)?;
    }
}

fn resolve_barrier<const P: bool>(
    ctx: &mut Ctx<'_>,
    threads: &mut [Thread],
    shared: &mut Shared,
) -> XResult<()> {
    let Some(first) = threads
        .iter()
        .find(|t| matches!(t.state, State::Barrier(_)))
    else {
        let t = threads
            .iter()
            .find(|t| t.state == State::Warp)
            .unwrap_or(&threads[0]);
        return Err(ctx.error(t, ErrorKind::Deadlock, "no thread can make progress".into()));
    };
    let State::Barrier(id) = first.state else {
        unreachable!("filtered above")
    };
    if let Some(t) = threads.iter().find(|t| t.state == State::Exited) {
        let waiting = threads
            .iter()
            .find(|t| matches!(t.state, State::Barrier(_)))
            .unwrap_or(first);
        return Err(ctx.error(
            waiting,
            ErrorKind::BarrierDivergence,
            format!(
                "bar.sync waits for thread {:?}, which exited without reaching it",
                t.tid
            ),
        ));
    }
    if let Some(t) = threads
        .iter()
        .find(|t| t.state == State::Barrier(id) && t.func != first.func)
    {
        // A barrier in a function matches only barriers in that same function: the threads
        // not there skipped the call (or called another function) and wait elsewhere.
        let functions = &ctx.l.module.functions;
        let describe = |x: &Thread| {
            let (file, line, _) = ctx.site(x.func, x.pc);
            let f = &functions[x.func];
            let what = if f.entry { "kernel" } else { "function" };
            format!("{what} `{}` ({file}:{line})", f.name)
        };
        // Report the thread inside the deeper call, naming where the other one waits.
        let (here, there) = if t.frames.len() > first.frames.len() {
            (t, first)
        } else {
            (first, t)
        };
        return Err(ctx.error(
            here,
            ErrorKind::BarrierDivergence,
            format!(
                "this thread waits at bar.sync {id} in {} while thread {:?} waits at bar.sync {id} in {}: not every thread of the block reaches this barrier",
                describe(here),
                there.tid,
                describe(there)
            ),
        ));
    }
    if let Some(t) = threads.iter().find(|t| t.state != State::Barrier(id)) {
        return Err(ctx.error(
            t,
            ErrorKind::BarrierDivergence,
            format!(
                "this thread is not at bar.sync {id} while others wait there ({:?})",
                t.state
            ),
        ));
    }
    if P {
        if let Some(p) = ctx.prof.as_deref_mut() {
            p.barrier(threads);
        }
    }
    for t in threads.iter_mut() {
        t.state = State::Running;
        t.pc += 1;
    }
    shared.epoch += 1;
    Ok(())
}

/// Executes every warp-collective instruction all of whose lanes have arrived; `true` if any.
fn resolve_warps<const P: bool>(ctx: &mut Ctx<'_>, threads: &mut [Thread]) -> XResult<bool> {
    let mut progressed = false;
    for w0 in (0..threads.len()).step_by(32) {
        let w1 = (w0 + 32).min(threads.len());
        let Some(lead) = (w0..w1).find(|&i| threads[i].state == State::Warp) else {
            continue;
        };
        let (func, pc) = (threads[lead].func, threads[lead].pc);
        let ins = &ctx.l.module.functions[func].code[pc];
        let lane_mask = match &ins.op {
            Op::Shfl { mask, .. } | Op::Vote { mask, .. } => ctx.val(&threads[lead], *mask)? as u32,
            // `.aligned` and warp-wide: every lane of the warp.
            Op::Mma(_) => u32::MAX,
            _ => unreachable!("only warp collectives wait in State::Warp"),
        };
        for lane in 0..32 {
            if lane_mask & (1 << lane) == 0 {
                continue;
            }
            let i = w0 + lane;
            if i >= w1
                || threads[i].state != State::Warp
                || threads[i].pc != pc
                || threads[i].func != func
            {
                let who = if i < w1 {
                    format!("lane {lane} ({:?})", threads.get(i).map(|t| t.state))
                } else {
                    format!("lane {lane} (no such thread)")
                };
                return Err(ctx.error(
                    &threads[lead],
                    ErrorKind::WarpSync,
                    format!(
                        "{} needs {who} of its mask {lane_mask:#x} at the same instruction",
                        ins.text
                    ),
                ));
            }
        }
        let lanes: Vec<usize> = (0..32)
            .filter(|l| lane_mask & (1 << l) != 0)
            .map(|l| w0 + l)
            .collect();
        match ins.op.clone() {
            Op::Shfl {
                mode,
                d,
                d_pred,
                a,
                b,
                c,
                ..
            } => {
                let mut vals = [0u64; 32];
                for &i in &lanes {
                    vals[i - w0] = ctx.val(&threads[i], a)?;
                }
                for &i in &lanes {
                    let t = &threads[i];
                    let lane = (i - w0) as u32;
                    let bval = ctx.val(t, b)? as u32 & 0x1f;
                    let cval = ctx.val(t, c)? as u32;
                    let seg = (cval >> 8) & 0x1f;
                    let min_lane = lane & seg;
                    let max_lane = min_lane | ((cval & 0x1f) & !seg);
                    let (j, ok) = match mode {
                        ShflMode::Up => {
                            let j = lane as i32 - bval as i32;
                            (j, j >= max_lane as i32)
                        }
                        ShflMode::Down => {
                            let j = (lane + bval) as i32;
                            (j, j <= max_lane as i32)
                        }
                        ShflMode::Bfly => {
                            let j = (lane ^ bval) as i32;
                            (j, j <= max_lane as i32)
                        }
                        ShflMode::Idx => {
                            let j = (min_lane | (bval & !seg)) as i32;
                            (j, j <= max_lane as i32)
                        }
                    };
                    let src = if ok { j as u32 } else { lane };
                    if lane_mask & (1 << src) == 0 {
                        return Err(ctx.error(
                            t,
                            ErrorKind::WarpSync,
                            format!("shfl reads lane {src}, outside the mask {lane_mask:#x}"),
                        ));
                    }
                    let v = vals[src as usize];
                    let t = &mut threads[i];
                    set(t, d, v & 0xffff_ffff);
                    if let Some(p) = d_pred {
                        set(t, p, u64::from(ok));
                    }
                }
            }
            Op::Vote {
                mode, d, a, negate, ..
            } => {
                let mut ballot = 0u32;
                for &i in &lanes {
                    let p = (ctx.val(&threads[i], a)? != 0) != negate;
                    if p {
                        ballot |= 1 << (i - w0);
                    }
                }
                let active = lanes.iter().fold(0u32, |m, &i| m | 1 << (i - w0));
                let v = match mode {
                    VoteMode::Ballot => u64::from(ballot),
                    VoteMode::All => u64::from(ballot == active),
                    VoteMode::Any => u64::from(ballot != 0),
                    VoteMode::Uni => u64::from(ballot == active || ballot == 0),
                };
                for &i in &lanes {
                    set(&mut threads[i], d, v);
                }
            }
            Op::Mma(m) => mma(ctx, threads, w0, &m)?,
            _ => unreachable!("checked above"),
        }
        if P {
            if let Some(p) = ctx.prof.as_deref_mut() {
                p.collective(threads, &lanes);
            }
        }
        // (Each lane counted the instruction when it arrived, in `run_function`.)
        for &i in &lanes {
            threads[i].state = State::Running;
            threads[i].pc += 1;
        }
        progressed = true;
    }
    Ok(progressed)
}

/// `mma.sync.aligned` for the 32 lanes of the warp starting at thread `w0`, with the PTX ISA's
/// fragment layouts (groupID = lane / 4, threadID_in_group = lane % 4): A's register `i` holds
/// row groupID + 8·(i & 1), columns 2·threadID_in_group + 8·(i >> 1) (+1 in the high half); B's
/// register `j` holds rows 2·threadID_in_group + 8·j (+1 in the high half) of column groupID; C's
/// and D's value `i` is row groupID + 8·(i >> 1), column 2·threadID_in_group + (i & 1).
/// Every D element is C's plus the products in order of k, each product exact in f32 (the
/// inputs are bf16/f16) and each sum rounded to f32: `d = c; for k { d = d + a[r][k]·b[k][c] }`.
fn mma(ctx: &Ctx<'_>, threads: &mut [Thread], w0: usize, m: &Mma) -> XResult<()> {
    let half = |bits: u64| -> f32 {
        let bits = bits as u16;
        if m.ab == Ty::Bf16 {
            half::bf16::from_bits(bits).to_f32()
        } else {
            half::f16::from_bits(bits).to_f32()
        }
    };
    let mut a = [[0f32; 16]; 16];
    let mut b = [[0f32; 8]; 16];
    let mut c = [[0f32; 8]; 16];
    for lane in 0..32 {
        let t = &threads[w0 + lane];
        let (g, q) = (lane / 4, lane % 4);
        for (i, &r) in m.a[..m.shape.a_regs()].iter().enumerate() {
            let v = ctx.val(t, Operand::Reg(r))?;
            let (row, col) = (g + 8 * (i & 1), 2 * q + 8 * (i >> 1));
            a[row][col] = half(v);
            a[row][col + 1] = half(v >> 16);
        }
        for (j, &r) in m.b[..m.shape.b_regs()].iter().enumerate() {
            let v = ctx.val(t, Operand::Reg(r))?;
            let row = 2 * q + 8 * j;
            b[row][g] = half(v);
            b[row + 1][g] = half(v >> 16);
        }
        for (i, &o) in m.c.iter().enumerate() {
            c[g + 8 * (i >> 1)][2 * q + (i & 1)] = f32_of(ctx.val(t, o)?);
        }
    }
    for lane in 0..32 {
        let (g, q) = (lane / 4, lane % 4);
        for (i, &d) in m.d.iter().enumerate() {
            let (row, col) = (g + 8 * (i >> 1), 2 * q + (i & 1));
            let mut acc = c[row][col];
            for (kk, bk) in b.iter().enumerate().take(m.shape.k()) {
                acc += a[row][kk] * bk[col];
            }
            set(&mut threads[w0 + lane], d, bits32(acc));
        }
    }
    Ok(())
}

/// Runs a thread until it exits or reaches a synchronisation point.
fn run_thread<const P: bool>(
    ctx: &mut Ctx<'_>,
    t: &mut Thread,
    shared: &mut Shared,
    mem: &mut Memory,
) -> XResult<()> {
    let functions = &ctx.l.module.functions;
    // Runs one function at a time, switching at calls and returns.
    loop {
        let code = &functions[t.func].code;
        match run_function::<P>(ctx, t, code, shared, mem)? {
            Flow::Call => {
                let Op::Call(c) = &code[t.pc].op else {
                    unreachable!("Flow::Call comes from a call")
                };
                call(ctx, t, c)?;
                if P {
                    if let Some(p) = ctx.prof.as_deref_mut() {
                        p.called(t, &functions[t.func]);
                    }
                }
            }
            Flow::Ret => {
                if !ret(ctx, t)? {
                    t.state = State::Exited;
                    t.pc += 1;
                    return Ok(());
                }
                if P {
                    if let Some(p) = ctx.prof.as_deref_mut() {
                        let Op::Call(c) = &functions[t.func].code[t.pc - 1].op else {
                            unreachable!("a call returns after its call")
                        };
                        p.returned(t, c);
                    }
                }
            }
            _ => return Ok(()),
        }
    }
}

/// Runs the thread in its current function until it reaches a `call` or a `ret` (or the end of
/// the body), `Flow::Call`/`Flow::Ret` with the pc there; or until it stops
/// (`Flow::Stop`, with its state set).
fn run_function<const P: bool>(
    ctx: &mut Ctx<'_>,
    t: &mut Thread,
    code: &[Instr],
    shared: &mut Shared,
    mem: &mut Memory,
) -> XResult<Flow> {
    loop {
        let Some(ins) = code.get(t.pc) else {
            return Ok(Flow::Ret);
        };
        ctx.instructions += 1;
        if let Some((p, negate)) = ins.guard {
            if (ctx.val(t, Operand::Reg(p))? != 0) == negate {
                if P {
                    if let Some(prof) = ctx.prof.as_deref_mut() {
                        prof.skipped(t, p);
                    }
                }
                t.pc += 1;
                continue;
            }
        }
        if P {
            profile::executed(ctx, t)?;
        }
        match step(ctx, t, &ins.op, shared, mem)? {
            Flow::Next => t.pc += 1,
            Flow::Jump(pc) => t.pc = pc,
            Flow::Stop(s) => {
                t.state = s;
                if s == State::Exited {
                    t.pc += 1;
                }
                return Ok(Flow::Stop(s));
            }
            flow => return Ok(flow),
        }
    }
}

fn unsupported(ctx: &Ctx<'_>, t: &Thread, what: String) -> Box<ExecError> {
    ctx.error(t, ErrorKind::Unsupported, format!("unsupported: {what}"))
}

// Inlined into both instantiations of `run_function` (unprofiled and profiled): left to the
// inliner, the second caller made it an out-of-line call and cost the unprofiled path ~25%.
#[inline(always)]
fn step(
    ctx: &mut Ctx<'_>,
    t: &mut Thread,
    op: &Op,
    shared: &mut Shared,
    mem: &mut Memory,
) -> XResult<Flow> {
    match *op {
        Op::Mov { ty, d, a } => {
            let v = ctx.val(t, a)?;
            let w = wrapped(t, a);
            set_wrapped(t, d, v & mask(ty.bits()), w);
        }
        Op::Bin {
            op,
            ty,
            d,
            a,
            b,
            round: _,
            ftz,
        } => {
            let (x, y) = (ctx.val(t, a)?, ctx.val(t, b)?);
            let mut w = false;
            let v = if ty == Ty::Pred {
                let (x, y) = (x != 0, y != 0);
                u64::from(match op {
                    BinOp::And => x && y,
                    BinOp::Or => x || y,
                    BinOp::Xor => x != y,
                    _ => return Err(unsupported(ctx, t, format!("{op:?}.pred"))),
                })
            } else if ty.is_float() {
                float_bin(op, ty, x, y, ftz).map_err(|m| unsupported(ctx, t, m))?
            } else {
                w = wraps(op, ty, x, y) || (carries_wrap(op) && (wrapped(t, a) || wrapped(t, b)));
                int_bin(op, ty, x, y)
            };
            set_wrapped(t, d, v, w);
        }
        Op::Mad {
            kind,
            ty,
            d,
            a,
            b,
            c,
        } => {
            let (x, y, z) = (ctx.val(t, a)?, ctx.val(t, b)?, ctx.val(t, c)?);
            let mut w = false;
            let v = match ty {
                Ty::F32 => bits32(f32_of(x).mul_add(f32_of(y), f32_of(z))),
                Ty::F64 => f64::from_bits(x)
                    .mul_add(f64::from_bits(y), f64::from_bits(z))
                    .to_bits(),
                _ => {
                    let p = int_bin(kind, ty, x, y);
                    let wide_ty = match (kind, ty) {
                        (BinOp::MulWide, Ty::U(b)) => Ty::U(2 * b),
                        (BinOp::MulWide, Ty::S(b)) => Ty::S(2 * b),
                        _ => ty,
                    };
                    w = wraps(kind, ty, x, y)
                        || wraps(BinOp::Add, wide_ty, p, z)
                        || wrapped(t, a)
                        || wrapped(t, b)
                        || wrapped(t, c);
                    int_bin(BinOp::Add, wide_ty, p, z)
                }
            };
            set_wrapped(t, d, v, w);
        }
        Op::Un { op, ty, d, a, ftz } => {
            let x = ctx.val(t, a)?;
            let v = if ty == Ty::Pred {
                match op {
                    UnOp::Not => u64::from(x == 0),
                    _ => return Err(unsupported(ctx, t, format!("{op:?}.pred"))),
                }
            } else if ty.is_float() {
                float_un(op, ty, x, ftz).map_err(|m| unsupported(ctx, t, m))?
            } else {
                int_un(op, ty, x).map_err(|m| unsupported(ctx, t, m))?
            };
            set(t, d, v);
        }
        Op::Setp {
            cmp,
            ty,
            d,
            d_not,
            a,
            b,
            combine,
        } => {
            let r = compare(cmp, ty, ctx.val(t, a)?, ctx.val(t, b)?);
            let (p, q) = match combine {
                None => (r, !r),
                Some((op, c, negate)) => {
                    let c = (ctx.val(t, c)? != 0) != negate;
                    let f = |x: bool| match op {
                        BoolOp::And => x && c,
                        BoolOp::Or => x || c,
                        BoolOp::Xor => x != c,
                    };
                    (f(r), f(!r))
                }
            };
            set(t, d, u64::from(p));
            if let Some(q_reg) = d_not {
                set(t, q_reg, u64::from(q));
            }
        }
        Op::Selp { ty, d, a, b, c } => {
            let chosen = if ctx.val(t, c)? != 0 { a } else { b };
            let v = ctx.val(t, chosen)?;
            let w = wrapped(t, chosen);
            set_wrapped(t, d, v & mask(ty.bits()), w);
        }
        Op::Cvt {
            dty,
            sty,
            round,
            sat,
            ftz,
            d,
            a,
        } => {
            let v = convert(dty, sty, round, sat, ftz, ctx.val(t, a)?)
                .map_err(|m| unsupported(ctx, t, m))?;
            let w = !dty.is_float() && wrapped(t, a);
            set_wrapped(t, d, v, w);
        }
        Op::Cvta { d, a } => {
            let v = ctx.val(t, a)?;
            let w = wrapped(t, a);
            set_wrapped(t, d, v, w);
        }
        Op::Ld {
            ty,
            d,
            vec,
            addr:
                Addr {
                    base: AddrBase::Local(off),
                    offset,
                },
            ..
        } => {
            let size = ty.bytes();
            for (k, &reg) in d.iter().take(vec as usize).enumerate() {
                let v = ctx.read_local(t, off, offset + (k * size) as i64, size)?;
                set(t, reg, v);
            }
        }
        Op::St {
            ty,
            src,
            vec,
            addr:
                Addr {
                    base: AddrBase::Local(off),
                    offset,
                },
            ..
        } => {
            let size = ty.bytes();
            for (k, &operand) in src.iter().take(vec as usize).enumerate() {
                let v = ctx.val(t, operand)?;
                let a = ctx.local_range(t, off, offset + (k * size) as i64, size)?;
                put_local(&mut t.local, &mut t.local_init, a, size, v);
            }
        }
        Op::Ld {
            space,
            ty,
            d,
            vec,
            addr,
        } => {
            let base = ctx.addr(t, addr)?;
            let size = ty.bytes();
            for (k, &reg) in d.iter().take(vec as usize).enumerate() {
                let at = base.wrapping_add((k * size) as u64);
                let v = load(
                    ctx,
                    t,
                    space,
                    at,
                    size * vec as usize,
                    size,
                    shared,
                    mem,
                    k == 0,
                )?;
                set(t, reg, v);
            }
        }
        Op::St {
            space,
            ty,
            src,
            vec,
            addr,
        } => {
            let base = ctx.addr(t, addr)?;
            let size = ty.bytes();
            for (k, &operand) in src.iter().take(vec as usize).enumerate() {
                let v = ctx.val(t, operand)?;
                let at = base.wrapping_add((k * size) as u64);
                if k == 0 && base % (size * vec as usize) as u64 != 0 {
                    return Err(ctx.error(
                        t,
                        ErrorKind::Misaligned,
                        format!("{}-byte store at {base:#x}", size * vec as usize),
                    ));
                }
                match space {
                    Space::Shared => shared
                        .write(at, size, v, t.linear, false)
                        .map_err(|(k, m)| ctx.error(t, k, m))?,
                    Space::Param => return Err(unsupported(ctx, t, "st.param".into())),
                    _ => {
                        mem.touch(at, size, Touch::Write)
                            .map_err(|m| ctx.error(t, ErrorKind::GlobalRace, m))?;
                        let (buf, off) = mem.locate(at, size).map_err(|m| {
                            ctx.error(t, ErrorKind::OutOfBounds, format!("global store: {m}"))
                        })?;
                        for i in 0..size {
                            buf[off + i] = (v >> (8 * i)) as u8;
                        }
                    }
                }
            }
        }
        Op::RedVec { src, vec, addr } => {
            // One instruction adding `vec` f32 atomically, each element on its own (the
            // hardware makes each element's add atomic, not the vector as a whole).
            let at = ctx.addr(t, addr)?;
            let size = 4 * vec as usize;
            if at % size as u64 != 0 {
                return Err(ctx.error(
                    t,
                    ErrorKind::Misaligned,
                    format!("{size}-byte vector reduction at {at:#x}"),
                ));
            }
            let mut x = [0u64; 4];
            for (v, o) in x.iter_mut().zip(&src[..vec as usize]) {
                *v = ctx.val(t, *o)?;
            }
            mem.touch(at, size, Touch::Atomic)
                .map_err(|m| ctx.error(t, ErrorKind::GlobalRace, m))?;
            let (buf, off) = mem.locate(at, size).map_err(|m| {
                ctx.error(t, ErrorKind::OutOfBounds, format!("global reduction: {m}"))
            })?;
            for (k, v) in x[..vec as usize].iter().enumerate() {
                let word = &mut buf[off + 4 * k..off + 4 * k + 4];
                let old = f32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                word.copy_from_slice(&(old + f32_of(*v)).to_le_bytes());
            }
        }
        Op::Atom {
            space,
            op,
            ty,
            d,
            addr,
            a,
            b,
        } => {
            let at = ctx.addr(t, addr)?;
            let size = ty.bytes();
            if at % size as u64 != 0 {
                return Err(ctx.error(
                    t,
                    ErrorKind::Misaligned,
                    format!("{size}-byte atomic at {at:#x}"),
                ));
            }
            let x = ctx.val(t, a)?;
            let y = ctx.val(t, b)?;
            let old = match space {
                Space::Shared => {
                    let a_ = shared
                        .check(at, size)
                        .map_err(|m| ctx.error(t, ErrorKind::OutOfBounds, m))?;
                    let mut v = 0u64;
                    for i in 0..size {
                        v |= u64::from(shared.data[a_ + i]) << (8 * i);
                    }
                    if !shared.written[a_] {
                        return Err(ctx.error(
                            t,
                            ErrorKind::UninitializedShared,
                            format!("atomic on shared byte {a_}, which no thread has written"),
                        ));
                    }
                    v
                }
                _ => {
                    mem.touch(at, size, Touch::Atomic)
                        .map_err(|m| ctx.error(t, ErrorKind::GlobalRace, m))?;
                    let (buf, off) = mem.locate(at, size).map_err(|m| {
                        ctx.error(t, ErrorKind::OutOfBounds, format!("global atomic: {m}"))
                    })?;
                    let mut v = 0u64;
                    for i in 0..size {
                        v |= u64::from(buf[off + i]) << (8 * i);
                    }
                    v
                }
            };
            let new = atomic(op, ty, old, x, y).map_err(|m| unsupported(ctx, t, m))?;
            match space {
                Space::Shared => shared
                    .write(at, size, new, t.linear, true)
                    .map_err(|(k, m)| ctx.error(t, k, m))?,
                _ => {
                    let (buf, off) = mem
                        .locate(at, size)
                        .map_err(|m| ctx.error(t, ErrorKind::OutOfBounds, m))?;
                    for i in 0..size {
                        buf[off + i] = (new >> (8 * i)) as u8;
                    }
                }
            }
            if let Some(d) = d {
                set(t, d, old);
            }
        }
        Op::Shfl { .. } | Op::Vote { .. } | Op::Mma(_) => return Ok(Flow::Stop(State::Warp)),
        Op::Bar { id } => {
            let id = ctx.val(t, id)? as u32;
            return Ok(Flow::Stop(State::Barrier(id)));
        }
        Op::Bra { target } => return Ok(Flow::Jump(target)),
        Op::Call(_) => return Ok(Flow::Call),
        Op::Ret => return Ok(Flow::Ret),
        Op::Exit => return Ok(Flow::Stop(State::Exited)),
        Op::Unsupported(ref s) => return Err(unsupported(ctx, t, format!("instruction `{s}`"))),
    }
    Ok(Flow::Next)
}

#[allow(clippy::too_many_arguments, reason = "a load needs its whole context")]
fn load(
    ctx: &Ctx<'_>,
    t: &Thread,
    space: Space,
    at: u64,
    whole: usize,
    size: usize,
    shared: &mut Shared,
    mem: &mut Memory,
    first: bool,
) -> XResult<u64> {
    if first && space != Space::Param && !at.is_multiple_of(whole as u64) {
        return Err(ctx.error(
            t,
            ErrorKind::Misaligned,
            format!("{whole}-byte load at {at:#x}"),
        ));
    }
    match space {
        Space::Param => {
            let p = ctx.l.params;
            let a = at as usize;
            if a.checked_add(size).is_none_or(|e| e > p.len()) {
                return Err(ctx.error(
                    t,
                    ErrorKind::OutOfBounds,
                    format!("param read of {size} bytes at {a} of {}", p.len()),
                ));
            }
            Ok(p[a..a + size]
                .iter()
                .enumerate()
                .fold(0u64, |v, (k, &b)| v | u64::from(b) << (8 * k)))
        }
        Space::Shared => shared
            .read(at, size, t.linear)
            .map_err(|(k, m)| ctx.error(t, k, m)),
        _ => {
            mem.touch(at, size, Touch::Read)
                .map_err(|m| ctx.error(t, ErrorKind::GlobalRace, m))?;
            let (buf, off) = mem
                .locate(at, size)
                .map_err(|m| ctx.error(t, ErrorKind::OutOfBounds, format!("global load: {m}")))?;
            Ok(buf[off..off + size]
                .iter()
                .enumerate()
                .fold(0u64, |v, (k, &b)| v | u64::from(b) << (8 * k)))
        }
    }
}

fn atomic(op: AtomOp, ty: Ty, old: u64, x: u64, y: u64) -> Result<u64, String> {
    let bits = ty.bits();
    let m = mask(bits);
    Ok(match (op, ty) {
        (AtomOp::Add, Ty::F32) => bits32(f32_of(old) + f32_of(x)),
        (AtomOp::Add, Ty::F64) => (f64::from_bits(old) + f64::from_bits(x)).to_bits(),
        (AtomOp::Min | AtomOp::Max, Ty::F32) => bits32(fmax(
            f64::from(f32_of(old)),
            f64::from(f32_of(x)),
            op == AtomOp::Max,
        ) as f32),
        (AtomOp::Add, _) => old.wrapping_add(x) & m,
        (AtomOp::Min, _) => int_bin(BinOp::Min, ty, old, x),
        (AtomOp::Max, _) => int_bin(BinOp::Max, ty, old, x),
        (AtomOp::Exch, _) => x & m,
        (AtomOp::Cas, _) => {
            if old & m == x & m {
                y & m
            } else {
                old
            }
        }
        (AtomOp::And, _) => old & x,
        (AtomOp::Or, _) => old | x,
        (AtomOp::Xor, _) => old ^ x,
        (AtomOp::Inc, _) => {
            if old & m >= x & m {
                0
            } else {
                (old + 1) & m
            }
        }
        (AtomOp::Dec, _) => {
            if old & m == 0 || old & m > x & m {
                x & m
            } else {
                old - 1
            }
        }
    })
}
