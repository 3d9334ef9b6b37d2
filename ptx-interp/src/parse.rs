//! PTX text to [`Function`]s: a tokenizer and a parser for the directives and instructions the
//! crate's kernels use. Anything else inside a function body becomes [`Op::Unsupported`], which
//! is an error only if it runs.

use std::collections::HashMap;

use crate::ir::*;

/// A parse error with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: u32,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
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

fn err<T>(line: u32, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line,
        message: message.into(),
    })
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
        _ => return None,
    })
}

/// Names in scope while parsing one function.
struct Scope {
    regs: HashMap<String, u16>,
    reg_names: Vec<String>,
    params: HashMap<String, (u32, usize)>,
    shared: HashMap<String, u64>,
}

impl Scope {
    fn reg(&self, name: &str, line: u32) -> PResult<u16> {
        match self.regs.get(name) {
            Some(&r) => Ok(r),
            None => err(line, format!("undeclared register `{name}`")),
        }
    }
    fn declare(&mut self, name: String, line: u32) -> PResult<()> {
        if self.regs.contains_key(&name) {
            return err(line, format!("register `{name}` declared twice"));
        }
        let idx = u16::try_from(self.reg_names.len()).map_err(|_| ParseError {
            line,
            message: "too many registers".into(),
        })?;
        self.regs.insert(name.clone(), idx);
        self.reg_names.push(name);
        Ok(())
    }
}

/// A raw operand as written: tokens grouped by brackets and braces.
#[derive(Clone, Debug)]
enum Raw {
    Word(String),
    Addr(Vec<String>),
    Vector(Vec<String>),
}

/// Parses a source or destination operand of type `ty`.
fn operand(scope: &Scope, raw: &Raw, ty: Ty, line: u32) -> PResult<Operand> {
    let Raw::Word(w) = raw else {
        return err(line, format!("expected a value, found {raw:?}"));
    };
    if let Some(sp) = parse_special(w) {
        return Ok(Operand::Special(sp));
    }
    if let Some(&r) = scope.regs.get(w) {
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
                line,
                message: "bad address offset".into(),
            })?;
        offset += sign * v as i64;
        i += 2;
    }
    let base = if let Some(&r) = scope.regs.get(base_name) {
        AddrBase::Reg(r)
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
        | "ex2" | "lg2" | "sin" | "cos" => {
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
            let vals: Vec<Operand> = match &ops[1] {
                Raw::Vector(items) => items
                    .iter()
                    .map(|w| operand(scope, &Raw::Word(w.clone()), ty, line))
                    .collect::<PResult<_>>()?,
                other => vec![operand(scope, other, ty, line)?],
            };
            if vals.len() != vec as usize {
                return err(
                    line,
                    format!("`{opcode}` stores {vec} values, found {}", vals.len()),
                );
            }
            let mut s = [Operand::Imm(0); 4];
            s[..vals.len()].copy_from_slice(&vals);
            Op::St {
                space: mods.space(),
                ty,
                src: s,
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
                line,
                message: format!("unknown label `{label}`"),
            })?;
            Op::Bra { target }
        }
        "ret" | "exit" => Op::Exit,
        _ => Op::Unsupported(opcode.to_string()),
    })
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

/// One statement of a function body.
enum Stmt {
    Label(String),
    Decl(Vec<Tok>),
    Instr {
        guard: Option<(String, bool)>,
        opcode: String,
        operands: Vec<Tok>,
        line: u32,
        text: String,
    },
}

fn body_statements(cur: &mut Cursor) -> PResult<Vec<Stmt>> {
    let mut out = Vec::new();
    loop {
        let line = cur.line();
        let Some(first) = cur.peek().map(str::to_string) else {
            return err(line, "unterminated function body");
        };
        if first == "}" {
            cur.pos += 1;
            return Ok(out);
        }
        if first == "{" || first == ";" {
            // Nested braces only scope declarations; treat them as transparent.
            cur.pos += 1;
            continue;
        }
        if cur.toks.get(cur.pos + 1).is_some_and(|t| t.text == ":") && !first.starts_with('.') {
            cur.pos += 2;
            out.push(Stmt::Label(first));
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
            out.push(Stmt::Decl(toks));
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
            Some((toks[at].text.clone(), negate))
        } else {
            None
        };
        let opcode = toks
            .get(i)
            .map(|t| t.text.clone())
            .ok_or_else(|| ParseError {
                line,
                message: "missing opcode".into(),
            })?;
        out.push(Stmt::Instr {
            guard,
            opcode,
            operands: toks[i + 1..].to_vec(),
            line,
            text,
        });
    }
}

fn declare(scope: &mut Scope, toks: &[Tok], shared_bytes: &mut usize) -> PResult<()> {
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
                        .ok_or_else(|| ParseError {
                            line,
                            message: "bad register range".into(),
                        })?;
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
            // .shared [.align A] .type name[N];
            let mut align = 1usize;
            let mut ty = None;
            let mut name = None;
            let mut count = 1usize;
            let mut i = 1;
            while i < toks.len() {
                let t = toks[i].text.as_str();
                if t == ".align" {
                    align = toks
                        .get(i + 1)
                        .and_then(|t| parse_int(&t.text))
                        .unwrap_or(1) as usize;
                    i += 2;
                } else if let Some(ty_) = t.strip_prefix('.').and_then(Ty::parse) {
                    ty = Some(ty_);
                    i += 1;
                } else if t == "[" {
                    count = toks
                        .get(i + 1)
                        .and_then(|t| parse_int(&t.text))
                        .unwrap_or(1) as usize;
                    i += 3;
                } else {
                    name = Some(t.to_string());
                    i += 1;
                }
            }
            let (Some(ty), Some(name)) = (ty, name) else {
                return err(line, "bad .shared declaration");
            };
            let offset = shared_bytes.div_ceil(align.max(1)) * align.max(1);
            *shared_bytes = offset + ty.bytes() * count;
            scope.shared.insert(name, offset as u64);
            Ok(())
        }
        _ => err(line, format!("unsupported declaration `{kind}`")),
    }
}

/// Parses every `.entry` of a PTX module.
pub fn parse_module(src: &str) -> PResult<Vec<Function>> {
    let lines: Vec<&str> = src.lines().collect();
    let mut cur = Cursor {
        toks: tokenize(src),
        pos: 0,
    };
    let mut functions = Vec::new();
    while let Some(t) = cur.peek().map(str::to_string) {
        let line = cur.line();
        match t.as_str() {
            ".version" | ".target" | ".address_size" => {
                cur.pos += 2;
            }
            ".visible" | ".weak" => {
                cur.pos += 1;
            }
            ".entry" => {
                cur.pos += 1;
                functions.push(parse_entry(&mut cur, &lines)?);
            }
            other => return err(line, format!("unsupported module-level `{other}`")),
        }
    }
    Ok(functions)
}

fn parse_entry(cur: &mut Cursor, lines: &[&str]) -> PResult<Function> {
    let name = cur.next()?;
    let mut scope = Scope {
        regs: HashMap::new(),
        reg_names: Vec::new(),
        params: HashMap::new(),
        shared: HashMap::new(),
    };
    let mut params = Vec::new();
    let mut param_bytes = 0usize;
    cur.expect("(")?;
    while !cur.eat(")") {
        cur.eat(",");
        let line = cur.line();
        cur.expect(".param")?;
        let mut align = 0usize;
        let mut size = 0usize;
        let mut pname = String::new();
        loop {
            let t = cur.next()?;
            match t.as_str() {
                ".align" => align = parse_int(&cur.next()?).unwrap_or(1) as usize,
                "[" => {
                    let count = parse_int(&cur.next()?).unwrap_or(0) as usize;
                    cur.expect("]")?;
                    size *= count;
                }
                _ if t.starts_with('.') => {
                    let ty = Ty::parse(&t[1..]).ok_or_else(|| ParseError {
                        line,
                        message: format!("bad param type `{t}`"),
                    })?;
                    size = ty.bytes();
                    if align == 0 {
                        align = size;
                    }
                }
                _ => pname = t,
            }
            if matches!(cur.peek(), Some(",") | Some(")")) {
                break;
            }
        }
        let offset = param_bytes.div_ceil(align.max(1)) * align.max(1);
        param_bytes = offset + size;
        scope.params.insert(pname.clone(), (offset as u32, size));
        params.push(Param {
            name: pname,
            size,
            offset,
        });
    }
    let mut max_threads = None;
    while cur.peek() != Some("{") {
        let t = cur.next()?;
        if t == ".maxntid" || t == ".reqntid" {
            let mut n = 1u32;
            loop {
                n *= parse_int(&cur.next()?).unwrap_or(1) as u32;
                if !cur.eat(",") {
                    break;
                }
            }
            max_threads = Some(n);
        }
    }
    cur.expect("{")?;
    let stmts = body_statements(cur)?;
    let mut shared_bytes = 0;
    let mut labels = HashMap::new();
    let mut count = 0usize;
    for s in &stmts {
        match s {
            Stmt::Decl(toks) => declare(&mut scope, toks, &mut shared_bytes)?,
            Stmt::Label(l) => {
                labels.insert(l.clone(), count);
            }
            Stmt::Instr { .. } => count += 1,
        }
    }
    let mut code = Vec::with_capacity(count);
    for s in stmts {
        if let Stmt::Instr {
            guard,
            opcode,
            operands,
            line,
            text,
        } = s
        {
            let raw = raw_operands(&operands)?;
            let op = decode(&scope, &opcode, &raw, line, &labels)?;
            let guard = match guard {
                Some((reg, negate)) => Some((scope.reg(&reg, line)?, negate)),
                None => None,
            };
            // Quote the source line itself when it holds just this instruction.
            let source = lines
                .get(line as usize - 1)
                .map(|l| l.trim().trim_end_matches(';').trim())
                .unwrap_or("");
            let text = if !source.is_empty() && !source.contains(';') {
                source.to_string()
            } else {
                text
            };
            code.push(Instr {
                guard,
                op,
                line,
                text,
            });
        }
    }
    Ok(Function {
        name,
        params,
        param_bytes,
        regs: scope.reg_names,
        shared_bytes,
        code,
        max_threads,
    })
}
