//! PTX text to [`Function`]s: a tokenizer and a parser for the directives and instructions the
//! crate's kernels use, `.entry` and `.func` (with prototypes) and module-scope `.shared`.
//! Anything else inside a function body becomes [`Op::Unsupported`], which is an error only if
//! it runs. Line numbers are those of the text given; [`crate::Module::parse_parts`] maps them
//! back to each part's file.

use std::collections::HashMap;

use crate::ir::*;

/// A parse error with its file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file the line is in (the [`SourcePart::file`](crate::SourcePart::file) of its part).
    pub file: String,
    /// 1-based line in that file.
    pub line: u32,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.file.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

type PResult<T> = Result<T, ParseError>;

#[derive(Clone, Debug, PartialEq)]
struct Tok {
    text: String,
    line: u32,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%' | '$')
}

/// Splits the text into words and punctuation, dropping comments.
fn tokenize(src: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line) = (0, 1u32);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            out.push(Tok {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else {
            out.push(Tok {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// A cursor over tokens.
struct Cursor {
    toks: Vec<Tok>,
    pos: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(|t| t.text.as_str())
    }
    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(0, |t| t.line)
    }
    fn next(&mut self) -> PResult<String> {
        let t = self.toks.get(self.pos).ok_or_else(|| ParseError {
            file: String::new(),
            line: self.line(),
            message: "unexpected end of input".into(),
        })?;
        self.pos += 1;
        Ok(t.text.clone())
    }
    fn expect(&mut self, want: &str) -> PResult<()> {
        let line = self.line();
        let got = self.next()?;
        if got == want {
            Ok(())
        } else {
            Err(ParseError {
                file: String::new(),
                line,
                message: format!("expected `{want}`, found `{got}`"),
            })
        }
    }
    fn eat(&mut self, want: &str) -> bool {
        if self.peek() == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

fn perr(line: u32, message: impl Into<String>) -> ParseError {
    ParseError {
        file: String::new(),
        line,
        message: message.into(),
    }
}

fn err<T>(line: u32, message: impl Into<String>) -> PResult<T> {
    Err(perr(line, message))
}

/// Parses an integer literal (decimal, `0x` hex, optional sign).
fn parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let body = body.strip_suffix('U').unwrap_or(body);
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from_str_radix(h, 16).ok()?
    } else {
        body.parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Parses an immediate for an instruction of type `ty` into its raw bits.
fn parse_imm(s: &str, ty: Ty) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0f").or_else(|| s.strip_prefix("0F")) {
        let bits = u32::from_str_radix(h, 16).ok()?;
        return Some(match ty {
            Ty::F64 => f64::from(f32::from_bits(bits)).to_bits(),
            _ => u64::from(bits),
        });
    }
    if let Some(h) = s.strip_prefix("0d").or_else(|| s.strip_prefix("0D")) {
        let bits = u64::from_str_radix(h, 16).ok()?;
        return Some(match ty {
            Ty::F32 => u64::from((f64::from_bits(bits) as f32).to_bits()),
            _ => bits,
        });
    }
    if let Some(v) = parse_int(s) {
        return Some(match ty {
            Ty::F32 => u64::from((v as f32).to_bits()),
            Ty::F64 => (v as f64).to_bits(),
            _ => v as u64,
        });
    }
    let f: f64 = s.parse().ok()?;
    Some(match ty {
        Ty::F32 => u64::from((f as f32).to_bits()),
        _ => f.to_bits(),
    })
}

fn parse_special(s: &str) -> Option<Special> {
    let dim = |c: &str| match c {
        "x" => Some(0),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    let (head, tail) = s.split_once('.').unwrap_or((s, ""));
    Some(match head {
        "%tid" => Special::Tid(dim(tail)?),
        "%ntid" => Special::Ntid(dim(tail)?),
        "%ctaid" => Special::Ctaid(dim(tail)?),
        "%nctaid" => Special::Nctaid(dim(tail)?),
        "%laneid" if tail.is_empty() => Special::Laneid,
        "%warpid" if tail.is_empty() => Special::Warpid,
        "%clock" if tail.is_empty() => Special::Clock,
        "%clock64" if tail.is_empty() => Special::Clock64,
        _ => return None,
    })
}

/// One `{ }` block of a function body: the registers and `.param` variables it declares.
#[derive(Default)]
struct Block {
    parent: Option<usize>,
    regs: HashMap<String, u16>,
    locals: HashMap<String, (u32, u32)>,
}

/// Names in scope while parsing one function.
struct Scope<'m> {
    /// Block 0 is the function's outermost one (with its `.reg` parameters).
    blocks: Vec<Block>,
    /// The block of the statement being decoded.
    cur: usize,
    reg_names: Vec<String>,
    /// An entry's kernel parameters: byte offset and size in the parameter block.
    params: HashMap<String, (u32, usize)>,
    shared: HashMap<String, u64>,
    /// The frame's `.param` variables.
    locals: Vec<LocalParam>,
    local_bytes: usize,
    /// Every function of the module, for `call`.
    module: &'m ModuleIndex,
}

/// The module's functions by name, with their signatures.
struct ModuleIndex {
    by_name: HashMap<String, usize>,
    headers: Vec<Header>,
}

impl Scope<'_> {
    fn find_reg(&self, name: &str) -> Option<u16> {
        let mut b = Some(self.cur);
        while let Some(i) = b {
            if let Some(&r) = self.blocks[i].regs.get(name) {
                return Some(r);
            }
            b = self.blocks[i].parent;
        }
        None
    }
    fn find_local(&self, name: &str) -> Option<(u32, u32)> {
        let mut b = Some(self.cur);
        while let Some(i) = b {
            if let Some(&l) = self.blocks[i].locals.get(name) {
                return Some(l);
            }
            b = self.blocks[i].parent;
        }
        None
    }
    fn reg(&self, name: &str, line: u32) -> PResult<u16> {
        match self.find_reg(name) {
            Some(r) => Ok(r),
            None => err(line, format!("undeclared register `{name}`")),
        }
    }
    /// Declares a register in the current block.
    fn declare(&mut self, name: String, line: u32) -> PResult<u16> {
        let block = &mut self.blocks[self.cur];
        if block.regs.contains_key(&name) || block.locals.contains_key(&name) {
            return err(line, format!("`{name}` declared twice"));
        }
        let idx = u16::try_from(self.reg_names.len())
            .ok()
            .filter(|&i| i < u16::MAX)
            .ok_or_else(|| perr(line, "too many registers"))?;
        block.regs.insert(name.clone(), idx);
        self.reg_names.push(name);
        Ok(idx)
    }
    /// Declares a `.param` variable of the frame in the current block.
    fn declare_local(
        &mut self,
        name: String,
        size: usize,
        align: usize,
        line: u32,
    ) -> PResult<(u32, u32)> {
        let block = &mut self.blocks[self.cur];
        if block.regs.contains_key(&name) || block.locals.contains_key(&name) {
            return err(line, format!("`{name}` declared twice"));
        }
        let offset = self.local_bytes.div_ceil(align.max(1)) * align.max(1);
        self.local_bytes = offset + size;
        let (offset, size) = (
            u32::try_from(offset).map_err(|_| perr(line, "parameter area too large"))?,
            u32::try_from(size).map_err(|_| perr(line, "parameter too large"))?,
        );
        block.locals.insert(name.clone(), (offset, size));
        self.locals.push(LocalParam { name, offset, size });
        Ok((offset, size))
    }
}

/// A raw operand as written: tokens grouped by brackets and braces.
#[derive(Clone, Debug)]
enum Raw {
    Word(String),
    Addr(Vec<String>),
    Vector(Vec<String>),
}

/// The `vec` source operands of a vector store or reduction (`{a, b, ..}`, or one operand when
/// `vec` is 1), padded to four; `what` names the instruction's count for a mismatch.
fn vector_sources(
    scope: &Scope,
    raw: &Raw,
    ty: Ty,
    vec: u8,
    line: u32,
    what: impl FnOnce() -> String,
) -> PResult<[Operand; 4]> {
    let vals: Vec<Operand> = match raw {
        Raw::Vector(items) => items
            .iter()
            .map(|w| operand(scope, &Raw::Word(w.clone()), ty, line))
            .collect::<PResult<_>>()?,
        other => vec![operand(scope, other, ty, line)?],
    };
    if vals.len() != vec as usize {
        return err(line, format!("{}, found {}", what(), vals.len()));
    }
    let mut src = [Operand::Imm(0); 4];
    src[..vals.len()].copy_from_slice(&vals);
    Ok(src)
}

/// Parses a source or destination operand of type `ty`.
fn operand(scope: &Scope, raw: &Raw, ty: Ty, line: u32) -> PResult<Operand> {
    let Raw::Word(w) = raw else {
        return err(line, format!("expected a value, found {raw:?}"));
    };
    if let Some(sp) = parse_special(w) {
        return Ok(Operand::Special(sp));
    }
    if let Some(r) = scope.find_reg(w) {
        return Ok(Operand::Reg(r));
    }
    if let Some(&off) = scope.shared.get(w) {
        return Ok(Operand::Shared(off));
    }
    if let Some(bits) = parse_imm(w, ty) {
        return Ok(Operand::Imm(bits));
    }
    err(line, format!("unknown operand `{w}`"))
}

fn dest(scope: &Scope, raw: &Raw, line: u32) -> PResult<u16> {
    match raw {
        Raw::Word(w) => scope.reg(w, line),
        _ => err(line, format!("expected a register, found {raw:?}")),
    }
}

fn address(scope: &Scope, raw: &Raw, line: u32) -> PResult<Addr> {
    let Raw::Addr(parts) = raw else {
        return err(line, format!("expected an address `[...]`, found {raw:?}"));
    };
    let base_name = parts.first().ok_or_else(|| ParseError {
        file: String::new(),
        line,
        message: "empty address".into(),
    })?;
    let mut offset = 0i64;
    let mut i = 1;
    while i < parts.len() {
        let sign = match parts[i].as_str() {
            "+" => 1,
            "-" => -1,
            other => return err(line, format!("unexpected `{other}` in an address")),
        };
        let v = parts
            .get(i + 1)
            .and_then(|s| parse_int(s))
            .ok_or_else(|| ParseError {
                file: String::new(),
                line,
                message: "bad address offset".into(),
            })?;
        offset += sign * v as i64;
        i += 2;
    }
    let base = if let Some(r) = scope.find_reg(base_name) {
        AddrBase::Reg(r)
    } else if let Some((off, _)) = scope.find_local(base_name) {
        AddrBase::Local(off)
    } else if let Some(&(off, _)) = scope.params.get(base_name) {
        AddrBase::Param(off)
    } else if let Some(&off) = scope.shared.get(base_name) {
        AddrBase::Shared(off)
    } else {
        return err(line, format!("unknown address base `{base_name}`"));
    };
    Ok(Addr { base, offset })
}

fn vector_regs(scope: &Scope, raw: &Raw, line: u32) -> PResult<Vec<u16>> {
    match raw {
        Raw::Vector(items) => items.iter().map(|w| scope.reg(w, line)).collect(),
        Raw::Word(w) => Ok(vec![scope.reg(w, line)?]),
        _ => err(line, "expected registers"),
    }
}

/// Splits modifiers into the parts instructions care about.
struct Mods<'a> {
    all: Vec<&'a str>,
}

impl<'a> Mods<'a> {
    fn has(&self, m: &str) -> bool {
        self.all.contains(&m)
    }
    fn types(&self) -> Vec<Ty> {
        self.all.iter().filter_map(|m| Ty::parse(m)).collect()
    }
    fn ty(&self, line: u32) -> PResult<Ty> {
        self.types().last().copied().ok_or_else(|| ParseError {
            file: String::new(),
            line,
            message: "instruction has no type".into(),
        })
    }
    fn space(&self) -> Space {
        if self.has("param") {
            Space::Param
        } else if self.has("shared") {
            Space::Shared
        } else if self.has("global") {
            Space::Global
        } else {
            Space::Generic
        }
    }
    fn round(&self) -> Round {
        for m in &self.all {
            match *m {
                "rn" | "rni" => return Round::Nearest,
                "rz" | "rzi" => return Round::Zero,
                "rm" | "rmi" => return Round::Down,
                "rp" | "rpi" => return Round::Up,
                _ => {}
            }
        }
        Round::Default
    }
    fn vec(&self) -> u8 {
        if self.has("v4") {
            4
        } else if self.has("v2") {
            2
        } else {
            1
        }
    }
}

fn cmp_of(s: &str) -> Option<Cmp> {
    Some(match s {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" | "lo" => Cmp::Lt,
        "le" | "ls" => Cmp::Le,
        "gt" | "hi" => Cmp::Gt,
        "ge" | "hs" => Cmp::Ge,
        "equ" => Cmp::Equ,
        "neu" => Cmp::Neu,
        "ltu" => Cmp::Ltu,
        "leu" => Cmp::Leu,
        "gtu" => Cmp::Gtu,
        "geu" => Cmp::Geu,
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        _ => return None,
    })
}

fn bool_of(s: &str) -> Option<BoolOp> {
    Some(match s {
        "and" => BoolOp::And,
        "or" => BoolOp::Or,
        "xor" => BoolOp::Xor,
        _ => return None,
    })
}

fn atom_of(s: &str) -> Option<AtomOp> {
    Some(match s {
        "add" => AtomOp::Add,
        "min" => AtomOp::Min,
        "max" => AtomOp::Max,
        "exch" => AtomOp::Exch,
        "cas" => AtomOp::Cas,
        "and" => AtomOp::And,
        "or" => AtomOp::Or,
        "xor" => AtomOp::Xor,
        "inc" => AtomOp::Inc,
        "dec" => AtomOp::Dec,
        _ => return None,
    })
}

/// Decodes one instruction from its opcode and raw operands.
fn decode(
    scope: &Scope,
    opcode: &str,
    ops: &[Raw],
    line: u32,
    labels: &HashMap<String, usize>,
) -> PResult<Op> {
    let mut parts = opcode.split('.');
    let name = parts.next().unwrap_or("");
    let mods = Mods {
        all: parts.collect(),
    };
    let n = ops.len();
    let need = |k: usize| -> PResult<()> {
        if n == k {
            Ok(())
        } else {
            err(line, format!("`{opcode}` takes {k} operands, found {n}"))
        }
    };
    let src = |i: usize, ty: Ty| operand(scope, &ops[i], ty, line);
    let dst = |i: usize| dest(scope, &ops[i], line);
    Ok(match name {
        "mov" => {
            need(2)?;
            let ty = mods.ty(line)?;
            Op::Mov {
                ty,
                d: dst(0)?,
                a: src(1, ty)?,
            }
        }
        "add" | "sub" | "div" | "rem" | "min" | "max" | "and" | "or" | "xor" | "shl" | "shr"
        | "copysign" | "mul" => {
            need(3)?;
            let ty = mods.ty(line)?;
            let op = match name {
                "add" => BinOp::Add,
                "sub" => BinOp::Sub,
                "div" => BinOp::Div,
                "rem" => BinOp::Rem,
                "min" => BinOp::Min,
                "max" => BinOp::Max,
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "xor" => BinOp::Xor,
                "shl" => BinOp::Shl,
                "shr" => BinOp::Shr,
                "copysign" => BinOp::Copysign,
                _ if mods.has("wide") => BinOp::MulWide,
                _ if mods.has("hi") => BinOp::MulHi,
                _ => BinOp::MulLo,
            };
            // Shift amounts are always u32.
            let bty = if matches!(op, BinOp::Shl | BinOp::Shr) {
                Ty::U(32)
            } else {
                ty
            };
            Op::Bin {
                op,
                ty,
                d: dst(0)?,
                a: src(1, ty)?,
                b: src(2, bty)?,
                round: mods.round(),
                ftz: mods.has("ftz"),
            }
        }
        "mad" | "fma" => {
            need(4)?;
            let ty = mods.ty(line)?;
            let kind = if ty.is_float() {
                BinOp::MulLo
            } else if mods.has("wide") {
                BinOp::MulWide
            } else if mods.has("hi") {
                BinOp::MulHi
            } else {
                BinOp::MulLo
            };
            let cty = match (kind, ty) {
                (BinOp::MulWide, Ty::U(b)) => Ty::U(2 * b),
                (BinOp::MulWide, Ty::S(b)) => Ty::S(2 * b),
                _ => ty,
            };
            Op::Mad {
                kind,
                ty,
                d: dst(0)?,
                a: src(1, ty)?,
                b: src(2, ty)?,
                c: src(3, cty)?,
            }
        }
        "neg" | "abs" | "not" | "cnot" | "popc" | "clz" | "brev" | "rcp" | "sqrt" | "rsqrt"
        | "ex2" | "lg2" | "sin" | "cos" | "tanh" => {
            need(2)?;
            let ty = mods.ty(line)?;
            let op = match name {
                "neg" => UnOp::Neg,
                "abs" => UnOp::Abs,
                "not" => UnOp::Not,
                "cnot" => UnOp::Cnot,
                "popc" => UnOp::Popc,
                "clz" => UnOp::Clz,
                "brev" => UnOp::Brev,
                "rcp" => UnOp::Rcp,
                "sqrt" => UnOp::Sqrt,
                "rsqrt" => UnOp::Rsqrt,
                "ex2" => UnOp::Ex2,
                "lg2" => UnOp::Lg2,
                "sin" => UnOp::Sin,
                "tanh" => UnOp::Tanh,
                _ => UnOp::Cos,
            };
            Op::Un {
                op,
                ty,
                d: dst(0)?,
                a: src(1, ty)?,
                ftz: mods.has("ftz"),
            }
        }
        "setp" => {
            let ty = mods.ty(line)?;
            let cmp = mods
                .all
                .iter()
                .find_map(|m| cmp_of(m))
                .ok_or_else(|| ParseError {
                    file: String::new(),
                    line,
                    message: format!("`{opcode}`: no comparison"),
                })?;
            let combine_op = mods.all.iter().skip(1).find_map(|m| bool_of(m));
            // `setp.cmp.ty p|q, a, b` or with a combiner `setp.cmp.op.ty p, a, b, c`.
            let (d, d_not) = match &ops.first() {
                Some(Raw::Word(w)) if w.contains('|') => {
                    let (p, q) = w.split_once('|').unwrap_or((w, ""));
                    (scope.reg(p, line)?, Some(scope.reg(q, line)?))
                }
                _ => (dst(0)?, None),
            };
            let combine = match combine_op {
                Some(op) => {
                    need(4)?;
                    let (negate, name) = match &ops[3] {
                        Raw::Word(w) => match w.strip_prefix('!') {
                            Some(r) => (true, r.to_string()),
                            None => (false, w.clone()),
                        },
                        _ => return err(line, "bad setp combiner operand"),
                    };
                    Some((
                        op,
                        operand(scope, &Raw::Word(name), Ty::Pred, line)?,
                        negate,
                    ))
                }
                None => {
                    need(3)?;
                    None
                }
            };
            Op::Setp {
                cmp,
                ty,
                d,
                d_not,
                a: src(1, ty)?,
                b: src(2, ty)?,
                combine,
            }
        }
        "selp" => {
            need(4)?;
            let ty = mods.ty(line)?;
            Op::Selp {
                ty,
                d: dst(0)?,
                a: src(1, ty)?,
                b: src(2, ty)?,
                c: src(3, Ty::Pred)?,
            }
        }
        "cvt" => {
            need(2)?;
            let types = mods.types();
            if types.len() != 2 {
                return err(line, format!("`{opcode}`: cvt needs two types"));
            }
            Op::Cvt {
                dty: types[0],
                sty: types[1],
                round: mods.round(),
                sat: mods.has("sat"),
                ftz: mods.has("ftz"),
                d: dst(0)?,
                a: src(1, types[1])?,
            }
        }
        "cvta" => {
            need(2)?;
            Op::Cvta {
                d: dst(0)?,
                a: src(1, Ty::U(64))?,
            }
        }
        "ld" => {
            need(2)?;
            let ty = mods.ty(line)?;
            let regs = vector_regs(scope, &ops[0], line)?;
            let vec = mods.vec();
            if regs.len() != vec as usize {
                return err(
                    line,
                    format!(
                        "`{opcode}` loads {vec} values into {} registers",
                        regs.len()
                    ),
                );
            }
            let mut d = [0u16; 4];
            d[..regs.len()].copy_from_slice(&regs);
            Op::Ld {
                space: mods.space(),
                ty,
                d,
                vec,
                addr: address(scope, &ops[1], line)?,
            }
        }
        "st" => {
            need(2)?;
            let ty = mods.ty(line)?;
            let vec = mods.vec();
            let src = vector_sources(scope, &ops[1], ty, vec, line, || {
                format!("`{opcode}` stores {vec} values")
            })?;
            Op::St {
                space: mods.space(),
                ty,
                src,
                vec,
                addr: address(scope, &ops[0], line)?,
            }
        }
        "red" if mods.vec() > 1 => {
            // Vector reductions (PTX ISA 8.1, sm_90): only `.add` of f32 on global memory is
            // implemented (the 16-bit packed forms are not).
            need(2)?;
            let ty = mods.ty(line)?;
            let space = mods.space();
            if ty != Ty::F32 || !mods.has("add") || !matches!(space, Space::Global | Space::Generic)
            {
                return err(
                    line,
                    format!("`{opcode}`: vector red is implemented for .global.add.f32 only"),
                );
            }
            let vec = mods.vec();
            let src = vector_sources(scope, &ops[1], ty, vec, line, || {
                format!("`{opcode}` adds {vec} values")
            })?;
            Op::RedVec {
                src,
                vec,
                addr: address(scope, &ops[0], line)?,
            }
        }
        "atom" | "red" => {
            let ty = mods.ty(line)?;
            let op = mods
                .all
                .iter()
                .find_map(|m| atom_of(m))
                .ok_or_else(|| ParseError {
                    file: String::new(),
                    line,
                    message: format!("`{opcode}`: no atomic operation"),
                })?;
            let (d, rest) = if name == "atom" {
                (Some(dst(0)?), 1)
            } else {
                (None, 0)
            };
            let want = rest + if op == AtomOp::Cas { 3 } else { 2 };
            need(want)?;
            let addr = address(scope, &ops[rest], line)?;
            let a = src(rest + 1, ty)?;
            let b = if op == AtomOp::Cas {
                src(rest + 2, ty)?
            } else {
                Operand::Imm(0)
            };
            Op::Atom {
                space: mods.space(),
                op,
                ty,
                d,
                addr,
                a,
                b,
            }
        }
        "shfl" => {
            need(5)?;
            let mode = if mods.has("bfly") {
                ShflMode::Bfly
            } else if mods.has("up") {
                ShflMode::Up
            } else if mods.has("down") {
                ShflMode::Down
            } else {
                ShflMode::Idx
            };
            let (d, d_pred) = match &ops[0] {
                Raw::Word(w) if w.contains('|') => {
                    let (p, q) = w.split_once('|').unwrap_or((w, ""));
                    (scope.reg(p, line)?, Some(scope.reg(q, line)?))
                }
                _ => (dst(0)?, None),
            };
            let u = Ty::U(32);
            Op::Shfl {
                mode,
                d,
                d_pred,
                a: src(1, Ty::B(32))?,
                b: src(2, u)?,
                c: src(3, u)?,
                mask: src(4, u)?,
            }
        }
        "vote" => {
            need(3)?;
            let mode = if mods.has("all") {
                VoteMode::All
            } else if mods.has("any") {
                VoteMode::Any
            } else if mods.has("uni") {
                VoteMode::Uni
            } else {
                VoteMode::Ballot
            };
            let (negate, pred) = match &ops[1] {
                Raw::Word(w) => match w.strip_prefix('!') {
                    Some(r) => (true, Raw::Word(r.to_string())),
                    None => (false, Raw::Word(w.clone())),
                },
                _ => return err(line, "bad vote operand"),
            };
            Op::Vote {
                mode,
                d: dst(0)?,
                a: operand(scope, &pred, Ty::Pred, line)?,
                negate,
                mask: src(2, Ty::U(32))?,
            }
        }
        "bar" | "barrier" => {
            if !(mods.has("sync") || mods.all.is_empty()) {
                return Ok(Op::Unsupported(opcode.to_string()));
            }
            let id = if n >= 1 {
                src(0, Ty::U(32))?
            } else {
                Operand::Imm(0)
            };
            if n > 1 {
                return Ok(Op::Unsupported(format!("{opcode} with a thread count")));
            }
            Op::Bar { id }
        }
        "bra" => {
            need(1)?;
            let Raw::Word(label) = &ops[0] else {
                return err(line, "bra needs a label");
            };
            let target = *labels.get(label).ok_or_else(|| ParseError {
                file: String::new(),
                line,
                message: format!("unknown label `{label}`"),
            })?;
            Op::Bra { target }
        }
        "mma" => decode_mma(scope, opcode, &mods, ops, line)?,
        "ret" => Op::Ret,
        "exit" => Op::Exit,
        _ => Op::Unsupported(opcode.to_string()),
    })
}

/// Decodes `mma.sync.aligned.{m16n8k16,m16n8k8}.row.col.f32.{bf16,f16}.{bf16,f16}.f32 {d},
/// {a}, {b}, {c}`; other `mma` forms become [`Op::Unsupported`].
fn decode_mma(scope: &Scope, opcode: &str, mods: &Mods, ops: &[Raw], line: u32) -> PResult<Op> {
    let shape = if mods.has("m16n8k16") {
        MmaShape::M16n8k16
    } else if mods.has("m16n8k8") {
        MmaShape::M16n8k8
    } else {
        return Ok(Op::Unsupported(opcode.to_string()));
    };
    let types = mods.types();
    let ab = match types.as_slice() {
        [Ty::F32, Ty::Bf16, Ty::Bf16, Ty::F32] => Ty::Bf16,
        [Ty::F32, Ty::F16, Ty::F16, Ty::F32] => Ty::F16,
        _ => return Ok(Op::Unsupported(opcode.to_string())),
    };
    if !(mods.has("sync") && mods.has("aligned") && mods.has("row") && mods.has("col")) {
        return Ok(Op::Unsupported(opcode.to_string()));
    }
    if ops.len() != 4 {
        return err(
            line,
            format!("`{opcode}` takes 4 operands, found {}", ops.len()),
        );
    }
    let regs = |i: usize, n: usize, what: &str| -> PResult<Vec<u16>> {
        let r = vector_regs(scope, &ops[i], line)?;
        if r.len() != n {
            return err(
                line,
                format!("`{opcode}`: {what} takes {n} registers, found {}", r.len()),
            );
        }
        Ok(r)
    };
    let d = regs(0, 4, "D")?;
    let a = regs(1, shape.a_regs(), "A")?;
    let b = regs(2, shape.b_regs(), "B")?;
    let c: Vec<Operand> = match &ops[3] {
        Raw::Vector(items) if items.len() == 4 => items
            .iter()
            .map(|w| operand(scope, &Raw::Word(w.clone()), Ty::F32, line))
            .collect::<PResult<_>>()?,
        _ => return err(line, format!("`{opcode}`: C takes 4 values")),
    };
    let mut m = Mma {
        opcode: opcode.to_string(),
        shape,
        ab,
        d: [0; 4],
        a: [0; 4],
        b: [0; 2],
        c: [Operand::Imm(0); 4],
    };
    m.d.copy_from_slice(&d);
    m.a[..a.len()].copy_from_slice(&a);
    m.b[..b.len()].copy_from_slice(&b);
    m.c.copy_from_slice(&c);
    Ok(Op::Mma(Box::new(m)))
}

/// Groups the tokens of one instruction's operand list.
fn raw_operands(toks: &[Tok]) -> PResult<Vec<Raw>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let line = t.line;
        match t.text.as_str() {
            "[" => {
                let mut parts = Vec::new();
                i += 1;
                while i < toks.len() && toks[i].text != "]" {
                    parts.push(toks[i].text.clone());
                    i += 1;
                }
                if i == toks.len() {
                    return err(line, "unclosed `[`");
                }
                out.push(Raw::Addr(parts));
                i += 1;
            }
            "{" => {
                let mut items = Vec::new();
                i += 1;
                while i < toks.len() && toks[i].text != "}" {
                    if toks[i].text != "," {
                        items.push(toks[i].text.clone());
                    }
                    i += 1;
                }
                if i == toks.len() {
                    return err(line, "unclosed `{`");
                }
                out.push(Raw::Vector(items));
                i += 1;
            }
            _ => {
                // A word, a negative number, a `!pred`, or a `p|q` pair.
                let mut word = String::new();
                while i < toks.len() && toks[i].text != "," {
                    word.push_str(&toks[i].text);
                    i += 1;
                }
                out.push(Raw::Word(word));
            }
        }
        if i < toks.len() {
            if toks[i].text != "," {
                return err(
                    toks[i].line,
                    format!("expected `,`, found `{}`", toks[i].text),
                );
            }
            i += 1;
        }
    }
    Ok(out)
}

/// One statement of a function body, with the `{ }` block it is in.
enum Stmt {
    Label(String, u32),
    Decl(Vec<Tok>, usize),
    Instr {
        guard: Option<(String, bool)>,
        opcode: String,
        operands: Vec<Tok>,
        line: u32,
        text: String,
        block: usize,
    },
}

/// The statements of a body up to its closing `}`, and its blocks' parents (block 0: the body).
fn body_statements(cur: &mut Cursor) -> PResult<(Vec<Stmt>, Vec<Option<usize>>)> {
    let mut out = Vec::new();
    let mut parents = vec![None];
    let mut stack = vec![0usize];
    loop {
        let line = cur.line();
        let Some(first) = cur.peek().map(str::to_string) else {
            return err(line, "unterminated function body");
        };
        let block = *stack.last().unwrap_or(&0);
        if first == "}" {
            cur.pos += 1;
            stack.pop();
            if stack.is_empty() {
                return Ok((out, parents));
            }
            continue;
        }
        if first == "{" {
            // A nested block scopes the declarations in it (nvcc's call sequences).
            cur.pos += 1;
            parents.push(Some(block));
            stack.push(parents.len() - 1);
            continue;
        }
        if first == ";" {
            cur.pos += 1;
            continue;
        }
        if cur.toks.get(cur.pos + 1).is_some_and(|t| t.text == ":") && !first.starts_with('.') {
            cur.pos += 2;
            out.push(Stmt::Label(first, line));
            continue;
        }
        let mut toks = Vec::new();
        while let Some(t) = cur.toks.get(cur.pos) {
            cur.pos += 1;
            if t.text == ";" {
                break;
            }
            toks.push(t.clone());
        }
        if first.starts_with('.') {
            out.push(Stmt::Decl(toks, block));
            continue;
        }
        let text = toks
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut i = 0;
        let guard = if toks[0].text == "@" {
            let negate = toks.get(1).is_some_and(|t| t.text == "!");
            let at = if negate { 2 } else { 1 };
            i = at + 1;
            let reg = toks
                .get(at)
                .ok_or_else(|| perr(line, "guard without a predicate"))?;
            Some((reg.text.clone(), negate))
        } else {
            None
        };
        let opcode = toks
            .get(i)
            .map(|t| t.text.clone())
            .ok_or_else(|| perr(line, "missing opcode"))?;
        out.push(Stmt::Instr {
            guard,
            opcode,
            operands: toks[i + 1..].to_vec(),
            line,
            text,
            block,
        });
    }
}

/// A variable declaration's parts: `[.align A] [.ptr .space ...] .type name[<N>][[N]]`.
struct VarDecl {
    ty: Ty,
    name: String,
    align: usize,
    /// `name[N]`: an array of N.
    count: Option<usize>,
}

/// Reads one variable from `toks` (after its state space).
fn var_decl(toks: &[Tok], line: u32) -> PResult<VarDecl> {
    let mut align = 0usize;
    let mut ty = None;
    let mut name = None;
    let mut count = None;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].text.as_str();
        match t {
            ".align" => {
                align = toks
                    .get(i + 1)
                    .and_then(|t| parse_int(&t.text))
                    .ok_or_else(|| perr(line, "bad .align"))? as usize;
                i += 2;
            }
            ".ptr" | ".global" | ".shared" | ".const" | ".local" => i += 1,
            "[" => {
                let n = match toks.get(i + 1).map(|t| t.text.as_str()) {
                    Some("]") => {
                        return err(line, "unsized arrays are not supported");
                    }
                    Some(s) => {
                        parse_int(s).ok_or_else(|| perr(line, format!("bad array size `{s}`")))?
                    }
                    None => return err(line, "unclosed `[`"),
                };
                count = Some(n as usize);
                i += 3;
            }
            _ if t.starts_with('.') => {
                ty = Some(Ty::parse(&t[1..]).ok_or_else(|| perr(line, format!("bad type `{t}`")))?);
                i += 1;
            }
            _ => {
                if name.is_some() {
                    return err(line, format!("unexpected `{t}` in a declaration"));
                }
                name = Some(t.to_string());
                i += 1;
            }
        }
    }
    let (Some(ty), Some(name)) = (ty, name) else {
        return err(line, "a declaration needs a type and a name");
    };
    Ok(VarDecl {
        ty,
        name,
        align,
        count,
    })
}

/// Bytes of a `.param`/`.shared` variable and its alignment (the element size unless given).
fn var_layout(v: &VarDecl) -> (usize, usize) {
    let size = v.ty.bytes() * v.count.unwrap_or(1);
    let align = if v.align == 0 { v.ty.bytes() } else { v.align };
    (size, align.max(1))
}

/// Lays out a `.shared` declaration after `shared_bytes`; returns its name and offset.
fn shared_decl(toks: &[Tok], shared_bytes: &mut usize) -> PResult<(String, u64)> {
    let line = toks.first().map_or(0, |t| t.line);
    let v =
        var_decl(&toks[1..], line).map_err(|e| perr(line, format!(".shared: {}", e.message)))?;
    let (size, _) = var_layout(&v);
    // Shared variables are aligned as declared (byte-aligned when not).
    let align = v.align.max(1);
    let offset = shared_bytes.div_ceil(align) * align;
    *shared_bytes = offset + size;
    Ok((v.name, offset as u64))
}

fn declare(
    scope: &mut Scope<'_>,
    toks: &[Tok],
    shared_bytes: &mut usize,
    entry: bool,
) -> PResult<()> {
    let line = toks.first().map_or(0, |t| t.line);
    let kind = toks[0].text.as_str();
    match kind {
        ".reg" => {
            // .reg .type name, name<N>, ...
            let mut i = 2;
            while i < toks.len() {
                let name = toks[i].text.clone();
                if toks.get(i + 1).is_some_and(|t| t.text == "<") {
                    let count = toks
                        .get(i + 2)
                        .and_then(|t| parse_int(&t.text))
                        .ok_or_else(|| perr(line, "bad register range"))?;
                    for k in 0..count {
                        scope.declare(format!("{name}{k}"), line)?;
                    }
                    i += 4;
                } else if name != "," {
                    scope.declare(name, line)?;
                    i += 1;
                } else {
                    i += 1;
                }
            }
            Ok(())
        }
        ".shared" => {
            if !entry {
                return err(
                    line,
                    "`.shared` inside a .func: declare it at module scope or in an .entry",
                );
            }
            let (name, offset) = shared_decl(toks, shared_bytes)?;
            scope.shared.insert(name, offset);
            Ok(())
        }
        ".param" => {
            let v = var_decl(&toks[1..], line)?;
            let (size, align) = var_layout(&v);
            scope.declare_local(v.name, size, align, line)?;
            Ok(())
        }
        ".pragma" | ".loc" => Ok(()),
        _ => err(line, format!("unsupported declaration `{kind}`")),
    }
}

/// A parsed signature, with the body still as statements.
struct Header {
    name: String,
    entry: bool,
    line: u32,
    params: Vec<Param>,
    param_bytes: usize,
    args: Vec<Formal>,
    rets: Vec<Formal>,
    /// Register names of the `.reg` formals, by index.
    formal_regs: Vec<String>,
    locals: Vec<LocalParam>,
    local_bytes: usize,
    max_threads: Option<u32>,
    body: Option<(Vec<Stmt>, Vec<Option<usize>>)>,
}

/// One parenthesised parameter list: each parameter's space (`.reg`/`.param`) and declaration.
fn param_list(cur: &mut Cursor) -> PResult<Vec<(String, VarDecl, u32)>> {
    cur.expect("(")?;
    let mut out = Vec::new();
    loop {
        if cur.eat(")") {
            return Ok(out);
        }
        let line = cur.line();
        let space = cur.next()?;
        if space != ".reg" && space != ".param" {
            return err(
                line,
                format!("expected `.param` or `.reg`, found `{space}`"),
            );
        }
        let start = cur.pos;
        let mut depth = 0;
        while let Some(t) = cur.peek() {
            match t {
                "[" => depth += 1,
                "]" => depth -= 1,
                "," | ")" if depth == 0 => break,
                _ => {}
            }
            cur.pos += 1;
        }
        let toks = cur.toks[start..cur.pos].to_vec();
        out.push((space, var_decl(&toks, line)?, line));
        cur.eat(",");
    }
}

/// Parses an `.entry` or `.func` signature (after the keyword) and its body or `;`.
fn parse_header(cur: &mut Cursor, entry: bool) -> PResult<Header> {
    let line = cur.line();
    let raw_rets = if !entry && cur.peek() == Some("(") {
        param_list(cur)?
    } else {
        Vec::new()
    };
    let name = cur.next()?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$') {
        return err(line, format!("bad function name `{name}`"));
    }
    let raw_args = if cur.peek() == Some("(") {
        param_list(cur)?
    } else {
        Vec::new()
    };
    let mut h = Header {
        name,
        entry,
        line,
        params: Vec::new(),
        param_bytes: 0,
        args: Vec::new(),
        rets: Vec::new(),
        formal_regs: Vec::new(),
        locals: Vec::new(),
        local_bytes: 0,
        max_threads: None,
        body: None,
    };
    if entry {
        for (space, v, line) in raw_args {
            if space != ".param" {
                return err(line, "an .entry's parameters are `.param`s");
            }
            let (size, align) = var_layout(&v);
            let offset = h.param_bytes.div_ceil(align) * align;
            h.param_bytes = offset + size;
            h.params.push(Param {
                name: v.name,
                size,
                offset,
            });
        }
    } else {
        for (is_ret, (space, v, line)) in raw_rets
            .into_iter()
            .map(|p| (true, p))
            .chain(raw_args.into_iter().map(|p| (false, p)))
        {
            let known =
                h.formal_regs.contains(&v.name) || h.locals.iter().any(|l| l.name == v.name);
            if known {
                return err(line, format!("parameter `{}` declared twice", v.name));
            }
            let loc = if space == ".reg" {
                if v.count.is_some() {
                    return err(line, "a `.reg` parameter cannot be an array");
                }
                let idx = h.formal_regs.len() as u16;
                h.formal_regs.push(v.name.clone());
                FormalLoc::Reg(idx)
            } else {
                let (size, align) = var_layout(&v);
                let offset = h.local_bytes.div_ceil(align) * align;
                h.local_bytes = offset + size;
                let (offset, size) = (offset as u32, size as u32);
                h.locals.push(LocalParam {
                    name: v.name.clone(),
                    offset,
                    size,
                });
                FormalLoc::Param { offset, size }
            };
            let f = Formal {
                name: v.name,
                ty: v.ty,
                loc,
            };
            if is_ret {
                h.rets.push(f);
            } else {
                h.args.push(f);
            }
        }
    }
    // Attributes: `.maxntid`, `.reqntid`, `.noinline`, `.minnctapersm`, ...
    loop {
        let aline = cur.line();
        match cur.peek() {
            None => return err(aline, format!("`{}` has neither a body nor `;`", h.name)),
            Some(";") => {
                cur.pos += 1;
                return Ok(h);
            }
            Some("{") => break,
            Some(_) => {}
        }
        let t = cur.next()?;
        if t == ".maxntid" || t == ".reqntid" {
            let mut n = 1u32;
            loop {
                n *= parse_int(&cur.next()?).unwrap_or(1) as u32;
                if !cur.eat(",") {
                    break;
                }
            }
            h.max_threads = Some(n);
        }
    }
    cur.expect("{")?;
    h.body = Some(body_statements(cur)?);
    Ok(h)
}

/// Skips the rest of the current line (a one-line module directive).
fn skip_line(cur: &mut Cursor) {
    let line = cur.line();
    while cur.toks.get(cur.pos).is_some_and(|t| t.line == line) {
        cur.pos += 1;
    }
}

/// Parses every `.entry` and `.func` of a PTX module. Lines are those of `src`.
pub(crate) fn parse_module(src: &str) -> PResult<Vec<Function>> {
    let lines: Vec<&str> = src.lines().collect();
    let mut cur = Cursor {
        toks: tokenize(src),
        pos: 0,
    };
    let mut index = ModuleIndex {
        by_name: HashMap::new(),
        headers: Vec::new(),
    };
    let mut module_shared = HashMap::new();
    let mut module_shared_bytes = 0usize;
    while let Some(t) = cur.peek().map(str::to_string) {
        let line = cur.line();
        match t.as_str() {
            ".version" | ".target" | ".address_size" => skip_line(&mut cur),
            ".visible" | ".weak" | ".extern" => {
                cur.pos += 1;
            }
            ".entry" | ".func" => {
                cur.pos += 1;
                let h = parse_header(&mut cur, t == ".entry")?;
                match index.by_name.get(&h.name) {
                    Some(&i) => {
                        let old = &index.headers[i];
                        if old.entry != h.entry
                            || old.args.len() != h.args.len()
                            || old.rets.len() != h.rets.len()
                        {
                            return err(
                                line,
                                format!("`{}` does not match its earlier declaration", h.name),
                            );
                        }
                        if h.body.is_some() {
                            if old.body.is_some() {
                                return err(line, format!("`{}` defined twice", h.name));
                            }
                            index.headers[i] = h;
                        }
                    }
                    None => {
                        index.by_name.insert(h.name.clone(), index.headers.len());
                        index.headers.push(h);
                    }
                }
            }
            ".shared" => {
                let mut toks = Vec::new();
                while let Some(t) = cur.toks.get(cur.pos) {
                    cur.pos += 1;
                    if t.text == ";" {
                        break;
                    }
                    toks.push(t.clone());
                }
                let (name, offset) = shared_decl(&toks, &mut module_shared_bytes)?;
                if module_shared.insert(name.clone(), offset).is_some() {
                    return err(line, format!("`{name}` declared twice"));
                }
            }
            ".pragma" => while cur.next()? != ";" {},
            other => return err(line, format!("unsupported module-level `{other}`")),
        }
    }
    let mut functions = Vec::with_capacity(index.headers.len());
    for i in 0..index.headers.len() {
        functions.push(build_function(
            &index,
            i,
            &lines,
            &module_shared,
            module_shared_bytes,
        )?);
    }
    Ok(functions)
}

/// Decodes the body of function `i` of the module.
fn build_function(
    index: &ModuleIndex,
    i: usize,
    lines: &[&str],
    module_shared: &HashMap<String, u64>,
    module_shared_bytes: usize,
) -> PResult<Function> {
    let h = &index.headers[i];
    let mut scope = Scope {
        blocks: vec![Block::default()],
        cur: 0,
        reg_names: Vec::new(),
        params: h
            .params
            .iter()
            .map(|p| (p.name.clone(), (p.offset as u32, p.size)))
            .collect(),
        shared: module_shared.clone(),
        locals: h.locals.clone(),
        local_bytes: h.local_bytes,
        module: index,
    };
    for name in &h.formal_regs {
        scope.declare(name.clone(), h.line)?;
    }
    for l in &h.locals {
        scope.blocks[0]
            .locals
            .insert(l.name.clone(), (l.offset, l.size));
    }
    let mut f = Function {
        name: h.name.clone(),
        entry: h.entry,
        defined: h.body.is_some(),
        params: h.params.clone(),
        param_bytes: h.param_bytes,
        args: h.args.clone(),
        rets: h.rets.clone(),
        local_bytes: 0,
        locals: Vec::new(),
        regs: Vec::new(),
        shared_bytes: 0,
        code: Vec::new(),
        max_threads: h.max_threads,
    };
    let Some((stmts, parents)) = &h.body else {
        f.regs = scope.reg_names;
        f.local_bytes = scope.local_bytes;
        f.locals = scope.locals;
        return Ok(f);
    };
    for &parent in &parents[1..] {
        scope.blocks.push(Block {
            parent,
            ..Block::default()
        });
    }
    let mut shared_bytes = module_shared_bytes;
    let mut labels = HashMap::new();
    let mut count = 0usize;
    for s in stmts {
        match s {
            Stmt::Decl(toks, block) => {
                scope.cur = *block;
                declare(&mut scope, toks, &mut shared_bytes, h.entry)?;
            }
            Stmt::Label(l, line) => {
                if labels.insert(l.clone(), count).is_some() {
                    return err(*line, format!("label `{l}` defined twice in `{}`", h.name));
                }
            }
            Stmt::Instr { .. } => count += 1,
        }
    }
    let mut code = Vec::with_capacity(count);
    for s in stmts {
        let Stmt::Instr {
            guard,
            opcode,
            operands,
            line,
            text,
            block,
        } = s
        else {
            continue;
        };
        let line = *line;
        scope.cur = *block;
        let op = if opcode == "call" || opcode.starts_with("call.") {
            decode_call(&scope, operands, line)?
        } else {
            let raw = raw_operands(operands)?;
            decode(&scope, opcode, &raw, line, &labels)?
        };
        let guard = match guard {
            Some((reg, negate)) => Some((scope.reg(reg, line)?, *negate)),
            None => None,
        };
        // Quote the source line itself when it holds just this instruction.
        let source = lines
            .get((line as usize).wrapping_sub(1))
            .map(|l| l.trim().trim_end_matches(';').trim())
            .unwrap_or("");
        let text = if !source.is_empty() && !source.contains(';') {
            source.to_string()
        } else {
            text.clone()
        };
        code.push(Instr {
            guard,
            op,
            line,
            file: 0,
            text,
        });
    }
    f.regs = scope.reg_names;
    f.local_bytes = scope.local_bytes;
    f.locals = scope.locals;
    f.shared_bytes = if h.entry { shared_bytes } else { 0 };
    f.code = code;
    Ok(f)
}

/// An item of a call's operand list: a word, or a parenthesised list of words.
enum CallItem {
    Word(String),
    List(Vec<String>),
}

/// Splits `call`'s operands: `[(rets),] name[, (args)]`.
fn call_items(toks: &[Tok], line: u32) -> PResult<Vec<CallItem>> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i].text == "(" {
            let mut list = Vec::new();
            let mut word = String::new();
            i += 1;
            loop {
                let Some(t) = toks.get(i) else {
                    return err(line, "unclosed `(` in call");
                };
                i += 1;
                match t.text.as_str() {
                    ")" => break,
                    "," => list.push(std::mem::take(&mut word)),
                    w => word.push_str(w),
                }
            }
            if !word.is_empty() || !list.is_empty() {
                list.push(word);
            }
            items.push(CallItem::List(list));
        } else {
            let mut word = String::new();
            while i < toks.len() && toks[i].text != "," {
                word.push_str(&toks[i].text);
                i += 1;
            }
            items.push(CallItem::Word(word));
        }
        if i < toks.len() {
            if toks[i].text != "," {
                return err(
                    line,
                    format!("expected `,` in call, found `{}`", toks[i].text),
                );
            }
            i += 1;
        }
    }
    Ok(items)
}

/// Decodes `call[.uni] [(rets),] name[, (args)]` against the callee's signature.
fn decode_call(scope: &Scope<'_>, toks: &[Tok], line: u32) -> PResult<Op> {
    let items = call_items(toks, line)?;
    let (rets, name, args) = match items.as_slice() {
        [CallItem::Word(n)] => (&[][..], n, &[][..]),
        [CallItem::Word(n), CallItem::List(a)] => (&[][..], n, &a[..]),
        [CallItem::List(r), CallItem::Word(n)] => (&r[..], n, &[][..]),
        [CallItem::List(r), CallItem::Word(n), CallItem::List(a)] => (&r[..], n, &a[..]),
        _ => {
            return Ok(Op::Unsupported(
                "call with a prototype or target list".into(),
            ))
        }
    };
    if scope.find_reg(name).is_some() {
        return Ok(Op::Unsupported("indirect call through a register".into()));
    }
    let Some(&func) = scope.module.by_name.get(name.as_str()) else {
        return err(line, format!("call to undeclared function `{name}`"));
    };
    let callee = &scope.module.headers[func];
    if callee.entry {
        return err(
            line,
            format!("`{name}` is an .entry, which cannot be called"),
        );
    }
    if callee.body.is_none() {
        return err(
            line,
            format!("calls `{name}`, which has no body in this module"),
        );
    }
    if rets.len() != callee.rets.len() || args.len() != callee.args.len() {
        return err(
            line,
            format!(
                "`{name}` takes {} return value(s) and {} argument(s); the call passes {} and {}",
                callee.rets.len(),
                callee.args.len(),
                rets.len(),
                args.len()
            ),
        );
    }
    let arg = |w: &str, f: &Formal, ret: bool| -> PResult<CallArg> {
        let fsize = match f.loc {
            FormalLoc::Reg(_) => None,
            FormalLoc::Param { size, .. } => Some(size),
        };
        if let Some((offset, size)) = scope.find_local(w) {
            let fits = match fsize {
                Some(fs) => fs == size,
                None => size <= 8,
            };
            if !fits {
                return err(
                    line,
                    format!(
                        "`{w}` ({size} bytes) does not match parameter `{}` of `{name}`",
                        f.name
                    ),
                );
            }
            return Ok(CallArg::Param { offset, size });
        }
        if fsize.is_some_and(|s| s > 8) {
            return err(
                line,
                format!(
                    "parameter `{}` of `{name}` takes a .param variable of its size",
                    f.name
                ),
            );
        }
        if ret {
            return Ok(CallArg::Value(Operand::Reg(scope.reg(w, line)?)));
        }
        Ok(CallArg::Value(operand(
            scope,
            &Raw::Word(w.to_string()),
            f.ty,
            line,
        )?))
    };
    let rets = rets
        .iter()
        .zip(&callee.rets)
        .map(|(w, f)| arg(w, f, true))
        .collect::<PResult<Vec<_>>>()?;
    let args = args
        .iter()
        .zip(&callee.args)
        .map(|(w, f)| arg(w, f, false))
        .collect::<PResult<Vec<_>>>()?;
    Ok(Op::Call(Box::new(Call { func, rets, args })))
}
