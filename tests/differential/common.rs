//! Devices, tolerances and helpers shared by the differential tests.

use std::io::Write;
use std::sync::OnceLock;

use ultramem::{Device, Element, Float, Tensor};

/// Says something on the real stderr, past the test harness's capture: a skipped GPU test
/// must be visible in every run.
pub fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

fn open(name: &str, require_var: &str, open: fn() -> ultramem::Result<Device>) -> Option<Device> {
    ultramem::testing::poison_outputs(true);
    match open() {
        Ok(d) => {
            loud(&format!("differential tests: {name} device = {d}"));
            Some(d)
        }
        Err(e) => {
            assert!(
                !required(require_var),
                "{require_var}=1 but the {name} backend is unavailable: {e}"
            );
            loud(&format!("SKIPPED: every {name} differential test (backend unavailable: {e}); set {require_var}=1 to fail instead"));
            None
        }
    }
}

/// The wgpu device, opened once per test binary; `None` (announced) when there is none, a
/// panic when `ULTRAMEM_REQUIRE_WGPU=1`.
pub fn wgpu() -> Option<&'static Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(|| open("wgpu", "ULTRAMEM_REQUIRE_WGPU", Device::wgpu))
        .as_ref()
}

/// The CUDA device 0, likewise (`ULTRAMEM_REQUIRE_CUDA=1`).
pub fn cuda() -> Option<&'static Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(|| open("cuda", "ULTRAMEM_REQUIRE_CUDA", || Device::cuda(0)))
        .as_ref()
}

/// A tensor on `dev`.
pub fn on<T: Element>(dev: &Device, shape: &[usize], data: &[T]) -> Tensor<T> {
    Tensor::from_slice(dev, shape, data).expect("test tensors are well formed")
}

/// The elements as f64.
pub fn host<T: Float>(t: &Tensor<T>) -> Vec<f64> {
    t.to_vec()
        .expect("download")
        .iter()
        .map(|x| x.to_f64())
        .collect()
}

/// Proptest cases: `default`, or `ULTRAMEM_PROPTEST_CASES` when set (the GPU check script runs
/// many more than CI).
pub fn cases(default: u32) -> proptest::test_runner::Config {
    let n = std::env::var("ULTRAMEM_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::Config::with_cases(n)
}

/// `len` normal draws of standard deviation `std` from `seed`, as f32.
pub fn normals(seed: u64, len: usize, std: f64) -> Vec<f32> {
    ultramem::rng::SplitMix64::new(seed)
        .normals(len, std)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// f32 unit roundoff.
pub const U32: f64 = 1.0 / (1u64 << 24) as f64;

/// Asserts `|actual − expected| <= bound` elementwise, printing index, values, difference and
/// bound. NaN (a poisoned, unwritten element) always fails.
pub fn assert_within(what: &str, actual: &[f64], expected: &[f64], bound: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for i in 0..actual.len() {
        let diff = (actual[i] - expected[i]).abs();
        assert!(
            diff <= bound[i],
            "{what}[{i}]: actual {:e}, expected {:e}, diff {diff:e} > bound {:e}",
            actual[i],
            expected[i],
            bound[i]
        );
    }
}

/// Rounds values to what a table of dtype `T` stores.
pub fn table_of<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}
