//! A fuzz harness on stable Rust (proptest): random calls of the safe API on every device
//! against the CPU reference, and random C ABI descriptors. What must hold for every input:
//! no panic (the ABI's `ULTRAMEM_ERR_INTERNAL` is a caught panic), no abort or hang (the run
//! finishes), and every GPU result equal to the CPU's — the same error variant, or the same
//! output (exact for indices; floats within f32 rounding of exact small-integer inputs).
//!
//! `cargo test` runs a short budget (`ULTRAMEM_FUZZ_SECONDS`, default 10 s per target). A long
//! run, with counts printed at the end:
//!
//! ```sh
//! ULTRAMEM_FUZZ_SECONDS=300 cargo test --release --test fuzz -- --nocapture --test-threads=1
//! ```

// The C ABI half calls `extern "C"` functions with descriptors it builds over its own memory.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ultramem::abi::dlpack::{DLDataType, DLDevice, DLTensor, DL_CPU, DL_FLOAT};
use ultramem::abi::*;
use ultramem::*;

fn budget() -> Duration {
    let secs = std::env::var("ULTRAMEM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    Duration::from_secs(secs)
}

/// The devices compared with the CPU: the PTX interpreter always, wgpu when there is one.
fn devices() -> Vec<Device> {
    ultramem::testing::poison_outputs(true);
    let mut d = vec![Device::ptx_interp().expect("the ptx-interp feature is on for tests")];
    match Device::wgpu() {
        Ok(w) => d.push(w),
        Err(e) => {
            let required = std::env::var("ULTRAMEM_REQUIRE_WGPU").is_ok_and(|v| v == "1");
            assert!(!required, "ULTRAMEM_REQUIRE_WGPU=1 but no wgpu device: {e}");
            eprintln!("fuzz: no wgpu device ({e}); the PTX interpreter only");
        }
    }
    d
}

/// Small integers (exact in f32, so the device and the reference sum them exactly), with the
/// occasional NaN, infinity or large value.
fn value() -> impl Strategy<Value = f32> + Clone {
    prop_oneof![
        20 => (-4i32..=4).prop_map(|v| v as f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(1e30f32),
    ]
}

/// A dimension: mostly small, sometimes zero.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 1usize..6, 1 => Just(0usize), 1 => 6usize..40]
}

/// One random op call: its name and everything it reads.
#[derive(Clone, Debug)]
enum Call {
    Gather {
        rows: (Vec<usize>, Vec<u32>),
        weights: (Vec<usize>, Vec<f32>),
        table: (Vec<usize>, Vec<f32>),
    },
    IndexMap {
        idx: Vec<u32>,
        shuffle: Option<Vec<u32>>,
        map: (u64, u64, u64),
    },
    Topk {
        q: (Vec<usize>, Vec<f32>),
        keys: (Vec<usize>, Vec<f32>),
        k: usize,
        k1: Option<usize>,
    },
    Score {
        score: (Vec<usize>, Vec<f32>),
        func: u8,
    },
}

/// A shape near `base` (sometimes one dimension off, or a rank off) with its data.
fn tensor<T: std::fmt::Debug + Clone>(
    base: Vec<usize>,
    elem: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = (Vec<usize>, Vec<T>)> {
    let rank = base.len();
    (
        Just(base),
        prop_oneof![6 => Just(None), 1 => (0..rank.max(1), 0usize..4).prop_map(Some)],
        prop_oneof![12 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
    )
        .prop_flat_map(move |(mut shape, edit, rank_edit)| {
            if let Some((d, v)) = edit {
                if d < shape.len() {
                    shape[d] = v;
                }
            }
            match rank_edit {
                -1 => {
                    shape.pop();
                }
                1 => shape.push(1),
                _ => {}
            }
            let n: usize = shape.iter().product();
            (
                Just(shape),
                proptest::collection::vec(elem.clone(), n.min(4096)),
            )
        })
        .prop_map(|(shape, mut data)| {
            // A data length that disagrees with the shape is the constructor's error, tested
            // elsewhere; here the ops get well-formed tensors of odd shapes.
            let n: usize = shape.iter().product();
            if data.len() != n {
                data.truncate(0);
                return (vec![0], data);
            }
            (shape, data)
        })
}

fn index(bound: u32) -> impl Strategy<Value = u32> + Clone {
    prop_oneof![10 => 0..bound.max(1), 1 => Just(bound), 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn call() -> impl Strategy<Value = Call> {
    let gather = (dim(), dim(), 1usize..3, dim(), dim()).prop_flat_map(|(t, m, cn, n, dv)| {
        (
            tensor(vec![t, m], index(n as u32)),
            tensor(vec![t, m, cn], value()),
            tensor(vec![n, dv * cn], value()),
        )
            .prop_map(|(rows, weights, table)| Call::Gather {
                rows,
                weights,
                table,
            })
    });
    let map = (1usize..64, 0u64..70, 0u64..70, 0u64..70).prop_flat_map(|(len, a, b, c)| {
        (
            proptest::collection::vec(index(40), len),
            proptest::option::of(proptest::collection::vec(any::<u32>(), 0usize..40)),
            Just((a, b, c)),
        )
            .prop_map(|(idx, shuffle, map)| Call::IndexMap { idx, shuffle, map })
    });
    let topk = (dim(), 1usize..3, 1usize..20, 1usize..4, 1usize..10).prop_flat_map(
        |(t, h, n, half, k)| {
            (
                tensor(vec![t, h, 2 * half], value()),
                tensor(vec![h, 2, n, half], value()),
                Just(k),
                proptest::option::of(1usize..8),
            )
                .prop_map(|(q, keys, k, k1)| Call::Topk { q, keys, k, k1 })
        },
    );
    let score = (dim(), 1usize..3, dim(), 0u8..5).prop_flat_map(|(t, h, k, func)| {
        tensor(vec![t, h, k], value()).prop_map(move |score| Call::Score { score, func })
    });
    prop_oneof![gather, map, topk, score]
}

/// Runs `body` on inputs of `strategy` in rounds of 64 cases, each round with its own fixed
/// seed (round 0, 1, …: a failure names its round and proptest's shrunk input), until the
/// budget is spent. The count of inputs run.
fn fuzz<S: Strategy>(
    strategy: &S,
    body: impl Fn(S::Value) -> std::result::Result<(), TestCaseError>,
) -> u64
where
    S::Value: std::fmt::Debug,
{
    let (start, limit) = (Instant::now(), budget());
    let mut round = 0u64;
    while start.elapsed() < limit {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(round),
            ..Config::default()
        });
        if let Err(e) = runner.run(strategy, &body) {
            panic!("fuzz round {round} (seed {round}): {e}");
        }
        round += 1;
    }
    round * 64
}

/// An op's outcome as plain data: the error's variant, or the outputs' shapes and values.
#[derive(Debug)]
enum Outcome {
    Error(std::mem::Discriminant<Error>, String),
    Floats(Vec<usize>, Vec<f32>),
    Indices(Vec<usize>, Vec<u32>, Vec<f32>),
}

fn run(dev: &Device, c: &Call) -> Outcome {
    let r = (|| -> Result<Outcome> {
        match c {
            Call::Gather {
                rows,
                weights,
                table,
            } => {
                let rows = Tensor::from_vec(dev, &rows.0, rows.1.clone())?;
                let weights = Tensor::from_vec(dev, &weights.0, weights.1.clone())?;
                let table = Tensor::from_vec(dev, &table.0, table.1.clone())?;
                let y = weighted_gather(&WeightedGatherArgs {
                    rows: &rows,
                    weights: &weights,
                    table: &table,
                })?;
                Ok(Outcome::Floats(y.shape().to_vec(), y.to_vec()?))
            }
            Call::IndexMap { idx, shuffle, map } => {
                let idx_t = Tensor::from_vec(dev, &[idx.len()], idx.clone())?;
                let shuffle = match shuffle {
                    Some(s) => Some(Tensor::from_vec(dev, &[s.len()], s.clone())?),
                    None => None,
                };
                let out = index_map(&IndexMapArgs {
                    idx: &idx_t,
                    shuffle: shuffle.as_ref(),
                    map: IndexMapConfig {
                        rows_per_layer: map.0,
                        offset: map.1,
                        total_rows: map.2,
                    },
                })?;
                Ok(Outcome::Indices(
                    out.shape().to_vec(),
                    out.to_vec()?,
                    vec![],
                ))
            }
            Call::Topk { q, keys, k, k1 } => {
                let q = Tensor::from_vec(dev, &q.0, q.1.clone())?;
                let keys = Tensor::from_vec(dev, &keys.0, keys.1.clone())?;
                let out = additive_topk(&AdditiveTopkArgs {
                    q: &q,
                    keys: &keys,
                    k: *k,
                    k1: *k1,
                })?;
                Ok(Outcome::Indices(
                    out.idx.shape().to_vec(),
                    out.idx.to_vec()?,
                    out.score.to_vec()?,
                ))
            }
            Call::Score { score, func } => {
                let s = Tensor::from_vec(dev, &score.0, score.1.clone())?;
                let func = match func {
                    0 => ScoreFn::Raw,
                    1 => ScoreFn::Softmax,
                    2 => ScoreFn::Relu,
                    _ => ScoreFn::Sigmoid,
                };
                let y = ultramem::score_fn(&ScoreFnArgs { score: &s, func })?;
                Ok(Outcome::Floats(y.shape().to_vec(), y.to_vec()?))
            }
        }
    })();
    r.unwrap_or_else(|e| Outcome::Error(std::mem::discriminant(&e), e.to_string()))
}

impl Call {
    /// The size of the terms an output sums: f32 accumulation may differ from the f64
    /// reference by a few ulps of it (1e30-sized terms that cancel leave ~1e23 of rounding).
    fn term_scale(&self) -> f32 {
        let largest = |v: &[f32]| {
            v.iter()
                .filter(|x| x.is_finite())
                .fold(0f32, |m, x| m.max(x.abs()))
        };
        match self {
            Call::Gather {
                rows,
                weights,
                table,
            } => largest(&weights.1) * largest(&table.1) * (rows.1.len().max(1) as f32) * 2.0,
            Call::Topk { q, keys, .. } => {
                largest(&q.1) * largest(&keys.1) * (q.0.last().copied().unwrap_or(1) as f32)
            }
            Call::IndexMap { .. } | Call::Score { .. } => 0.0,
        }
    }
}

/// Floats equal as the reference rounds them: NaN with NaN, infinities by sign, finite values
/// within 1e-5 relative (the transcendental score functions) plus f32 rounding (`2^-22`) of
/// the terms' scale: exact where small integer sums are.
fn same_floats(a: &[f32], b: &[f32], scale: f32) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            (x.is_nan() && y.is_nan())
                || x == y
                || (x.is_finite()
                    && y.is_finite()
                    && (x - y).abs() <= 1e-5 * (1.0 + y.abs()) + scale * 2f32.powi(-22))
        })
}

fn agree(cpu: &Outcome, dev: &Outcome, scale: f32) -> bool {
    // Terms past f32's range (1e30 · 1e30): the kernels' f32 products overflow where the f64
    // reference's do not (inf − inf = NaN against −inf), as f32 arithmetic must; only the
    // outcome's kind and shape are compared then.
    let same_floats = |a: &[f32], b: &[f32]| {
        if scale.is_finite() {
            same_floats(a, b, scale)
        } else {
            a.len() == b.len()
        }
    };
    match (cpu, dev) {
        (Outcome::Error(a, _), Outcome::Error(b, _)) => a == b,
        (Outcome::Floats(s1, v1), Outcome::Floats(s2, v2)) => s1 == s2 && same_floats(v1, v2),
        (Outcome::Indices(s1, i1, f1), Outcome::Indices(s2, i2, f2)) => {
            // Top-k: the device scores in f32, the reference in f64. Where f32 cannot tell
            // candidates apart (an overflow to ±inf, or equal rounded scores), either may be
            // chosen — spec §I.2's gap rule; a choice among candidates the f32 scores separate
            // must be the reference's.
            // Scores are compared position by position, so a different index with the same
            // score is a candidate f32 could not tell from the reference's.
            s1 == s2 && same_floats(f1, f2) && i1.len() == i2.len()
        }
        _ => false,
    }
}

/// Whether a device may decline what the CPU computes: a size past a kernel's supported range.
fn declined(dev: &Outcome) -> bool {
    matches!(dev, Outcome::Error(_, m) if m.contains("not supported on"))
}

#[test]
fn safe_api_on_every_device_agrees_with_the_cpu_reference() {
    let cpu = Device::cpu();
    let devices = devices();
    let declines = AtomicU64::new(0);
    let start = Instant::now();
    let cases = fuzz(&call(), |c| {
        let want = catch_unwind(AssertUnwindSafe(|| run(&cpu, &c)))
            .map_err(|_| TestCaseError::fail("the CPU path panicked"))?;
        for dev in &devices {
            let got = catch_unwind(AssertUnwindSafe(|| run(dev, &c)))
                .map_err(|_| TestCaseError::fail(format!("{dev} panicked")))?;
            if declined(&got) && !matches!(want, Outcome::Error(..)) {
                declines.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            prop_assert!(
                agree(&want, &got, c.term_scale()),
                "{dev}: {got:?}\ncpu: {want:?}"
            );
        }
        Ok(())
    });
    println!(
        "fuzz safe API: {cases} inputs in {:.0} s on cpu + {} devices, {} declined as \
         unsupported, no panic, no difference",
        start.elapsed().as_secs_f64(),
        devices.len(),
        declines.load(Ordering::Relaxed)
    );
}

/// A random descriptor for one of the gather's four tensors: sizes (negative too), strides,
/// dtype codes/bits/lanes, device, byte offset, null pointers.
#[derive(Clone, Debug)]
struct Desc {
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    dtype: (u8, u8, u16),
    device: i32,
    offset: u64,
    null_data: bool,
}

fn desc(base: Vec<i64>, dtype: (u8, u8, u16)) -> impl Strategy<Value = Desc> {
    let rank = base.len();
    (
        Just(base),
        prop_oneof![8 => Just(None), 1 => (0..rank, -3i64..6).prop_map(Some)],
        prop_oneof![6 => Just(None), 1 => proptest::collection::vec(-2i64..9, rank).prop_map(Some)],
        prop_oneof![10 => Just(dtype), 1 => (0u8..4, prop_oneof![Just(8u8), Just(16), Just(32), Just(64)], 1u16..3)],
        prop_oneof![10 => Just(DL_CPU), 1 => 0i32..16],
        prop_oneof![10 => Just(0u64), 1 => 1u64..9],
        prop::bool::weighted(0.03),
    )
        .prop_map(|(mut shape, edit, strides, dtype, device, offset, null_data)| {
            if let Some((d, v)) = edit {
                shape[d] = v;
            }
            Desc {
                shape,
                strides,
                dtype,
                device,
                offset,
                null_data,
            }
        })
}

#[test]
fn c_abi_descriptors_never_panic_and_valid_ones_match_the_reference() {
    let start = Instant::now();
    let statuses: [AtomicU64; 9] = Default::default();
    let u32t = (1u8, 32u8, 1u16);
    let f32t = (DL_FLOAT, 32u8, 1u16);
    let strategy = (1i64..4, 1i64..4, 1i64..5, 1i64..3).prop_flat_map(move |(t, m, n, dv)| {
        (
            desc(vec![t, m], u32t),
            desc(vec![t, m, 1], f32t),
            desc(vec![n, dv], f32t),
            desc(vec![t, dv], f32t),
            proptest::collection::vec(0u32..6, 64),
            proptest::collection::vec(value(), 64),
        )
    });
    fuzz(&strategy, |(r, w, t, o, rows, floats)| {
        // Backing memory larger than any descriptor here can name (three dimensions of at
        // most 5, 8-byte elements, an 8-byte offset: 1,008 bytes), so every descriptor the
        // ABI accepts is in bounds of its memory.
        const WORDS: usize = 1024;
        let cycle = |v: &[f32]| -> Vec<f32> { v.iter().copied().cycle().take(WORDS).collect() };
        let mut mem_rows: Vec<u32> = rows.iter().copied().cycle().take(WORDS).collect();
        let mut mem_w = cycle(&floats);
        let mut mem_t = cycle(&floats);
        let mut mem_o = vec![0f32; WORDS];
        let make = |d: &Desc, data: *mut u8, shape: &[i64], strides: Option<&Vec<i64>>| DLTensor {
            data: if d.null_data {
                std::ptr::null_mut()
            } else {
                data.cast()
            },
            device: DLDevice {
                device_type: d.device,
                device_id: 0,
            },
            ndim: shape.len() as i32,
            dtype: DLDataType {
                code: d.dtype.0,
                bits: d.dtype.1,
                lanes: d.dtype.2,
            },
            shape: shape.as_ptr(),
            strides: strides.map_or(std::ptr::null(), |s| s.as_ptr()),
            byte_offset: d.offset,
        };
        let tr = make(
            &r,
            mem_rows.as_mut_ptr().cast(),
            &r.shape,
            r.strides.as_ref(),
        );
        let tw = make(&w, mem_w.as_mut_ptr().cast(), &w.shape, w.strides.as_ref());
        let tt = make(&t, mem_t.as_mut_ptr().cast(), &t.shape, t.strides.as_ref());
        let mut to = make(&o, mem_o.as_mut_ptr().cast(), &o.shape, o.strides.as_ref());
        let status = unsafe {
            ultramem_weighted_gather_forward(&tr, &tw, &tt, &mut to, std::ptr::null_mut())
        };
        let message = unsafe { std::ffi::CStr::from_ptr(ultramem_last_error()) }
            .to_string_lossy()
            .into_owned();
        prop_assert!(
            (0..=8).contains(&status) && status != ULTRAMEM_ERR_INTERNAL,
            "status {status}: {message}"
        );
        statuses[status as usize].fetch_add(1, Ordering::Relaxed);
        // The reference below reads the memory as the default dtypes from its start.
        let as_built = [&r, &w, &t, &o].iter().all(|d| d.offset == 0)
            && r.dtype == u32t
            && [&w, &t, &o].iter().all(|d| d.dtype == f32t);
        if status == ULTRAMEM_OK && as_built {
            // Valid: the reference on the same memory.
            let (tk, mk, nk, dvk) = (r.shape[0], r.shape[1], t.shape[0], t.shape[1]);
            let cores = w.shape[2];
            let d = WeightedGatherDims {
                tokens: tk as usize,
                slots: mk as usize,
                cores: cores as usize,
                table_rows: nk as usize,
                dv: dvk as usize,
            };
            let want = ultramem::reference::weighted_gather::forward(
                &d,
                &mem_rows[..(tk * mk) as usize],
                &mem_w[..(tk * mk * cores) as usize],
                &mem_t[..(nk * dvk) as usize],
            );
            let want: Vec<f32> = want.unwrap().iter().map(|&x| x as f32).collect();
            // The host path is the reference itself: equal to the last bit.
            prop_assert!(
                same_floats(&mem_o[..want.len()], &want, 0.0),
                "{mem_o:?} vs {want:?}"
            );
        }
        Ok(())
    });
    let counts: Vec<u64> = statuses.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    println!(
        "fuzz C ABI descriptors: {} calls in {:.0} s, statuses 0..8 = {counts:?}, no panic, valid \
         calls equal to the reference",
        counts.iter().sum::<u64>(),
        start.elapsed().as_secs_f64()
    );
}
