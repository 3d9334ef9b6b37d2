//! Checks the kernel sources, joins each with the shared helpers, and generates the kernel
//! registry.
//!
//! - Every op has one PTX file in `kernels/` and one WGSL file in `shaders/` with the same stem;
//!   `kernels/helpers.ptx` and `shaders/helpers.wgsl` hold what every kernel shares.
//! - `kernels/helpers.ptx` holds the PTX module header — `.version` 8.0 or lower (the GPU
//!   machines' driver JIT rejects newer PTX), `.target sm_80`, `.address_size 64` — and the
//!   shared `.func`s; it is put in front of each kernel file, which declares no header of its own.
//!   `shaders/helpers.wgsl` is appended to each WGSL file (declarations may come in any order).
//! - Every PTX file is ASCII, a kernel file opens with a comment naming its WGSL twin, and its
//!   `.entry` names are exactly the WGSL file's entry points.
//! - Every joined WGSL module parses and validates with naga (the same major version as wgpu)
//!   against the capabilities the runtime requests: none beyond WebGPU's defaults.
//! - `registry.rs` gets a `KernelId` per stem with both joined sources embedded, the source
//!   parts and where each starts (so the PTX interpreter cites `file:line` of the original), the
//!   entry names, and each PTX entry's by-value parameter size (checked against the Rust structs
//!   by a test).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn stems(dir: &Path, ext: &str) -> BTreeSet<String> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut out = BTreeSet::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                println!("cargo:rerun-if-changed={}", path.display());
                out.insert(stem.to_string());
            }
        }
    }
    out
}

/// A PTX entry: its name, the byte size of its leading by-value `params` struct, and how many
/// pointer parameters follow it.
struct PtxEntry {
    name: String,
    param_bytes: usize,
    pointers: usize,
}

fn directive(text: &str, name: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(name).map(|rest| rest.trim().to_string()))
}

fn check_ascii(path: &Path, text: &str) -> Result<(), String> {
    match text.lines().enumerate().find(|(_, l)| !l.is_ascii()) {
        Some((line, _)) => Err(format!(
            "{}:{}: PTX must be ASCII (ptxas rejects other bytes)",
            path.display(),
            line + 1
        )),
        None => Ok(()),
    }
}

/// The shared PTX: ASCII, the module header, no entry point of its own.
fn check_ptx_helpers(path: &Path, text: &str) -> Result<(), String> {
    let where_ = path.display();
    check_ascii(path, text)?;
    let directive = |name: &str| directive(text, name);
    let version = directive(".version ").ok_or(format!("{where_}: no .version"))?;
    let (major, minor) = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or(format!("{where_}: unreadable .version {version}"))?;
    if (major, minor) > (8, 0) {
        return Err(format!("{where_}: .version {version} is newer than 8.0"));
    }
    if directive(".target ").as_deref() != Some("sm_80") {
        return Err(format!("{where_}: .target must be sm_80"));
    }
    if directive(".address_size ").as_deref() != Some("64") {
        return Err(format!("{where_}: .address_size must be 64"));
    }
    if text.contains(".entry") {
        return Err(format!("{where_}: the shared helpers declare no .entry"));
    }
    Ok(())
}

/// A kernel file: ASCII, its contract comment naming the WGSL twin, no module header (it comes
/// from `kernels/helpers.ptx`), and its entries.
fn check_ptx(path: &Path, stem: &str, text: &str) -> Result<Vec<PtxEntry>, String> {
    let where_ = path.display();
    check_ascii(path, text)?;
    let head: String = text
        .lines()
        .take_while(|l| l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    if !head.contains(&format!("shaders/{stem}.wgsl")) {
        return Err(format!(
            "{where_}: the header comment must name the WGSL twin shaders/{stem}.wgsl"
        ));
    }
    for d in [".version ", ".target ", ".address_size "] {
        if directive(text, d).is_some() {
            return Err(format!(
                "{where_}: declares {}; the module header is kernels/helpers.ptx's",
                d.trim()
            ));
        }
    }
    let mut entries = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix(".visible .entry ") else {
            continue;
        };
        let name = rest.split('(').next().unwrap_or("").trim().to_string();
        if !name.starts_with(stem) {
            return Err(format!(
                "{where_}:{}: entry {name} must start with the stem {stem}",
                i + 1
            ));
        }
        let first = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        let param_bytes = first
            .strip_prefix(".param .align 4 .b8 params[")
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.parse().ok())
            .ok_or(format!(
                "{where_}:{}: entry {name} must take `.param .align 4 .b8 params[N]` first",
                i + 2
            ))?;
        let pointers = lines[i + 2..]
            .iter()
            .take_while(|l| l.trim().starts_with(".param .u64 "))
            .count();
        entries.push(PtxEntry {
            name,
            param_bytes,
            pointers,
        });
    }
    if entries.is_empty() {
        return Err(format!("{where_}: no .visible .entry"));
    }
    Ok(entries)
}

/// A WGSL entry point: its name, the `@binding` numbers (group 0) it uses, its workgroup size.
type WgslEntries = Vec<(String, Vec<u32>, u32)>;

fn check_wgsl(path: &Path, text: &str) -> Result<(WgslEntries, Vec<String>), String> {
    let module = naga::front::wgsl::parse_str(text)
        .map_err(|e| e.emit_to_string_with_path(text, &path.display().to_string()))?;
    // The runtime requests no optional capability, so validate against the defaults.
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    let info = validator
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(text, &path.display().to_string()))?;
    // The bindings each entry point statically uses: wgpu's derived layouts hold exactly these.
    let entries = module
        .entry_points
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let uses = info.get_entry_point(i);
            let mut bindings: Vec<u32> = module
                .global_variables
                .iter()
                .filter(|(handle, _)| !uses[*handle].is_empty())
                .filter_map(|(_, var)| var.binding.as_ref().map(|b| b.binding))
                .collect();
            bindings.sort_unstable();
            (
                ep.name.clone(),
                bindings,
                ep.workgroup_size.iter().product(),
            )
        })
        .collect();
    let overrides = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.clone())
        .collect();
    Ok((entries, overrides))
}

/// The stem of the shared helper files in `kernels/` and `shaders/`.
const HELPERS: &str = "helpers";

fn camel(stem: &str) -> String {
    stem.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn main() {
    // `cfg(gpu_backend)`: some GPU backend is compiled in, so the ops' GPU paths exist.
    println!("cargo::rustc-check-cfg=cfg(gpu_backend)");
    if ["CUDA", "WGPU", "PTX_INTERP"]
        .iter()
        .any(|f| env::var_os(format!("CARGO_FEATURE_{f}")).is_some())
    {
        println!("cargo::rustc-cfg=gpu_backend");
    }
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let kernels = root.join("kernels");
    let shaders = root.join("shaders");
    let mut ptx = stems(&kernels, "ptx");
    let mut wgsl = stems(&shaders, "wgsl");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let joined_dir = out_dir.join("joined");
    fs::create_dir_all(&joined_dir).expect("OUT_DIR is writable");
    // The shared helpers: no kernel of their own, joined to every kernel file below.
    let ptx_helpers_path = kernels.join(format!("{HELPERS}.ptx"));
    let wgsl_helpers_path = shaders.join(format!("{HELPERS}.wgsl"));
    let ptx_helpers = fs::read_to_string(&ptx_helpers_path).unwrap_or_default();
    let wgsl_helpers = fs::read_to_string(&wgsl_helpers_path).unwrap_or_default();
    let mut errors = Vec::new();
    if !ptx.remove(HELPERS) || !wgsl.remove(HELPERS) {
        errors.push(format!(
            "kernels/{HELPERS}.ptx and shaders/{HELPERS}.wgsl must both exist"
        ));
    }
    if let Err(e) = check_ptx_helpers(&ptx_helpers_path, &ptx_helpers) {
        errors.push(e);
    }
    if let Err(e) = check_wgsl(&wgsl_helpers_path, &wgsl_helpers) {
        errors.push(e);
    }
    errors.extend(ptx.symmetric_difference(&wgsl).map(|s| {
        if ptx.contains(s) {
            format!("kernels/{s}.ptx has no shaders/{s}.wgsl")
        } else {
            format!("shaders/{s}.wgsl has no kernels/{s}.ptx")
        }
    }));

    let mut code = String::new();
    let mut variants = Vec::new();
    for stem in ptx.intersection(&wgsl) {
        let ptx_path = kernels.join(format!("{stem}.ptx"));
        let wgsl_path = shaders.join(format!("{stem}.wgsl"));
        let ptx_text = fs::read_to_string(&ptx_path).expect("listed files are readable");
        let wgsl_text = fs::read_to_string(&wgsl_path).expect("listed files are readable");
        let entries = match check_ptx(&ptx_path, stem, &ptx_text) {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        // The helpers go after the kernel's own declarations, so naga's line numbers up to the
        // kernel's last line are the kernel file's.
        let wgsl_joined = format!("{wgsl_text}\n{wgsl_helpers}");
        let (wgsl_entries, overrides) = match check_wgsl(&wgsl_path, &wgsl_joined) {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let ptx_names: BTreeSet<&String> = entries.iter().map(|e| &e.name).collect();
        let wgsl_names: BTreeSet<&String> = wgsl_entries.iter().map(|(n, ..)| n).collect();
        if ptx_names != wgsl_names {
            errors.push(format!(
                "{stem}: PTX entries {ptx_names:?} differ from WGSL entry points {wgsl_names:?}"
            ));
            continue;
        }
        // The PTX module header and helpers come first: ptxas and the interpreter need a `.func`
        // declared before its first call.
        let ptx_joined = format!("{}\n{ptx_text}", ptx_helpers.trim_end());
        let ptx_out = joined_dir.join(format!("{stem}.ptx"));
        let wgsl_out = joined_dir.join(format!("{stem}.wgsl"));
        fs::write(&ptx_out, ptx_joined).expect("OUT_DIR is writable");
        fs::write(&wgsl_out, wgsl_joined).expect("OUT_DIR is writable");
        variants.push((
            stem.clone(),
            ptx_out,
            wgsl_out,
            entries,
            wgsl_entries,
            overrides,
        ));
    }
    if !errors.is_empty() {
        panic!("kernel sources failed their checks:\n{}", errors.join("\n"));
    }

    code.push_str("/// One op's kernels: a PTX file and its WGSL twin with the same stem.\n");
    code.push_str("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum KernelId {\n");
    for (stem, ..) in &variants {
        let _ = writeln!(
            code,
            "    /// `kernels/{stem}.ptx` and `shaders/{stem}.wgsl`.\n    {},",
            camel(stem)
        );
    }
    code.push_str("}\n\nimpl KernelId {\n    /// Every kernel file pair.\n    pub const ALL: &'static [KernelId] = &[");
    for (stem, ..) in &variants {
        let _ = write!(code, "KernelId::{}, ", camel(stem));
    }
    code.push_str("];\n\n    /// The file stem.\n    pub fn stem(self) -> &'static str {\n        match self {\n");
    for (stem, ..) in &variants {
        let _ = writeln!(code, "            KernelId::{} => {stem:?},", camel(stem));
    }
    code.push_str("        }\n    }\n\n    /// The PTX source: `kernels/helpers.ptx` (module header and shared functions), then the\n    /// kernel file.\n    pub fn ptx(self) -> &'static str {\n        match self {\n");
    for (stem, ptx_path, ..) in &variants {
        let _ = writeln!(
            code,
            "            KernelId::{} => include_str!({:?}),",
            camel(stem),
            ptx_path
        );
    }
    code.push_str("        }\n    }\n\n    /// The PTX source's parts in order, as `(file, first line, text)`: `kernels/helpers.ptx`\n    /// then the kernel file, whose concatenation (with a newline between) is [`KernelId::ptx`].\n    pub fn ptx_parts(self) -> [(&'static str, u32, &'static str); 2] {\n        match self {\n");
    for (stem, ..) in &variants {
        let _ = writeln!(
            code,
            "            KernelId::{} => [(\"kernels/{HELPERS}.ptx\", 1, include_str!({:?})), (\"kernels/{stem}.ptx\", 1, include_str!({:?}))],",
            camel(stem),
            ptx_helpers_path,
            kernels.join(format!("{stem}.ptx"))
        );
    }
    code.push_str("        }\n    }\n\n    /// The WGSL source (the kernel file, then `shaders/helpers.wgsl`).\n    pub fn wgsl(self) -> &'static str {\n        match self {\n");
    for (stem, _, wgsl_path, ..) in &variants {
        let _ = writeln!(
            code,
            "            KernelId::{} => include_str!({:?}),",
            camel(stem),
            wgsl_path
        );
    }
    code.push_str("        }\n    }\n\n    /// The entry points: name, bytes of the by-value parameter struct, pointer parameters.\n    pub fn entries(self) -> &'static [(&'static str, usize, usize)] {\n        match self {\n");
    for (stem, _, _, entries, ..) in &variants {
        let list: Vec<String> = entries
            .iter()
            .map(|e| format!("({:?}, {}, {})", e.name, e.param_bytes, e.pointers))
            .collect();
        let _ = writeln!(
            code,
            "            KernelId::{} => &[{}],",
            camel(stem),
            list.join(", ")
        );
    }
    code.push_str("        }\n    }\n\n    /// The `@binding` numbers (group 0) each WGSL entry point uses.\n    pub fn wgsl_bindings(self, entry: &str) -> &'static [u32] {\n        match (self, entry) {\n");
    for (stem, _, _, _, wgsl_entries, _) in &variants {
        for (name, bindings, _) in wgsl_entries {
            let list: Vec<String> = bindings.iter().map(u32::to_string).collect();
            let _ = writeln!(
                code,
                "            (KernelId::{}, {name:?}) => &[{}],",
                camel(stem),
                list.join(", ")
            );
        }
    }
    code.push_str("            _ => &[],\n        }\n    }\n\n    /// The workgroup size of each WGSL entry point (0 for an unknown entry).\n    pub fn wgsl_workgroup_size(self, entry: &str) -> u32 {\n        match (self, entry) {\n");
    for (stem, _, _, _, wgsl_entries, _) in &variants {
        for (name, _, size) in wgsl_entries {
            let _ = writeln!(
                code,
                "            (KernelId::{}, {name:?}) => {size},",
                camel(stem)
            );
        }
    }
    code.push_str("            _ => 0,\n        }\n    }\n\n    /// The WGSL file's pipeline-overridable constants.\n    pub fn wgsl_overrides(self) -> &'static [&'static str] {\n        match self {\n");
    for (stem, _, _, _, _, overrides) in &variants {
        let list: Vec<String> = overrides.iter().map(|o| format!("{o:?}")).collect();
        let _ = writeln!(
            code,
            "            KernelId::{} => &[{}],",
            camel(stem),
            list.join(", ")
        );
    }
    code.push_str("        }\n    }\n}\n");
    fs::write(out_dir.join("registry.rs"), code).expect("OUT_DIR is writable");
}
