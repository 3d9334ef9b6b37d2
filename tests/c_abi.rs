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
    // The library this test built, not another one on cargo's LD_LIBRARY_PATH (which outranks
    // the rpath): a `cargo build` with other features leaves one in target/<profile>/.
    let run = Command::new(&exe)
        .env("LD_LIBRARY_PATH", &dir)
        .output()
        .expect("run the C program");
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
            "indices are int32, uint32 or int64",
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

/// One C function as a declaration lists it: name, return type, and (parameter name, type)s
/// with C spelling (`const DLTensor *`, `int64_t`, `void *`).
#[derive(Debug, PartialEq)]
struct CDecl {
    name: String,
    ret: String,
    params: Vec<(String, String)>,
}

/// The Rust `extern "C"` functions of `src/abi/mod.rs`, types translated to C.
fn rust_decls(src: &str) -> Vec<CDecl> {
    let c_type = |t: &str| -> String {
        match t.trim() {
            "*const DLTensor" => "const DLTensor *",
            "*mut DLTensor" => "DLTensor *",
            "*mut c_void" => "void *",
            "*const c_char" => "const char *",
            "i32" => "int32_t",
            "i64" => "int64_t",
            "u64" => "uint64_t",
            other => panic!("no C spelling for the Rust type `{other}` in the ABI"),
        }
        .to_string()
    };
    let mut out = Vec::new();
    for part in src.split("extern \"C\" fn ").skip(1) {
        let name = part[..part.find('(').unwrap()].trim().to_string();
        let close = part.find(')').unwrap();
        let params = part[part.find('(').unwrap() + 1..close]
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (n, t) = p.split_once(':').unwrap();
                (n.trim().to_string(), c_type(t))
            })
            .collect();
        let ret = part[close + 1..]
            .trim_start()
            .strip_prefix("->")
            .unwrap()
            .split('{')
            .next()
            .unwrap();
        out.push(CDecl {
            name,
            ret: c_type(ret),
            params,
        });
    }
    out
}

/// The function declarations of `include/ultramem.h`.
fn header_decls(header: &str) -> Vec<CDecl> {
    // Drop block comments, then preprocessor lines.
    let mut text = String::new();
    let mut rest = header;
    while let Some(open) = rest.find("/*") {
        text.push_str(&rest[..open]);
        rest = rest[open..]
            .find("*/")
            .map_or("", |close| &rest[open + close + 2..]);
    }
    text.push_str(rest);
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = Vec::new();
    for stmt in code.split(';') {
        let Some(at) = stmt.find("ultramem_") else {
            continue;
        };
        let Some(open) = stmt[at..].find('(') else {
            continue;
        };
        let ret = stmt[..at].split_whitespace().collect::<Vec<_>>().join(" ");
        if ret.is_empty() || ret.contains('}') {
            continue;
        }
        let name = stmt[at..at + open].trim().to_string();
        let inner = &stmt[at + open + 1..stmt.rfind(')').unwrap()];
        let params = inner
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "void")
            .map(|p| {
                let split = p.rfind(['*', ' ']).unwrap();
                let (t, n) = p.split_at(split + 1);
                let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
                // `DLTensor *` and `DLTensor*` are the same type.
                (
                    n.trim().to_string(),
                    t.replace(" *", "*").replace('*', " *"),
                )
            })
            .collect();
        out.push(CDecl {
            name,
            ret: ret.replace(" *", "*").replace('*', " *"),
            params,
        });
    }
    out
}

/// The Python package's ctypes table: name → argument types (`_T` for a pointer).
fn python_signatures(lib_py: &str) -> Vec<(String, Vec<String>)> {
    let table = lib_py
        .split("_SIGNATURES = {")
        .nth(1)
        .and_then(|t| t.split("\n}").next())
        .expect("python/ultramem/_lib.py has a _SIGNATURES table");
    table
        .lines()
        .filter_map(|l| {
            let (name, args) = l.trim().split_once(':')?;
            let args = args.trim().trim_end_matches(',');
            let args = args.strip_prefix('[')?.strip_suffix(']')?;
            Some((
                name.trim().trim_matches('"').to_string(),
                args.split(',').map(|a| a.trim().to_string()).collect(),
            ))
        })
        .collect()
}

/// The C ABI's function list is declared three times — the Rust `extern "C"` functions, the C
/// header and the Python ctypes table — and they agree: the same functions, parameter names and
/// C types, the same ABI version and status codes. A change in one that the others lack fails
/// here.
#[test]
fn the_header_and_the_python_table_match_the_rust_extern_functions() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let mut rust = rust_decls(&read("src/abi/mod.rs"));
    let mut header = header_decls(&read("include/ultramem.h"));
    rust.sort_by(|a, b| a.name.cmp(&b.name));
    header.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(rust.len() >= 12, "{rust:?}");
    assert_eq!(
        header, rust,
        "include/ultramem.h and src/abi/mod.rs declare different functions"
    );
    // Python: every function that takes arguments, each pointer as _T, integers by width.
    let py = python_signatures(&read("python/ultramem/_lib.py"));
    let want: Vec<(String, Vec<String>)> = rust
        .iter()
        .filter(|d| !d.params.is_empty())
        .map(|d| {
            let args = d
                .params
                .iter()
                .map(|(_, t)| {
                    match t.as_str() {
                        t if t.ends_with('*') => "_T",
                        "int32_t" => "_I32",
                        "int64_t" => "_I64",
                        "uint64_t" => "_U64",
                        other => panic!("no ctypes spelling for {other}"),
                    }
                    .to_string()
                })
                .collect();
            (d.name.clone(), args)
        })
        .collect();
    let mut py_sorted = py.clone();
    py_sorted.sort();
    let mut want_sorted = want;
    want_sorted.sort();
    assert_eq!(
        py_sorted, want_sorted,
        "python/ultramem/_lib.py's _SIGNATURES and src/abi/mod.rs differ"
    );
    // The version and the status codes.
    let header_text = read("include/ultramem.h");
    let define = |name: &str| -> i32 {
        header_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("include/ultramem.h defines no {name}"))
    };
    for (name, value) in [
        ("ULTRAMEM_ABI_VERSION", ULTRAMEM_ABI_VERSION),
        ("ULTRAMEM_OK", ULTRAMEM_OK),
        ("ULTRAMEM_ERR_SHAPE", ULTRAMEM_ERR_SHAPE),
        (
            "ULTRAMEM_ERR_INVALID_ARGUMENT",
            ULTRAMEM_ERR_INVALID_ARGUMENT,
        ),
        (
            "ULTRAMEM_ERR_INDEX_OUT_OF_RANGE",
            ULTRAMEM_ERR_INDEX_OUT_OF_RANGE,
        ),
        ("ULTRAMEM_ERR_NON_FINITE", ULTRAMEM_ERR_NON_FINITE),
        ("ULTRAMEM_ERR_UNSUPPORTED", ULTRAMEM_ERR_UNSUPPORTED),
        ("ULTRAMEM_ERR_BACKEND", ULTRAMEM_ERR_BACKEND),
        ("ULTRAMEM_ERR_INTERNAL", ULTRAMEM_ERR_INTERNAL),
        ("ULTRAMEM_ERR_OUT_OF_MEMORY", ULTRAMEM_ERR_OUT_OF_MEMORY),
    ] {
        assert_eq!(define(name), value, "{name} in include/ultramem.h");
    }
    let py_version = read("python/ultramem/_lib.py")
        .lines()
        .find_map(|l| l.strip_prefix("ABI_VERSION = "))
        .and_then(|v| v.trim().parse::<i32>().ok())
        .expect("python/ultramem/_lib.py sets ABI_VERSION");
    assert_eq!(
        py_version, ULTRAMEM_ABI_VERSION,
        "the Python package's ABI_VERSION"
    );
}

const U32: DLDataType = DLDataType {
    code: 1,
    bits: 32,
    lanes: 1,
};

/// `index_map` through the ABI on the host: `idx`, an optional shuffle, `(N_l, offset, N_tot)`,
/// the output dtype; the status and the output.
fn index_map_abi<I: Copy, S: Copy>(
    (idx, idx_dtype): (&[I], DLDataType),
    shuffle: Option<(&[S], DLDataType)>,
    map: (u64, u64, u64),
    out_dtype: DLDataType,
) -> (i32, Vec<u32>) {
    let mut idx = idx.to_vec();
    let mut out = vec![0xDEAD_BEEFu32; idx.len()];
    let mut shuffle = shuffle.map(|(s, t)| (s.to_vec(), t));
    let n = idx.len() as i64;
    let mut di = Desc::new(&mut idx, idx_dtype, &[n]);
    let mut dout = Desc::new(&mut out, out_dtype, &[n]);
    let mut ds = shuffle.as_mut().map(|(s, t)| {
        let len = s.len() as i64;
        Desc::new(s, *t, &[len])
    });
    let status = unsafe {
        ultramem_index_map_forward(
            di.ptr(),
            ds.as_mut()
                .map_or(std::ptr::null(), |d| d.ptr().cast_const()),
            map.0,
            map.1,
            map.2,
            dout.ptr(),
            std::ptr::null_mut(),
        )
    };
    (status, out)
}

#[test]
fn negative_int32_indices_are_out_of_range_never_reinterpreted() {
    // ν = −1 without a shuffle used to map to (2^32 − 1) mod 10 = 5.
    let (status, out) = index_map_abi((&[-1i32, 3], I32), None::<(&[u32], _)>, (10, 0, 10), I32);
    assert_eq!(status, ULTRAMEM_ERR_INDEX_OUT_OF_RANGE, "{out:?}");
    let e = last_error();
    assert!(e.contains("idx[0]") && e.contains("-1"), "{e}");
    assert_eq!(out, [0xDEAD_BEEF; 2], "nothing written");
    // A shuffle entry of −1 (read as 2^32 − 1 before).
    let (status, _) = index_map_abi(
        (&[1u32, 0], U32),
        Some((&[0i32, -1, 2][..], I32)),
        (10, 0, 10),
        U32,
    );
    assert_eq!(status, ULTRAMEM_ERR_INDEX_OUT_OF_RANGE);
    let e = last_error();
    assert!(e.contains("shuffle[1]") && e.contains("-1"), "{e}");
    // A row of −1 into the gather's table.
    let mut g = gather();
    let status = gather_with(&mut g, |d| {
        d[0].t.dtype = I32;
    });
    assert_eq!(status, ULTRAMEM_OK);
    let mut g = gather();
    g.rows[4] = u32::MAX; // −1 as int32
    let status = gather_with(&mut g, |d| d[0].t.dtype = I32);
    assert_eq!(status, ULTRAMEM_ERR_INDEX_OUT_OF_RANGE);
    let e = last_error();
    assert!(e.contains("rows[4]") && e.contains("-1"), "{e}");
}

#[test]
fn an_int32_output_refuses_values_past_2_31_and_a_uint32_one_holds_them() {
    // ρ = (0 mod 1 + 2^31 + 5) mod 2^32 = 2^31 + 5 (it used to come back as −2147483643).
    let map = (1, (1 << 31) + 5, 1 << 32);
    let (status, out) = index_map_abi((&[0u32], U32), None::<(&[u32], _)>, map, I32);
    assert_eq!(status, ULTRAMEM_ERR_UNSUPPORTED, "{out:?}");
    assert!(last_error().contains("int32"), "{}", last_error());
    assert_eq!(out, [0xDEAD_BEEF], "nothing written");
    let (status, out) = index_map_abi((&[0u32], U32), None::<(&[u32], _)>, map, U32);
    assert_eq!(status, ULTRAMEM_OK, "{}", last_error());
    assert_eq!(out, [(1u32 << 31) + 5]);
}

const F16: DLDataType = DLDataType {
    code: DL_FLOAT,
    bits: 16,
    lanes: 1,
};

/// The body of the out-of-memory test, run by it in a child process (`#[ignore]`: it limits its
/// own address space). A valid gather backward over a `[2^27, 2]` f16 table: its f64 gradient
/// accumulator needs 2 GiB, and the address space is capped 1 GiB above what the inputs and
/// outputs (allocated zeroed, so untouched) already hold.
#[test]
#[ignore = "run by an_allocation_past_the_address_space_is_a_typed_error_not_an_abort"]
fn oom_child_gather_backward_under_rlimit_as() {
    let rows_n: usize = 1 << 27;
    let dv = 2;
    let mut rows = vec![0u32];
    let mut w = vec![1.0f32];
    let mut table = vec![0u16; rows_n * dv]; // f16 zeros; calloc'd, so untouched
    let mut dout = vec![1.0f32; dv];
    let mut dw = vec![0.0f32];
    let mut dtable = vec![0.0f32; rows_n * dv];
    let vm_bytes = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("VmSize in /proc/self/status")
        * 1024;
    let limit = vm_bytes + (1 << 30);
    let set = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--as={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) sets this process's RLIMIT_AS");
    assert!(set.success());
    let mut d = [
        Desc::new(&mut rows, U32, &[1, 1]),
        Desc::new(&mut w, F32, &[1, 1, 1]),
        Desc::new(&mut table, F16, &[rows_n as i64, dv as i64]),
        Desc::new(&mut dout, F32, &[1, dv as i64]),
        Desc::new(&mut dw, F32, &[1, 1, 1]),
        Desc::new(&mut dtable, F32, &[rows_n as i64, dv as i64]),
    ];
    let [r, wd, t, g, dwd, dtd] = &mut d;
    let status = unsafe {
        ultramem_weighted_gather_backward(
            r.ptr(),
            wd.ptr(),
            t.ptr(),
            g.ptr(),
            dwd.ptr(),
            dtd.ptr(),
            std::ptr::null_mut(),
        )
    };
    println!("child status {status}: {}", last_error());
}

/// The CPU path used to widen with infallible allocation: this backward died with "memory
/// allocation of … bytes failed" (SIGABRT) in the caller's process. Under an address-space
/// limit it now returns `ULTRAMEM_ERR_OUT_OF_MEMORY`.
#[test]
fn an_allocation_past_the_address_space_is_a_typed_error_not_an_abort() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: the RLIMIT_AS test uses /proc and prlimit (Linux)");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "oom_child_gather_backward_under_rlimit_as",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child died: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("child status {ULTRAMEM_ERR_OUT_OF_MEMORY}: weighted_gather: out of host");
    assert!(stdout.contains(&want), "{stdout}");
}

/// A `shape` or `strides` pointer that is not aligned to 8 bytes is refused before the slice
/// is formed (forming a misaligned `&[i64]` is undefined behaviour even where x86 reads it).
#[test]
fn misaligned_shape_and_strides_pointers_are_refused() {
    for field in ["shape", "strides"] {
        let mut g = gather();
        let mut d = [
            Desc::new(&mut g.rows, U32, &[2, 3]),
            Desc::new(&mut g.w, F32, &[2, 3, 1]),
            Desc::new(&mut g.table, F32, &[4, 2]),
            Desc::new(&mut g.out, F32, &[2, 2]),
        ];
        // The table's [4, 2] (and strides [2, 1]) copied one byte into a word buffer.
        let mut bytes = [0u64; 3];
        let values: [i64; 2] = if field == "shape" { [4, 2] } else { [2, 1] };
        let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut bytes);
        for (i, v) in values.iter().enumerate() {
            raw[1 + 8 * i..9 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        let odd = unsafe { raw.as_ptr().add(1) }.cast::<i64>();
        let [r, w, t, o] = &mut d;
        let table = t.ptr();
        unsafe {
            if field == "shape" {
                (*table).shape = odd;
            } else {
                (*table).strides = odd;
            }
        }
        let status = unsafe {
            ultramem_weighted_gather_forward(r.ptr(), w.ptr(), table, o.ptr(), std::ptr::null_mut())
        };
        assert_eq!(status, ULTRAMEM_ERR_INVALID_ARGUMENT, "{field}");
        assert!(
            last_error().contains("not aligned to 8 bytes"),
            "{}",
            last_error()
        );
    }
}

const I64: DLDataType = DLDataType {
    code: DL_INT,
    bits: 64,
    lanes: 1,
};

/// int64 indices (spec §I.6.1, ABI version 2): inputs checked (negative, past the bound, past
/// 2^32), and an int64 output holds rows past 2^31.
#[test]
fn int64_indices_in_and_out_on_the_host_path() {
    let mut idx = vec![3i64, -1];
    let mut out = vec![-7i64; 2];
    let mut di = Desc::new(&mut idx, I64, &[2]);
    let mut dout = Desc::new(&mut out, I64, &[2]);
    let call = |di: &mut Desc, dout: &mut Desc, map: (u64, u64, u64)| unsafe {
        ultramem_index_map_forward(
            di.ptr(),
            std::ptr::null(),
            map.0,
            map.1,
            map.2,
            dout.ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(
        call(&mut di, &mut dout, (10, 0, 10)),
        ULTRAMEM_ERR_INDEX_OUT_OF_RANGE
    );
    assert!(last_error().contains("idx[1]` = -1"), "{}", last_error());
    drop((di, dout));
    assert_eq!(out, [-7, -7], "nothing written");
    idx[1] = 1 << 32; // past every u32 ν
    let mut di = Desc::new(&mut idx, I64, &[2]);
    let mut dout = Desc::new(&mut out, I64, &[2]);
    assert_eq!(
        call(&mut di, &mut dout, (10, 0, 10)),
        ULTRAMEM_ERR_INDEX_OUT_OF_RANGE
    );
    drop((di, dout));
    idx[1] = 4;
    let mut di = Desc::new(&mut idx, I64, &[2]);
    let mut dout = Desc::new(&mut out, I64, &[2]);
    let status = call(&mut di, &mut dout, (1, (1 << 31) + 5, 1 << 32));
    assert_eq!(status, ULTRAMEM_OK, "{}", last_error());
    drop((di, dout));
    assert_eq!(
        out,
        [(1i64 << 31) + 5; 2],
        "rows past 2^31 in an int64 output"
    );
}
