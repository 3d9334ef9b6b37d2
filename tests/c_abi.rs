//! The C ABI (`src/abi`, `include/ultramem.h`): a C program built with the system compiler
//! against the header and the cdylib, and the descriptor checks from Rust (dtype, device,
//! shape, strides, alignment, aliasing, null) with each op's plumbing checked against the
//! reference. The Python tests (`python/tests`) check the ops against independent PyTorch math.
#![cfg(feature = "abi")]
// The ABI's functions are `unsafe extern "C"`: calling them is what this file tests. Every call
// passes descriptors built by `Desc` over live Vecs that outlive the call.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "support/library.rs"]
mod library;

use std::ffi::CStr;
use std::path::PathBuf;
use std::process::Command;

use ultramem::abi::dlpack::{DLDataType, DLDevice, DLTensor, DL_CPU, DL_CUDA, DL_FLOAT, DL_INT};
use ultramem::abi::*;
use ultramem::reference;
use ultramem::{AdditiveTopkDims, ScoreFn, ScoreFnDims, WeightedGatherDims};

#[test]
fn c_program_calls_the_abi_through_the_header() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = library::built_library();
    let dir = lib.parent().expect("the library's folder").to_path_buf();
    let exe = dir.join("c_abi_weighted_gather");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(root.join("tests/c/weighted_gather.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&dir)
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .args(["-lultramem", "-lm"])
        .output()
        .unwrap_or_else(|e| {
            panic!("no C compiler `{cc}` ({e}): the C ABI test needs one (set CC)")
        });
    assert!(
        built.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&exe).output().expect("run the C program");
    let stdout = String::from_utf8_lossy(&run.stdout);
    print!("{stdout}");
    assert!(
        run.status.success(),
        "the C program failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("weighted_gather from C: [[4.5, 7], [0, 0]]"));
}

const F32: DLDataType = DLDataType {
    code: DL_FLOAT,
    bits: 32,
    lanes: 1,
};
const F64: DLDataType = DLDataType {
    code: DL_FLOAT,
    bits: 64,
    lanes: 1,
};
const I32: DLDataType = DLDataType {
    code: DL_INT,
    bits: 32,
    lanes: 1,
};

/// A descriptor over a Vec it borrows; `shape` and `strides` live in the struct.
struct Desc {
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    t: DLTensor,
}

impl Desc {
    fn new<T>(data: &mut [T], dtype: DLDataType, shape: &[i64]) -> Desc {
        let mut d = Desc {
            shape: shape.to_vec(),
            strides: None,
            t: DLTensor {
                data: data.as_mut_ptr().cast(),
                device: DLDevice {
                    device_type: DL_CPU,
                    device_id: 0,
                },
                ndim: shape.len() as i32,
                dtype,
                shape: std::ptr::null(),
                strides: std::ptr::null(),
                byte_offset: 0,
            },
        };
        d.t.shape = d.shape.as_ptr();
        d
    }

    /// The descriptor, pointing at `shape` (null when emptied) and `strides` (when set).
    fn ptr(&mut self) -> *mut DLTensor {
        self.t.shape = if self.shape.is_empty() {
            std::ptr::null()
        } else {
            self.shape.as_ptr()
        };
        self.t.strides = self
            .strides
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr());
        &mut self.t
    }
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(ultramem_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// One gather call's buffers: T = 2, M = 3, Cn = 1, N = 4, Dv = 2.
struct Gather {
    rows: Vec<u32>,
    w: Vec<f32>,
    table: Vec<f32>,
    out: Vec<f32>,
}

fn gather() -> Gather {
    Gather {
        rows: vec![3, 0, 1, 2, 2, 0],
        w: vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75],
        table: (0..8).map(|i| i as f32 * 0.5 - 1.0).collect(),
        out: vec![f32::NAN; 4],
    }
}

/// Runs the gather with descriptors edited by `edit`; the status.
fn gather_with(g: &mut Gather, edit: impl FnOnce(&mut [Desc; 4])) -> i32 {
    let u32t = DLDataType {
        code: 1,
        bits: 32,
        lanes: 1,
    };
    let mut d = [
        Desc::new(&mut g.rows, u32t, &[2, 3]),
        Desc::new(&mut g.w, F32, &[2, 3, 1]),
        Desc::new(&mut g.table, F32, &[4, 2]),
        Desc::new(&mut g.out, F32, &[2, 2]),
    ];
    edit(&mut d);
    let [r, w, t, o] = &mut d;
    unsafe {
        ultramem_weighted_gather_forward(r.ptr(), w.ptr(), t.ptr(), o.ptr(), std::ptr::null_mut())
    }
}

#[test]
fn gather_through_the_abi_is_the_reference() {
    let mut g = gather();
    assert_eq!(gather_with(&mut g, |_| {}), ULTRAMEM_OK, "{}", last_error());
    let d = WeightedGatherDims {
        tokens: 2,
        slots: 3,
        cores: 1,
        table_rows: 4,
        dv: 2,
    };
    let want = reference::weighted_gather::forward(&d, &g.rows, &g.w, &g.table).unwrap();
    let got: Vec<f64> = g.out.iter().map(|&x| f64::from(x)).collect();
    assert_eq!(
        got,
        want.iter()
            .map(|&x| f64::from(x as f32))
            .collect::<Vec<_>>()
    );
    assert_eq!(last_error(), "", "a success clears the message");
}

#[test]
fn bad_descriptors_are_typed_errors_with_the_crates_message() {
    type Edit = fn(&mut [Desc; 4]);
    let cases: Vec<(&str, Edit, i32, &str)> = vec![
        (
            "f64 rows",
            |d| d[0].t.dtype = F64,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "indices are int32 or uint32",
        ),
        (
            "int rows as floats",
            |d| d[1].t.dtype = I32,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "expected a float dtype",
        ),
        (
            "int8 table",
            |d| d[2].t.dtype.bits = 8,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "dtype float8",
        ),
        (
            "two lanes",
            |d| d[2].t.dtype.lanes = 2,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "float32x2",
        ),
        (
            "CUDA table among host tensors",
            |d| d[2].t.device.device_type = DL_CUDA,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "`table` lives on Cuda(0)",
        ),
        (
            "Vulkan table",
            |d| d[2].t.device.device_type = 7,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "device type 7",
        ),
        (
            "absurd ndim",
            |d| d[1].t.ndim = 1 << 20,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "ndim 1048576 (at most 8)",
        ),
        (
            "negative ndim",
            |d| d[1].t.ndim = -1,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "ndim -1",
        ),
        (
            "rank-1 rows",
            |d| d[0].t.ndim = 1,
            ULTRAMEM_ERR_SHAPE,
            "`rows` has shape",
        ),
        (
            "negative size",
            |d| d[2].shape[0] = -4,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "size -4",
        ),
        (
            "weights of another T",
            |d| d[1].shape[0] = 1,
            ULTRAMEM_ERR_SHAPE,
            "`weights` has shape [1, 3, 1]",
        ),
        (
            "out too small",
            |d| d[3].shape[1] = 1,
            ULTRAMEM_ERR_SHAPE,
            "`out` has shape [2, 1], expected [2, 2]",
        ),
        (
            "column-major table",
            |d| d[2].strides = Some(vec![1, 4]),
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "not contiguous",
        ),
        (
            "misaligned table",
            |d| d[2].t.byte_offset = 2,
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "not aligned",
        ),
        (
            "null data",
            |d| d[1].t.data = std::ptr::null_mut(),
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "null data",
        ),
        (
            "null shape",
            |d| d[1].shape.clear(),
            ULTRAMEM_ERR_INVALID_ARGUMENT,
            "null shape",
        ),
    ];
    for (what, edit, status, message) in cases {
        let mut g = gather();
        let got = gather_with(&mut g, edit);
        let msg = last_error();
        assert_eq!(got, status, "{what}: status {got} ({msg})");
        assert!(
            msg.contains(message),
            "{what}: message {msg:?} lacks {message:?}"
        );
        assert!(msg.starts_with("weighted_gather"), "{what}: {msg}");
    }
}

#[test]
fn strides_of_size_one_dims_and_contiguous_strides_are_accepted() {
    let mut g = gather();
    let status = gather_with(&mut g, |d| d[1].strides = Some(vec![3, 1, 99]));
    assert_eq!(status, ULTRAMEM_OK, "{}", last_error());
}

#[test]
fn cuda_tensors_without_a_driver_are_a_typed_error() {
    if ultramem::Device::cuda(0).is_ok() {
        // The descriptors below point at host memory: on a real GPU the call would run.
        eprintln!("SKIPPED here: a CUDA device is present (the GPU check runs the CUDA path)");
        return;
    }
    let mut g = gather();
    let status = gather_with(&mut g, |d| {
        for desc in d.iter_mut() {
            desc.t.device.device_type = DL_CUDA;
        }
    });
    assert_eq!(status, ULTRAMEM_ERR_UNSUPPORTED, "{}", last_error());
    assert!(last_error().contains("cuda"), "{}", last_error());
}

#[test]
fn an_output_aliasing_an_input_is_refused() {
    let mut g = gather();
    let w_ptr = g.w.as_mut_ptr();
    let status = gather_with(&mut g, |d| d[3].t.data = w_ptr.cast());
    assert_eq!(status, ULTRAMEM_ERR_INVALID_ARGUMENT);
    assert!(
        last_error().contains("overlaps `weights`"),
        "{}",
        last_error()
    );
}

#[test]
fn out_of_range_rows_and_negative_int32_rows_are_reported() {
    let mut g = gather();
    g.rows[4] = 4;
    assert_eq!(gather_with(&mut g, |_| {}), ULTRAMEM_ERR_INDEX_OUT_OF_RANGE);
    assert!(last_error().contains("`rows[4]` = 4"), "{}", last_error());
    let mut g = gather();
    g.rows[1] = (-1i32) as u32;
    assert_eq!(
        gather_with(&mut g, |d| d[0].t.dtype = I32),
        ULTRAMEM_ERR_INDEX_OUT_OF_RANGE
    );
}

#[test]
fn float64_in_and_out_is_the_f64_reference_and_errors_are_per_thread() {
    // Additive top-k in f64, with its backward: the ABI's outputs are the reference's values.
    let (t, h, dk, n, k) = (3usize, 2usize, 4usize, 5usize, 4usize);
    let mut q: Vec<f64> = (0..t * h * dk)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
        .collect();
    let mut keys: Vec<f64> = (0..h * 2 * n * dk / 2)
        .map(|i| ((i * 13 % 17) as f64 - 8.0) / 7.0)
        .collect();
    let mut idx = vec![u32::MAX; t * h * k];
    let mut score = vec![f64::NAN; t * h * k];
    let (ti, hi, ki) = (t as i64, h as i64, k as i64);
    let mut dq_ = Desc::new(&mut q, F64, &[ti, hi, dk as i64]);
    let mut dkeys_ = Desc::new(&mut keys, F64, &[hi, 2, n as i64, dk as i64 / 2]);
    let mut didx = Desc::new(&mut idx, I32, &[ti, hi, ki]);
    let mut dscore = Desc::new(&mut score, F64, &[ti, hi, ki]);
    let s = unsafe {
        ultramem_additive_topk_forward(
            dq_.ptr(),
            dkeys_.ptr(),
            k as i64,
            0,
            didx.ptr(),
            dscore.ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, ULTRAMEM_OK, "{}", last_error());
    let d = AdditiveTopkDims {
        tokens: t,
        heads: h,
        dk,
        n,
        k,
        k1: k,
    };
    let (want_i, want_s) = reference::additive_topk::forward(&d, &q, &keys).unwrap();
    assert_eq!(idx, want_i);
    assert_eq!(score, want_s, "f64 out is the f64 reference, bit for bit");

    let mut g: Vec<f64> = (0..t * h * k).map(|i| (i as f64 * 0.3).sin()).collect();
    let mut gq = vec![f64::NAN; q.len()];
    let mut gk = vec![f64::NAN; keys.len()];
    let mut dg = Desc::new(&mut g, F64, &[ti, hi, ki]);
    let mut dgq = Desc::new(&mut gq, F64, &[ti, hi, dk as i64]);
    let mut dgk = Desc::new(&mut gk, F64, &[hi, 2, n as i64, dk as i64 / 2]);
    let mut dq2 = Desc::new(&mut q, F64, &[ti, hi, dk as i64]);
    let mut dk2 = Desc::new(&mut keys, F64, &[hi, 2, n as i64, dk as i64 / 2]);
    let mut di2 = Desc::new(&mut idx, I32, &[ti, hi, ki]);
    let s = unsafe {
        ultramem_additive_topk_backward(
            dq2.ptr(),
            dk2.ptr(),
            di2.ptr(),
            dg.ptr(),
            dgq.ptr(),
            dgk.ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, ULTRAMEM_OK, "{}", last_error());
    let (want_q, want_k) = reference::additive_topk::backward(&d, &q, &keys, &idx, &g).unwrap();
    assert_eq!((gq, gk), (want_q, want_k));

    // The message is per thread: a failure elsewhere leaves this thread's "" alone.
    std::thread::spawn(|| {
        let s = unsafe {
            ultramem_score_fn_forward(
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(s, ULTRAMEM_ERR_INVALID_ARGUMENT);
        assert!(
            last_error().contains("`score`: null pointer"),
            "{}",
            last_error()
        );
    })
    .join()
    .unwrap();
    assert_eq!(last_error(), "");
}

#[test]
fn score_fn_codes_are_checked_and_softmax_matches_the_reference() {
    let mut x: Vec<f32> = vec![0.5, -1.0, 2.0, 0.0, 3.0, 1.0];
    let mut y = vec![f32::NAN; 6];
    let mut dx = Desc::new(&mut x, F32, &[1, 2, 3]);
    let mut dy = Desc::new(&mut y, F32, &[1, 2, 3]);
    let s = unsafe { ultramem_score_fn_forward(dx.ptr(), 9, dy.ptr(), std::ptr::null_mut()) };
    assert_eq!(s, ULTRAMEM_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("code 9"), "{}", last_error());
    let s = unsafe { ultramem_score_fn_forward(dx.ptr(), 1, dy.ptr(), std::ptr::null_mut()) };
    assert_eq!(s, ULTRAMEM_OK, "{}", last_error());
    let d = ScoreFnDims {
        tokens: 1,
        heads: 2,
        k: 3,
        cores: 1,
    };
    let want = reference::score_fn::forward(&d, ScoreFn::Softmax, &x).unwrap();
    assert_eq!(y, want.iter().map(|&v| v as f32).collect::<Vec<_>>());
}
