//! Where the cdylib of this `cargo test` is (shared by tests/c_abi.rs and tests/python.rs).

use std::path::PathBuf;

/// The cdylib this `cargo test` built: `cargo test` leaves it in `target/<profile>/deps/`, next
/// to the test executable (only `cargo build` copies it up to `target/<profile>/`).
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [deps.join("libultramem.so"), deps.join("../libultramem.so")];
    candidates
        .iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "libultramem.so is in none of {candidates:?}: the lib's crate-type includes cdylib"
            )
        })
        .clone()
}
