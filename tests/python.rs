//! Runs the Python package's tests (`python/tests`: torch.ops.ultramem against PyTorch math,
//! gradcheck, opcheck, torch.compile, JAX) against the cdylib this `cargo test` built.
//!
//! Without Python, pytest or torch, the test says SKIPPED loudly, and fails instead when
//! `ULTRAMEM_REQUIRE_PYTHON=1` (CI sets it, after installing them). The interpreter is
//! `$ULTRAMEM_PYTHON`, else `python3`.
#![cfg(feature = "abi")]

use std::path::PathBuf;
use std::process::Command;

#[path = "support/library.rs"]
mod library;

fn required() -> bool {
    std::env::var("ULTRAMEM_REQUIRE_PYTHON").is_ok_and(|v| v == "1")
}

fn unavailable(why: &str) {
    assert!(!required(), "ULTRAMEM_REQUIRE_PYTHON=1 but {why}");
    eprintln!("\n*** SKIPPED: the Python tests (python/tests) did not run: {why}; set ULTRAMEM_REQUIRE_PYTHON=1 to fail instead ***\n");
}

#[test]
fn python_package_tests_pass() {
    let python = std::env::var("ULTRAMEM_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import pytest, torch"])
        .output();
    match probe {
        Err(e) => return unavailable(&format!("no `{python}` ({e})")),
        Ok(o) if !o.status.success() => {
            return unavailable(&format!(
                "`{python}` lacks pytest or torch: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ))
        }
        Ok(_) => {}
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = library::built_library();
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .arg(root.join("python/tests"))
        .env("ULTRAMEM_LIB", &lib)
        .env(
            "ULTRAMEM_REQUIRE_PYTHON_DEPS",
            if required() { "1" } else { "0" },
        )
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    // Exit 5 is "no tests collected": a broken collection, not a pass.
    assert!(
        out.status.success(),
        "pytest failed ({}): see the output above",
        out.status
    );
}
