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
            // Spills would mean local-memory traffic in a bandwidth-bound kernel.
            for part in log.split(',').filter(|p| p.contains("bytes spill stores")) {
                let n: u64 = part
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u64::MAX);
                assert_eq!(n, 0, "kernels/{}.ptx spills on {arch}:\n{log}", id.stem());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    loud(&format!(
        "PTX: {} files assembled with {} for sm_80 and sm_90",
        KernelId::ALL.len(),
        ptxas.display()
    ));
}
