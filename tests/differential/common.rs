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

/// A fresh PTX interpreter device (cheap; one per test, so parallel tests do not queue on one
/// interpreter's lock). Always there: the tests build the crate with `ptx-interp`.
pub fn interp() -> Device {
    ultramem::testing::poison_outputs(true);
    Device::ptx_interp().expect("the test build enables the ptx-interp feature")
}

/// Stamps a test written once against a `&Device` out for every device under test, as a module
/// of tests named after the device: `on_wgpu`, `in_ptx_interpreter`, `on_cuda` (and `on_cpu`
/// with `cpu,` first, for code that is not the reference itself, such as a layer composed of
/// ops). A device that is not there skips with a line on stderr (see [`wgpu`], [`cuda`]). With
/// `own,` first, each test opens a device of its own instead of the shared one (for tests that
/// change a device's mode).
macro_rules! device_tests {
    (own, $name:ident, |$dev:ident| $body:block) => {
        pub mod $name {
            #[allow(unused_imports, reason = "the body sees its parent's items")]
            use super::*;
            $crate::common::device_tests!(@devices "on_wgpu", "in_ptx_interpreter", "on_cuda");
            #[test]
            fn on_wgpu() {
                if $crate::common::wgpu().is_some() {
                    let $dev = &ultramem::Device::wgpu().expect("a second wgpu device");
                    $body
                }
            }
            #[test]
            fn in_ptx_interpreter() {
                let $dev = &$crate::common::interp();
                $body
            }
            #[test]
            fn on_cuda() {
                if $crate::common::cuda().is_some() {
                    let $dev = &ultramem::Device::cuda(0).expect("a second CUDA device handle");
                    $body
                }
            }
        }
    };
    (cpu, $name:ident, |$dev:ident| $body:block) => {
        pub mod $name {
            #[allow(unused_imports, reason = "the body sees its parent's items")]
            use super::*;
            $crate::common::device_tests!(@devices "on_cpu", "on_wgpu", "in_ptx_interpreter", "on_cuda");
            #[test]
            fn on_cpu() {
                let $dev = &ultramem::Device::cpu();
                $body
            }
            $crate::common::device_tests!(@gpus |$dev| $body);
        }
    };
    ($name:ident, |$dev:ident| $body:block) => {
        pub mod $name {
            #[allow(unused_imports, reason = "the body sees its parent's items")]
            use super::*;
            $crate::common::device_tests!(@devices "on_wgpu", "in_ptx_interpreter", "on_cuda");
            $crate::common::device_tests!(@gpus |$dev| $body);
        }
    };
    (@devices $($device:literal),+) => {
        /// The tests of this module, one per device (what `every_kernel_has_differential_tests`
        /// reads).
        #[allow(dead_code, reason = "read by one test")]
        pub fn devices() -> &'static [&'static str] {
            &[$($device),+]
        }
    };
    (@gpus |$dev:ident| $body:block) => {
        #[test]
        fn on_wgpu() {
            if let Some($dev) = $crate::common::wgpu() {
                $body
            }
        }
        #[test]
        fn in_ptx_interpreter() {
            let $dev = &$crate::common::interp();
            $body
        }
        #[test]
        fn on_cuda() {
            if let Some($dev) = $crate::common::cuda() {
                $body
            }
        }
    };
}
pub(crate) use device_tests;

/// [`device_tests`] for a proptest: `$arg` drawn from `$strategy` for `$cases` cases (or
/// `ULTRAMEM_PROPTEST_CASES`) on each device; the body returns through `prop_assert!` or `?`.
macro_rules! device_proptests {
    ($name:ident, $cases:expr, $arg:pat in $strategy:expr, |$dev:ident| $body:block) => {
        pub mod $name {
            #[allow(unused_imports, reason = "the body sees its parent's items")]
            use super::*;
            $crate::common::device_tests!(@devices "on_wgpu", "in_ptx_interpreter", "on_cuda");
            proptest::proptest! {
                #![proptest_config($crate::common::cases($cases))]

                #[test]
                fn on_wgpu($arg in $strategy) {
                    if let Some($dev) = $crate::common::wgpu() {
                        $body
                    }
                }

                #[test]
                fn in_ptx_interpreter($arg in $strategy) {
                    let $dev = &$crate::common::interp();
                    $body
                }

                #[test]
                fn on_cuda($arg in $strategy) {
                    if let Some($dev) = $crate::common::cuda() {
                        $body
                    }
                }
            }
        }
    };
}
pub(crate) use device_proptests;

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
