//! What `ptxas` makes of a kernel: registers and static shared memory per entry (for the
//! occupancy), and the SASS instruction count per entry (to calibrate the interpreter's PTX
//! instruction counts, see `model::time`).
//!
//! `ptxas` comes from `ULTRAMEM_PTXAS`, `PATH`, or the `nvidia-cuda-nvcc-cu12` Python wheel;
//! `cuobjdump` from `ULTRAMEM_CUOBJDUMP`, `PATH`, or the `nvidia-cuda-cuobjdump` wheel. Without
//! `cuobjdump` the model uses PTX counts as they are and says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// One entry's resources as ptxas reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryResources {
    /// Registers per thread.
    pub registers: u32,
    /// Static shared memory per block, bytes.
    pub shared_bytes: u32,
    /// Stack frame, bytes (0 for every kernel of this crate: a test checks it).
    pub stack_bytes: u32,
    /// Spilled bytes (stores).
    pub spill_bytes: u32,
    /// SASS instructions of the entry (static, NOPs excluded), when cuobjdump is there.
    pub sass_instructions: Option<u32>,
    /// PTX instructions of the entry with each called function's body counted once per call
    /// site (static), for the SASS/PTX ratio.
    pub ptx_instructions: u32,
}

impl EntryResources {
    /// SASS instructions per PTX instruction, statically (1 without cuobjdump).
    pub fn sass_per_ptx(&self) -> f64 {
        match self.sass_instructions {
            Some(s) if self.ptx_instructions > 0 => f64::from(s) / f64::from(self.ptx_instructions),
            _ => 1.0,
        }
    }
}

fn tool_error(what: String) -> Error {
    Error::BackendUnavailable {
        backend: crate::Backend::PtxInterp,
        reason: what,
    }
}

fn runs(path: &Path) -> bool {
    Command::new(path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A tool from an environment variable, `PATH`, or the NVIDIA Python wheels' `bin` folders.
fn find_tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p));
    }
    let on_path = PathBuf::from(name);
    if runs(&on_path) {
        return Some(on_path);
    }
    let script = format!(
        "import os, nvidia; c=[os.path.join(d, s, 'bin', '{name}') for d in nvidia.__path__ for s in sorted(os.listdir(d))]; print(next((p for p in c if os.path.exists(p)), ''))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (!path.as_os_str().is_empty() && runs(&path)).then_some(path)
}

/// `ptxas`, found once.
pub fn ptxas() -> Option<&'static Path> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| find_tool("ULTRAMEM_PTXAS", "ptxas"))
        .as_deref()
}

/// `cuobjdump`, found once.
pub fn cuobjdump() -> Option<&'static Path> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| find_tool("ULTRAMEM_CUOBJDUMP", "cuobjdump"))
        .as_deref()
}

/// The last line of `tool --version` (e.g. `Cuda compilation tools, release 12.9, V12.9.86`),
/// for reports.
pub fn version(tool: &Path) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

fn number_before(text: &str, unit: &str) -> Option<u32> {
    let at = text.find(unit)?;
    text[..at].split_whitespace().last()?.parse().ok()
}

/// Parses `ptxas -v`: per entry, registers, static shared memory, stack, spills.
fn parse_ptxas(log: &str) -> HashMap<String, EntryResources> {
    let mut out: HashMap<String, EntryResources> = HashMap::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            let name = rest.trim().to_string();
            current = out.contains_key(&name).then_some(name);
        } else if let Some(e) = current.as_ref().and_then(|n| out.get_mut(n)) {
            if line.contains("bytes stack frame") {
                e.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                e.spill_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
            }
            if line.contains("registers") {
                e.registers = number_before(line, "registers").unwrap_or(0);
                e.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

/// Static SASS instruction counts per function of `cuobjdump -sass` output (NOPs excluded).
fn parse_sass(listing: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        if let Some(name) = line.trim().strip_prefix("Function : ") {
            current = Some(name.trim().to_string());
            out.insert(name.trim().to_string(), 0);
            continue;
        }
        let t = line.trim_start();
        // Instruction lines look like `/*0040*/   IMAD R0, ...  ;  /* encoding */`.
        let Some(rest) = t.strip_prefix("/*").and_then(|r| r.split_once("*/")) else {
            continue;
        };
        let (addr, text) = rest;
        if !addr.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let op = text.trim().trim_start_matches(['@', '!']);
        let op = if text.trim().starts_with('@') {
            op.split_whitespace().nth(1).unwrap_or("")
        } else {
            op.split_whitespace().next().unwrap_or("")
        };
        if op.is_empty() || op.starts_with("NOP") {
            continue;
        }
        if let Some(n) = current.as_ref().and_then(|c| out.get_mut(c)) {
            *n += 1;
        }
    }
    out
}

/// Static PTX instruction counts per function (entries and `.func`s), and which functions each
/// one calls.
fn ptx_counts(source: &str) -> HashMap<String, (u32, Vec<String>)> {
    let mut out = HashMap::new();
    let mut current: Option<String> = None;
    let mut depth = 0i32;
    for raw in source.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if depth == 0 {
            for kw in [".entry ", ".func "] {
                if let Some(rest) = line.split(kw).nth(1) {
                    // `.func (.reg .f32 %v) name(` or `.entry name(`.
                    let rest = if rest.starts_with('(') {
                        rest.split_once(')').map_or("", |(_, r)| r)
                    } else {
                        rest
                    };
                    let name = rest.trim().split('(').next().unwrap_or("").trim();
                    if !name.is_empty() {
                        current = Some(name.to_string());
                        out.insert(name.to_string(), (0, Vec::new()));
                    }
                }
            }
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        let Some(name) = current.as_ref() else {
            continue;
        };
        if depth <= 0 {
            if line.contains('}') {
                current = None;
            }
            continue;
        }
        // One instruction per `;` (a line may hold several); directives start with `.`.
        for stmt in line.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            let stmt = stmt.rsplit(':').next().unwrap_or(stmt).trim();
            if stmt.is_empty() || stmt.starts_with('.') || stmt.starts_with('{') {
                continue;
            }
            let e = out.get_mut(name).expect("inserted above");
            e.0 += 1;
            if let Some(rest) = stmt.strip_prefix("call") {
                // `call.uni (%r), f, (%a);` or `call f, (%a);`: the callee is the first operand
                // that is not a parenthesised list.
                if let Some(callee) = rest
                    .split(',')
                    .map(str::trim)
                    .map(|p| p.rsplit(' ').next().unwrap_or(p))
                    .find(|p| !p.is_empty() && !p.contains('(') && !p.contains(')'))
                {
                    e.1.push(callee.to_string());
                }
            }
        }
    }
    out
}

/// Compiles `source` for `arch` (e.g. `sm_90`) once and reports every entry's resources.
///
/// # Errors
/// [`Error::BackendUnavailable`] when ptxas is missing or rejects the source.
pub fn resources(source: &str, arch: &str) -> Result<HashMap<String, EntryResources>> {
    type Cache = Mutex<HashMap<(u64, String), HashMap<String, EntryResources>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (fingerprint(source), arch.to_string());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(r) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(r.clone());
    }
    let ptxas = ptxas().ok_or_else(|| {
        tool_error("no ptxas (pip install nvidia-cuda-nvcc-cu12, or set ULTRAMEM_PTXAS)".into())
    })?;
    // One folder per call: two threads assembling the same source at once (parallel tests)
    // must not share one, since each removes its folder when done.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "ultramem-model-{}-{call}-{:016x}",
        std::process::id(),
        key.0
    ));
    std::fs::create_dir_all(&dir).map_err(|e| tool_error(e.to_string()))?;
    let (ptx, cubin) = (dir.join("k.ptx"), dir.join(format!("k.{arch}.cubin")));
    std::fs::write(&ptx, source).map_err(|e| tool_error(e.to_string()))?;
    let out = Command::new(ptxas)
        .args([&format!("-arch={arch}"), "-v", "-o"])
        .arg(&cubin)
        .arg(&ptx)
        .output()
        .map_err(|e| tool_error(format!("ptxas: {e}")))?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(tool_error(format!("ptxas rejects the kernel: {log}")));
    }
    let mut res = parse_ptxas(&log);
    if let Some(tool) = cuobjdump() {
        // The SASS count comes from a copy with loop unrolling turned off: ptxas unrolls some
        // loops with run-time trip counts (4x, with remainder code), which multiplies their
        // static instructions but not the instructions the card runs per PTX iteration.
        let (plain_ptx, plain_cubin) = (dir.join("n.ptx"), dir.join(format!("n.{arch}.cubin")));
        let counted = std::fs::write(&plain_ptx, without_unrolling(source))
            .ok()
            .and_then(|()| {
                Command::new(ptxas)
                    .arg(format!("-arch={arch}"))
                    .arg("-o")
                    .arg(&plain_cubin)
                    .arg(&plain_ptx)
                    .output()
                    .ok()
            })
            .filter(|o| o.status.success())
            .map_or(&cubin, |_| &plain_cubin);
        if let Ok(o) = Command::new(tool).arg("-sass").arg(counted).output() {
            let sass = parse_sass(&String::from_utf8_lossy(&o.stdout));
            for (name, r) in res.iter_mut() {
                r.sass_instructions = sass.get(name).copied();
            }
        }
    }
    let ptx_static = ptx_counts(source);
    for (name, r) in res.iter_mut() {
        if let Some((n, calls)) = ptx_static.get(name) {
            let inlined: u32 = calls
                .iter()
                .filter_map(|c| ptx_static.get(c).map(|(m, _)| *m))
                .sum();
            r.ptx_instructions = n + inlined;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, res.clone());
    Ok(res)
}

/// `source` with `.pragma "nounroll";` after every label (PTX ISA: the pragma disables
/// unrolling of the loop whose header block it is in, and is ignored in other blocks).
fn without_unrolling(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 1024);
    for line in source.lines() {
        out.push_str(line);
        out.push('\n');
        let code = line.split("//").next().unwrap_or("").trim();
        let is_label = code.len() > 1
            && code.ends_with(':')
            && code[..code.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if is_label {
            out.push_str("    .pragma \"nounroll\";\n");
        }
    }
    out
}

/// FNV-1a of the text (a cache key, not a security hash).
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_and_sass_listings_parse() {
        let log = "ptxas info    : Compiling entry function 'k' for 'sm_90'\nptxas info    : Function properties for k\n    16 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\nptxas info    : Used 38 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]\n";
        let r = parse_ptxas(log);
        assert_eq!(
            (
                r["k"].registers,
                r["k"].shared_bytes,
                r["k"].stack_bytes,
                r["k"].spill_bytes
            ),
            (38, 2048, 16, 4)
        );
        let sass = "\t\tFunction : k\n        /*0000*/                   LDC R1, c[0x0][0x28] ;   /* 0x00 */\n        /*0010*/               @P0 EXIT ;    /* 0x0 */\n        /*0020*/                   NOP;   /* 0x0 */\n";
        assert_eq!(parse_sass(sass)["k"], 2);
        let ptx = ".func (.reg .f32 %v) f(.reg .b32 %a)\n{\n    mov.f32 %v, 1.0;\n    ret;\n}\n.visible .entry k(.param .u64 p)\n{\n    .reg .f32 %x;\n    call (%x), f, (%x);\nL:\n    ret;\n}\n";
        let c = ptx_counts(ptx);
        assert_eq!(c["f"].0, 2);
        // Several instructions on a line count one each.
        let two = ".visible .entry k()\n{\n    .reg .f32 %a;\n    mov.f32 %a, 1.0; add.f32 %a, %a, %a;\n    ret;\n}\n";
        assert_eq!(ptx_counts(two)["k"].0, 3);
        assert!(without_unrolling(ptx).contains("L:\n    .pragma \"nounroll\";\n    ret;"));
        assert_eq!(c["k"], (2, vec!["f".to_string()]));
    }
}
