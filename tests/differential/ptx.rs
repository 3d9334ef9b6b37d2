//! Every PTX file assembles with `ptxas` for sm_80 and sm_90 (A100 and H100): a syntax or type
//! error in a kernel fails here, on machines without a GPU, instead of at the driver's JIT.
//!
//! `ptxas` is taken from `ULTRAMEM_PTXAS`, then `PATH`, then the `nvidia-cuda-nvcc-cu12` Python
//! wheel (`pip install nvidia-cuda-nvcc-cu12`). Without it the test says so on stderr and passes,
//! unless `ULTRAMEM_REQUIRE_PTXAS=1` (CI sets it).

use std::path::PathBuf;
use std::process::Command;

use crate::common::loud;
use ultramem::registry::KernelId;

fn runs(path: &PathBuf) -> bool {
    Command::new(path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_ptxas() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ULTRAMEM_PTXAS") {
        return Some(PathBuf::from(p));
    }
    let on_path = PathBuf::from("ptxas");
    if runs(&on_path) {
        return Some(on_path);
    }
    let script = "import os, nvidia; c=[os.path.join(d, 'cuda_nvcc', 'bin', 'ptxas') for d in nvidia.__path__]; print(next((p for p in c if os.path.exists(p)), ''))";
    let out = Command::new("python3").args(["-c", script]).output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (!path.as_os_str().is_empty() && runs(&path)).then_some(path)
}

/// What `ptxas -v` says of one entry point.
#[derive(Debug, Default)]
struct EntryReport {
    name: String,
    registers: u64,
    stack: u64,
    spill_stores: u64,
    spill_loads: u64,
}

/// The first number in `text` before `unit`, e.g. `12` in "12 bytes stack frame".
fn number_before(text: &str, unit: &str) -> Option<u64> {
    let at = text.find(unit)?;
    text[..at].split_whitespace().last()?.parse().ok()
}

/// Reads `ptxas -v`'s log: one report per entry point (the shared `.func`s are inlined into
/// them and reported on their own too; those are skipped).
fn entry_reports(log: &str) -> Vec<EntryReport> {
    let mut out: Vec<EntryReport> = Vec::new();
    let mut current: Option<usize> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(EntryReport {
                name,
                ..EntryReport::default()
            });
            current = Some(out.len() - 1);
        } else if line.contains("Function properties for ") {
            let name = line
                .split("Function properties for ")
                .nth(1)
                .unwrap_or("")
                .trim();
            current = out.iter().position(|e| e.name == name);
        } else if let Some(i) = current {
            let e = &mut out[i];
            if line.contains("bytes stack frame") {
                e.stack = number_before(line, "bytes stack frame").unwrap_or(u64::MAX);
                e.spill_stores = number_before(line, "bytes spill stores").unwrap_or(u64::MAX);
                e.spill_loads = number_before(line, "bytes spill loads").unwrap_or(u64::MAX);
            } else if line.contains("registers") {
                e.registers = number_before(line, "registers").unwrap_or(u64::MAX);
            }
        }
    }
    out
}

/// Every kernel file (joined after `kernels/helpers.ptx`, as embedded) assembles for sm_80 and
/// sm_90 with no spills and a 0-byte stack frame in every entry: the shared `.func`s are
/// inlined, so a `call` adds no stack. Prints each entry's registers, stack and spills.
#[test]
fn every_ptx_file_assembles_for_sm80_and_sm90() {
    let Some(ptxas) = find_ptxas() else {
        assert!(
            std::env::var("ULTRAMEM_REQUIRE_PTXAS").map_or(true, |v| v != "1"),
            "ULTRAMEM_REQUIRE_PTXAS=1 but no ptxas was found (pip install nvidia-cuda-nvcc-cu12)"
        );
        loud("SKIPPED: PTX assembly (no ptxas; pip install nvidia-cuda-nvcc-cu12, or set ULTRAMEM_PTXAS)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("ultramem-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut table =
        String::from("ptxas -v, per entry: arch entry registers stack spill-stores spill-loads\n");
    for &id in KernelId::ALL {
        let file = dir.join(format!("{}.ptx", id.stem()));
        std::fs::write(&file, id.ptx()).unwrap();
        for arch in ["sm_80", "sm_90"] {
            let out = Command::new(&ptxas)
                .args([&format!("-arch={arch}"), "-v", "-o", "/dev/null"])
                .arg(&file)
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "ptxas -arch={arch} rejects kernels/{}.ptx:\n{log}",
                id.stem()
            );
            let reports = entry_reports(&log);
            assert_eq!(
                reports.len(),
                id.entries().len(),
                "kernels/{}.ptx on {arch}: one report per entry:\n{log}",
                id.stem()
            );
            for e in &reports {
                // Spills would mean local-memory traffic in a bandwidth-bound kernel; a stack
                // frame would mean a call that was not inlined.
                assert_eq!(
                    (e.stack, e.spill_stores, e.spill_loads),
                    (0, 0, 0),
                    "kernels/{}.ptx {} on {arch}: stack and spills:\n{log}",
                    id.stem(),
                    e.name
                );
                table.push_str(&format!(
                    "{arch} {} {} {} {} {}\n",
                    e.name, e.registers, e.stack, e.spill_stores, e.spill_loads
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    loud(&table);
    loud(&format!(
        "PTX: {} files assembled with {} for sm_80 and sm_90",
        KernelId::ALL.len(),
        ptxas.display()
    ));
}
