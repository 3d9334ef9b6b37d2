//! Pairs the kernel sources and generates the kernel registry.
//!
//! Every op has one PTX file in `kernels/` and one WGSL file in `shaders/` with the same stem;
//! a file without its twin fails the build. The generated `registry.rs` lists the stems and
//! embeds both sources, so the backends load from one table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn stems(dir: &str, ext: &str) -> BTreeSet<String> {
    println!("cargo:rerun-if-changed={dir}");
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

fn main() {
    let ptx = stems("kernels", "ptx");
    let wgsl = stems("shaders", "wgsl");
    let unpaired: Vec<String> = ptx
        .symmetric_difference(&wgsl)
        .map(|s| {
            if ptx.contains(s) {
                format!("kernels/{s}.ptx has no shaders/{s}.wgsl")
            } else {
                format!("shaders/{s}.wgsl has no kernels/{s}.ptx")
            }
        })
        .collect();
    if !unpaired.is_empty() {
        panic!("every op needs both backends: {}", unpaired.join("; "));
    }
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut code = String::from("/// Kernel stems, each with a PTX and a WGSL source.\npub const KERNEL_STEMS: &[(&str, &str, &str)] = &[\n");
    for stem in &ptx {
        let _ = writeln!(
            code,
            "    ({stem:?}, include_str!({:?}), include_str!({:?})),",
            Path::new(&root).join("kernels").join(format!("{stem}.ptx")),
            Path::new(&root)
                .join("shaders")
                .join(format!("{stem}.wgsl")),
        );
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("registry.rs");
    fs::write(out, code).expect("OUT_DIR is writable");
}
