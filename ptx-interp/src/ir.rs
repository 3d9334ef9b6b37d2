#![allow(
    missing_docs,
    reason = "variants and fields mirror the PTX opcodes and operands of the same names (PTX ISA manual)"
)]
//! The decoded form of a PTX function: registers resolved to indices, labels to instruction
//! indices, every operand typed by its instruction.

/// A scalar type of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Unsigned integer of 8, 16, 32, 64 bits.
    U(u8),
    /// Signed integer.
    S(u8),
    /// Untyped bits.
    B(u8),
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// Predicate.
    Pred,
}

impl Ty {
    /// Width in bits (predicates: 1).
    pub fn bits(self) -> u32 {
        match self {
            Ty::U(b) | Ty::S(b) | Ty::B(b) => u32::from(b),
            Ty::F16 | Ty::Bf16 => 16,
            Ty::F32 => 32,
            Ty::F64 => 64,
            Ty::Pred => 1,
        }
    }

    /// Width in bytes of a memory access.
    pub fn bytes(self) -> usize {
        (self.bits() as usize).div_ceil(8)
    }

    /// Parses a type suffix such as `u32`, `f16`, `pred`.
    pub fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "u8" => Ty::U(8),
            "u16" => Ty::U(16),
            "u32" => Ty::U(32),
            "u64" => Ty::U(64),
            "s8" => Ty::S(8),
            "s16" => Ty::S(16),
            "s32" => Ty::S(32),
            "s64" => Ty::S(64),
            "b8" => Ty::B(8),
            "b16" => Ty::B(16),
            "b32" => Ty::B(32),
            "b64" => Ty::B(64),
            "f16" => Ty::F16,
            "bf16" => Ty::Bf16,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }

    /// Whether the type is a float type.
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::Bf16 | Ty::F32 | Ty::F64)
    }
}

/// A special register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `%tid.{x,y,z}`.
    Tid(u8),
    /// `%ntid.{x,y,z}`.
    Ntid(u8),
    /// `%ctaid.{x,y,z}`.
    Ctaid(u8),
    /// `%nctaid.{x,y,z}`.
    Nctaid(u8),
    /// `%laneid`.
    Laneid,
    /// `%warpid`.
    Warpid,
    /// `%clock` (32 bits): the thread's simulated cycle in a profiled launch, 0 otherwise.
    Clock,
    /// `%clock64`: the same in 64 bits.
    Clock64,
}

/// A source operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// A register by index.
    Reg(u16),
    /// An immediate as raw bits of the instruction's type (floats as IEEE bits).
    Imm(u64),
    /// A special register.
    Special(Special),
    /// The address of a `.shared` variable (its offset in the block's shared window).
    Shared(u64),
}

/// The state space of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Kernel parameters.
    Param,
    /// Device memory.
    Global,
    /// Per-block shared memory.
    Shared,
    /// A generic address (resolved like global here).
    Generic,
}

/// An address operand `[base + offset]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AddrBase {
    /// A register holding an address.
    Reg(u16),
    /// A kernel parameter (its byte offset in the parameter block).
    Param(u32),
    /// A `.shared` variable (its offset in the shared window).
    Shared(u64),
    /// A `.param` variable of the running function's frame: a `.func`'s `.param` parameters and
    /// return values, and the `.param` variables a body declares to pass to a call (its byte
    /// offset in the frame's parameter area).
    Local(u32),
}

/// `[base + offset]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Addr {
    /// The base.
    pub base: AddrBase,
    /// A constant byte offset.
    pub offset: i64,
}

/// Integer and float binary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    MulLo,
    MulHi,
    MulWide,
    Div,
    Rem,
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Copysign,
}

/// Unary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Abs,
    Not,
    Cnot,
    Popc,
    Clz,
    Brev,
    Rcp,
    Sqrt,
    Rsqrt,
    Ex2,
    Lg2,
    Sin,
    Cos,
    /// `tanh.approx.f32`.
    Tanh,
}

/// Comparisons of `setp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Unordered variants (true when either is NaN).
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    /// Both numbers / either NaN.
    Num,
    Nan,
}

/// Boolean combiners (`and.pred`, the `setp` combiner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
    Xor,
}

/// Float rounding of `cvt` and arithmetic; integer rounding of float-to-int `cvt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// No modifier.
    Default,
    /// Round to nearest even (`.rn`, `.rni`).
    Nearest,
    /// Toward zero (`.rz`, `.rzi`).
    Zero,
    /// Toward −∞ (`.rm`, `.rmi`).
    Down,
    /// Toward +∞ (`.rp`, `.rpi`).
    Up,
}

/// Atomic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    Exch,
    Cas,
    And,
    Or,
    Xor,
    Inc,
    Dec,
}

/// `shfl` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

/// `vote` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `mov`.
    Mov { ty: Ty, d: u16, a: Operand },
    /// Two-operand arithmetic and logic.
    Bin {
        op: BinOp,
        ty: Ty,
        d: u16,
        a: Operand,
        b: Operand,
        round: Round,
        ftz: bool,
    },
    /// `mad.{lo,hi,wide}` (integers) and `mad`/`fma` (floats, fused).
    Mad {
        kind: BinOp,
        ty: Ty,
        d: u16,
        a: Operand,
        b: Operand,
        c: Operand,
    },
    /// One-operand arithmetic.
    Un {
        op: UnOp,
        ty: Ty,
        d: u16,
        a: Operand,
        ftz: bool,
    },
    /// `setp`.
    Setp {
        cmp: Cmp,
        ty: Ty,
        d: u16,
        d_not: Option<u16>,
        a: Operand,
        b: Operand,
        combine: Option<(BoolOp, Operand, bool)>,
    },
    /// `selp`.
    Selp {
        ty: Ty,
        d: u16,
        a: Operand,
        b: Operand,
        c: Operand,
    },
    /// `cvt`.
    Cvt {
        dty: Ty,
        sty: Ty,
        round: Round,
        sat: bool,
        ftz: bool,
        d: u16,
        a: Operand,
    },
    /// `cvta` (addresses are the same in every window here).
    Cvta { d: u16, a: Operand },
    /// `ld` of `vec` consecutive elements into `d`.
    Ld {
        space: Space,
        ty: Ty,
        d: [u16; 4],
        vec: u8,
        addr: Addr,
    },
    /// `st` of `vec` consecutive elements.
    St {
        space: Space,
        ty: Ty,
        src: [Operand; 4],
        vec: u8,
        addr: Addr,
    },
    /// `atom` (with a destination) and `red` (without).
    Atom {
        space: Space,
        op: AtomOp,
        ty: Ty,
        d: Option<u16>,
        addr: Addr,
        a: Operand,
        b: Operand,
    },
    /// `red.global.add.v2.f32` / `.v4.f32` (sm_90): `vec` consecutive f32 added atomically
    /// element by element, one instruction.
    RedVec {
        src: [Operand; 4],
        vec: u8,
        addr: Addr,
    },
    /// `shfl.sync`.
    Shfl {
        mode: ShflMode,
        d: u16,
        d_pred: Option<u16>,
        a: Operand,
        b: Operand,
        c: Operand,
        mask: Operand,
    },
    /// `vote.sync`.
    Vote {
        mode: VoteMode,
        d: u16,
        a: Operand,
        negate: bool,
        mask: Operand,
    },
    /// `mma.sync.aligned` (a warp collective).
    Mma(Box<Mma>),
    /// `bar.sync` / `barrier.sync`.
    Bar { id: Operand },
    /// `bra` to an instruction index.
    Bra { target: usize },
    /// `call` of a `.func`.
    Call(Box<Call>),
    /// `ret`: back to the caller, or the end of the thread in an entry.
    Ret,
    /// `exit`: the end of the thread, from any depth of calls.
    Exit,
    /// Something this interpreter does not implement; running it is an error.
    Unsupported(String),
}

/// The shapes of `mma.sync` implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmaShape {
    /// `m16n8k16`: A is 16×16 (four `.b32` registers of pairs), B 16×8 (two).
    M16n8k16,
    /// `m16n8k8`: A is 16×8 (two registers), B 8×8 (one).
    M16n8k8,
}

impl MmaShape {
    /// K, the inner dimension.
    pub fn k(self) -> usize {
        match self {
            MmaShape::M16n8k16 => 16,
            MmaShape::M16n8k8 => 8,
        }
    }

    /// `.b32` registers of A per lane.
    pub fn a_regs(self) -> usize {
        self.k() / 4
    }

    /// `.b32` registers of B per lane.
    pub fn b_regs(self) -> usize {
        self.k() / 8
    }
}

/// A decoded `mma.sync.aligned.{m16n8k16,m16n8k8}.row.col.f32.{bf16,f16}.{bf16,f16}.f32`:
/// D = A·B + C with the PTX ISA's fragment layouts ("Matrix Fragments for mma.m16n8k16 /
/// m16n8k8" with floating-point types), every lane holding its part of each matrix. Each D
/// element is computed as C's element plus the K products in order of k, every product exact in
/// f32 (bf16/f16 inputs) and every sum rounded to f32 (round to nearest even):
/// `d = c; for k in 0..K { d = d + a[row][k] * b[k][col] }`. Tensor cores sum differently
/// (wider, in groups), so a result can differ from a GPU's in its last bits.
#[derive(Clone, Debug, PartialEq)]
pub struct Mma {
    /// The full opcode as written (shape and types), for profiles.
    pub opcode: String,
    pub shape: MmaShape,
    /// The element type of A and B: [`Ty::Bf16`] or [`Ty::F16`], two per `.b32` register (the
    /// lower-indexed element in the low 16 bits).
    pub ab: Ty,
    /// The four f32 registers of D.
    pub d: [u16; 4],
    /// A's registers (the first [`MmaShape::a_regs`]).
    pub a: [u16; 4],
    /// B's registers (the first [`MmaShape::b_regs`]).
    pub b: [u16; 2],
    /// C's four f32 values (registers or immediates).
    pub c: [Operand; 4],
}

/// An instruction with its guard and source position.
#[derive(Clone, Debug, PartialEq)]
pub struct Instr {
    /// The guard predicate register and whether it is negated (`@!%p`).
    pub guard: Option<(u16, bool)>,
    /// The operation.
    pub op: Op,
    /// 1-based source line in its file.
    pub line: u32,
    /// Its file, an index into [`Module::files`](crate::Module::files).
    pub file: u16,
    /// The source text of the instruction, for error messages.
    pub text: String,
}

/// An argument of a `call`, or where the caller receives a return value.
#[derive(Clone, Debug, PartialEq)]
pub enum CallArg {
    /// A register or an immediate (for a return value: a register).
    Value(Operand),
    /// A `.param` variable of the caller's frame (`.param .b32 param0;` declared in its body).
    Param { offset: u32, size: u32 },
}

/// A decoded `call`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The callee, an index into [`Module::functions`](crate::Module::functions).
    pub func: usize,
    /// Where the callee's return values go, in the order of its return parameters.
    pub rets: Vec<CallArg>,
    /// The arguments, in the order of its parameters.
    pub args: Vec<CallArg>,
}

/// Where a `.func` parameter or return value lives in the callee's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormalLoc {
    /// A `.reg` parameter: this register of the callee.
    Reg(u16),
    /// A `.param` parameter: bytes of the callee's parameter area.
    Param { offset: u32, size: u32 },
}

/// A parameter or return value of a `.func`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Formal {
    /// Its name.
    pub name: String,
    /// Its declared type (the element type of a `.param` array).
    pub ty: Ty,
    /// Where it lives.
    pub loc: FormalLoc,
}

/// A `.param` variable of a function's frame (a `.func`'s `.param` parameters and return
/// values, and `.param` variables declared in a body), for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalParam {
    /// Its name.
    pub name: String,
    /// Its byte offset in the frame's parameter area.
    pub offset: u32,
    /// Its byte size.
    pub size: u32,
}

/// A kernel parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its byte size.
    pub size: usize,
    /// Its byte offset in the parameter block.
    pub offset: usize,
}

/// A decoded `.entry` or `.func`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// `.entry` (a kernel) rather than `.func`.
    pub entry: bool,
    /// Whether it has a body (a `.func` prototype does not).
    pub defined: bool,
    /// An entry's parameters, in order.
    pub params: Vec<Param>,
    /// Bytes of an entry's parameter block.
    pub param_bytes: usize,
    /// A `.func`'s parameters, in order.
    pub args: Vec<Formal>,
    /// A `.func`'s return values, in order.
    pub rets: Vec<Formal>,
    /// Bytes of the frame's parameter area (see [`AddrBase::Local`]).
    pub local_bytes: usize,
    /// The variables of that area.
    pub locals: Vec<LocalParam>,
    /// Register names by index.
    pub regs: Vec<String>,
    /// Bytes of `.shared` memory per block (an entry's own and the module's).
    pub shared_bytes: usize,
    /// The body.
    pub code: Vec<Instr>,
    /// `.maxntid`, if declared.
    pub max_threads: Option<u32>,
}
