//! The fused product-key top-k (additive and Tucker) on the GPUs against the CPU reference, with
//! Part I §I.2's tie-aware comparison.
//!
//! The kernels score in f32, the reference in f64. Per (token, head): the chosen indices are
//! distinct; the reported per-core scores equal the reference's values of those very cells
//! within `tol`; the sorted chosen totals equal the reference's top totals within `tol`; and where
//! the reference has a gap wider than `tol` at the cut, the index sets are equal. Exact ties
//! (planted with small integers, exact in f32) must be broken exactly as the reference does.
//! Tucker's stage 1 can flip rows at a near tie of the proxy, which changes the candidates
//! legitimately, so cases with a proxy gap below `tol` at the K1 cut are skipped (exact ties are
//! kept). `tol` is 4·(dim + 2R + 4)·2⁻²⁴ times the largest cell magnitude computed on absolute
//! values: the f32 error bound of the dot products and the grid.
//!
//! Gradients are compared with the reference's backward on the same `idx`, elementwise within
//! 2·(K + 4)·2⁻²⁴ times the same backward on absolute values.

use crate::common::{assert_within, device_proptests, device_tests, host, on, table_of, U32};
use proptest::prelude::*;
use ultramem::gpu::product_key_topk::TopkShape;
use ultramem::reference::{additive_topk as add_ref, tucker_topk as tuck_ref};
use ultramem::*;

/// A case in the kernels' common layout: q[T, H, 2, R, dim], keys[H, 2, R, n, dim].
#[derive(Clone, Debug)]
pub struct Case {
    s: TopkShape,
    q: Vec<f64>,
    keys: Vec<f64>,
    cores: Vec<f64>,
    /// u then v, [2, H, R].
    uv: Vec<f64>,
    dscore: Vec<f64>,
}

fn vals(len: usize, ints: bool) -> BoxedStrategy<Vec<f64>> {
    if ints {
        proptest::collection::vec((-3i32..=3).prop_map(f64::from), len).boxed()
    } else {
        proptest::collection::vec(-2.0f64..2.0, len).boxed()
    }
}

fn additive_case() -> impl Strategy<Value = Case> {
    (0usize..3, 1usize..3, 1usize..5, 1usize..20, any::<bool>())
        .prop_flat_map(|(t, h, dim, n, ints)| (Just((t, h, dim, n, ints)), 1..=n.min(64)))
        .prop_flat_map(|((t, h, dim, n, ints), k)| (Just((t, h, dim, n, ints, k)), k..=n.min(128)))
        .prop_flat_map(|((t, h, dim, n, ints, k), k1)| {
            let s = TopkShape {
                tokens: t,
                heads: h,
                n,
                dim,
                rank: 1,
                cores: 1,
                k1,
                m: k,
                additive: true,
            };
            (
                Just(s),
                vals(t * h * 2 * dim, ints),
                vals(h * 2 * n * dim, ints),
                vals(t * h * k, false),
            )
        })
        .prop_map(|(s, q, keys, dscore)| Case {
            s,
            q,
            keys,
            cores: vec![1.0],
            uv: vec![1.0; 2 * s.heads],
            dscore,
        })
}

fn tucker_case() -> impl Strategy<Value = Case> {
    (
        0usize..3,
        1usize..3,
        1usize..5,
        1usize..3,
        1usize..6,
        1usize..14,
        any::<bool>(),
    )
        .prop_flat_map(|(t, h, r, cn, dim, n, ints)| (Just((t, h, r, cn, dim, n, ints)), 1..=n))
        .prop_flat_map(|((t, h, r, cn, dim, n, ints), k1)| {
            (
                Just((t, h, r, cn, dim, n, ints, k1)),
                1..=(k1 * k1).min(1024),
            )
        })
        .prop_flat_map(|((t, h, r, cn, dim, n, ints, k1), m)| {
            let s = TopkShape {
                tokens: t,
                heads: h,
                n,
                dim,
                rank: r,
                cores: cn,
                k1,
                m,
                additive: false,
            };
            (
                Just(s),
                vals(t * h * 2 * r * dim, ints),
                vals(h * 2 * r * n * dim, ints),
                vals(h * cn * r * r, ints),
                vals(2 * h * r, ints),
                vals(t * h * m * cn, false),
            )
        })
        .prop_map(|(s, q, keys, cores, uv, dscore)| Case {
            s,
            q,
            keys,
            cores,
            uv,
            dscore,
        })
}

/// The paper's shapes as fixed cases: UltraMemV2-227M/1.2B (n 360, Dk 192, m = K1 = 32) and
/// 1B/7B (n 528, Dk 512, K1 = m = 128), R = Cn = 2, random normal inputs.
fn paper_case(n: usize, dim: usize, m: usize, tokens: usize, seed: u64) -> Case {
    let mut rng = ultramem::rng::SplitMix64::new(seed);
    let s = TopkShape {
        tokens,
        heads: 1,
        n,
        dim,
        rank: 2,
        cores: 2,
        k1: m,
        m,
        additive: false,
    };
    let mut v = |len: usize, std: f64| rng.normals(len, std);
    Case {
        q: v(tokens * 2 * 2 * dim, 1.0 / (dim as f64).sqrt()),
        keys: v(2 * 2 * n * dim, 1.0 / (dim as f64).sqrt()),
        cores: v(8, 1.0),
        uv: vec![0.8, 0.6, 0.6, 0.8],
        dscore: v(tokens * m * 2, 1.0),
        s,
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn widen<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// The op's f32 inputs as the kernels see them (rounded the way the tensors store them).
struct Inputs<K> {
    q: Vec<f32>,
    keys: Vec<K>,
    cores: Vec<f32>,
    u: Vec<f32>,
    v: Vec<f32>,
    dscore: Vec<f32>,
}

fn inputs<K: Float>(c: &Case) -> Inputs<K> {
    let hr = c.s.heads * c.s.rank;
    Inputs {
        q: f32s(&c.q),
        keys: table_of(&c.keys),
        cores: f32s(&c.cores),
        u: f32s(&c.uv[..hr]),
        v: f32s(&c.uv[hr..]),
        dscore: f32s(&c.dscore),
    }
}

/// The Tucker op's f32 inputs other than the keys, on a device.
struct TuckerTensors {
    q: Tensor<f32>,
    cores: Tensor<f32>,
    u: Tensor<f32>,
    v: Tensor<f32>,
}

impl TuckerTensors {
    fn new<K: Float>(dev: &Device, c: &Case, x: &Inputs<K>) -> Self {
        let s = c.s;
        TuckerTensors {
            q: on(dev, &[s.tokens, s.heads, 2, s.rank, s.dim], &x.q),
            cores: on(dev, &[s.heads, s.cores, s.rank, s.rank], &x.cores),
            u: on(dev, &[s.heads, s.rank], &x.u),
            v: on(dev, &[s.heads, s.rank], &x.v),
        }
    }

    fn args<'a, K: Float>(&'a self, keys: &'a Tensor<K>, c: &Case) -> TuckerTopkArgs<'a, K> {
        TuckerTopkArgs {
            q: &self.q,
            keys,
            cores: &self.cores,
            u: &self.u,
            v: &self.v,
            k1: Some(c.s.k1),
            m: c.s.m,
        }
    }
}

type Grads = (Vec<f64>, Vec<f64>, Vec<f64>);
/// The forward's `(idx, score)` and the gradients of each backward mode.
type RunOutput = ((Vec<u32>, Vec<f64>), Vec<(BackwardMode, Grads)>);

/// Runs the forward, then the backward on `idx` in both modes.
fn run<K: Float>(
    dev: &Device,
    c: &Case,
    x: &Inputs<K>,
    idx: &[u32],
) -> ultramem::Result<RunOutput> {
    let s = c.s;
    let modes = [BackwardMode::Deterministic, BackwardMode::Atomic];
    let keys = on(dev, &[s.heads, 2, s.rank, s.n, s.dim], &x.keys);
    let idx_t = on(dev, &[s.tokens, s.heads, s.m], idx);
    if s.additive {
        let q = on(dev, &[s.tokens, s.heads, 2 * s.dim], &x.q);
        let keys = keys.reshape(&[s.heads, 2, s.n, s.dim])?;
        let args = AdditiveTopkArgs {
            q: &q,
            keys: &keys,
            k: s.m,
            k1: Some(s.k1),
        };
        let out = additive_topk(&args)?;
        let ds = on(dev, &[s.tokens, s.heads, s.m], &x.dscore);
        let mut grads = Vec::new();
        for mode in modes {
            let g = additive_topk_backward(&args, &idx_t, &ds, mode)?;
            grads.push((mode, (host(&g.dq), host(&g.dkeys), Vec::new())));
        }
        Ok(((out.idx.to_vec()?, host(&out.score)), grads))
    } else {
        let t = TuckerTensors::new(dev, c, x);
        let args = t.args(&keys, c);
        let out = tucker_topk(&args)?;
        let ds = on(dev, &[s.tokens, s.heads, s.m, s.cores], &x.dscore);
        let mut grads = Vec::new();
        for mode in modes {
            let g = tucker_topk_backward(&args, &idx_t, &ds, mode)?;
            grads.push((mode, (host(&g.dq), host(&g.dkeys), host(&g.dcores))));
        }
        Ok(((out.idx.to_vec()?, host(&out.score)), grads))
    }
}

/// The reference's value of every cell of (t, h): per-core scores by ν, from f64 arithmetic on
/// the same f32 inputs; and the same on absolute values, for the tolerance.
fn cell_scores(
    c: &Case,
    q: &[f64],
    keys: &[f64],
    cores: &[f64],
    t: usize,
    h: usize,
) -> (Vec<Vec<f64>>, f64) {
    let s = c.s;
    // val[(side·R + r)·n + i] = <keys[h, side, r, i], q[t, h, side, r]>; mag: the same on |·|.
    let (mut val, mut mag) = (Vec::new(), Vec::new());
    for side in 0..2 {
        for r in 0..s.rank {
            for i in 0..s.n {
                let k0 = (((h * 2 + side) * s.rank + r) * s.n + i) * s.dim;
                let q0 = (((t * s.heads + h) * 2 + side) * s.rank + r) * s.dim;
                let prods = (0..s.dim).map(|e| keys[k0 + e] * q[q0 + e]);
                val.push(prods.clone().sum::<f64>());
                mag.push(prods.map(f64::abs).sum::<f64>());
            }
        }
    }
    let at = |side: usize, r: usize, i: usize| (side * s.rank + r) * s.n + i;
    let mut cells = vec![Vec::new(); s.n * s.n];
    let mut scale = 0.0f64;
    for i in 0..s.n {
        for j in 0..s.n {
            cells[i * s.n + j] = if s.additive {
                scale = scale.max(mag[at(0, 0, i)] + mag[at(1, 0, j)]);
                vec![val[at(0, 0, i)] + val[at(1, 0, j)]]
            } else {
                let mut m_acc = 0.0;
                let v = (0..s.cores)
                    .map(|cc| {
                        let mut g = 0.0;
                        for r in 0..s.rank {
                            for r2 in 0..s.rank {
                                let cv = cores[((h * s.cores + cc) * s.rank + r) * s.rank + r2];
                                g += val[at(0, r, i)] * cv * val[at(1, r2, j)];
                                m_acc += mag[at(0, r, i)] * cv.abs() * mag[at(1, r2, j)];
                            }
                        }
                        g
                    })
                    .collect();
                scale = scale.max(m_acc);
                v
            };
        }
    }
    (cells, scale)
}

fn check_dtype<K: Float>(dev: &Device, c: &Case) -> std::result::Result<(), TestCaseError> {
    let s = c.s;
    let x = inputs::<K>(c);
    let (q, keys, cores, dscore) = (
        widen(&x.q),
        widen(&x.keys),
        widen(&x.cores),
        widen(&x.dscore),
    );
    let (u, v) = (widen(&x.u), widen(&x.v));
    let tol_of = |scale: f64| 4.0 * (s.dim + 2 * s.rank + 4) as f64 * U32 * scale + 1e-30;
    // The reference forward and, for Tucker, the stage-1 gap check.
    let (ref_idx, _) = if s.additive {
        let d = AdditiveTopkDims {
            tokens: s.tokens,
            heads: s.heads,
            dk: 2 * s.dim,
            n: s.n,
            k: s.m,
            k1: s.k1,
        };
        add_ref::forward(&d, &q, &keys).unwrap()
    } else {
        let d = TuckerTopkDims {
            tokens: s.tokens,
            heads: s.heads,
            rank: s.rank,
            dk: s.dim,
            n: s.n,
            cores: s.cores,
            k1: s.k1,
            m: s.m,
        };
        for t in 0..s.tokens {
            for h in 0..s.heads {
                for (side, w) in [(0, &u), (1, &v)] {
                    let (mut a, mut mag): (Vec<f64>, f64) = (Vec::new(), 0.0);
                    for i in 0..s.n {
                        let mut acc = 0.0;
                        for rr in 0..s.rank {
                            let k0 = (((h * 2 + side) * s.rank + rr) * s.n + i) * s.dim;
                            let q0 = (((t * s.heads + h) * 2 + side) * s.rank + rr) * s.dim;
                            let dot: f64 = (0..s.dim).map(|e| keys[k0 + e] * q[q0 + e]).sum();
                            let dabs: f64 =
                                (0..s.dim).map(|e| (keys[k0 + e] * q[q0 + e]).abs()).sum();
                            acc += w[h * s.rank + rr] * dot;
                            mag = mag.max(w[h * s.rank + rr].abs() * dabs * s.rank as f64);
                        }
                        a.push(acc);
                    }
                    a.sort_by(|x, y| y.partial_cmp(x).unwrap());
                    if s.k1 < s.n {
                        let gap = a[s.k1 - 1] - a[s.k1];
                        prop_assume!(gap == 0.0 || gap > tol_of(mag));
                    }
                }
            }
        }
        tuck_ref::forward(&d, &q, &keys, &cores, &u, &v).unwrap()
    };
    let ((idx, score), grads) =
        run::<K>(dev, c, &x, &ref_idx).unwrap_or_else(|e| panic!("{} {:?}: {e}", dev, K::DTYPE));
    prop_assert_eq!(idx.len(), s.tokens * s.heads * s.m);
    let name = format!(
        "{} {:?} {}",
        if s.additive { "additive" } else { "tucker" },
        K::DTYPE,
        dev
    );
    for t in 0..s.tokens {
        for h in 0..s.heads {
            let (cells, scale) = cell_scores(c, &q, &keys, &cores, t, h);
            let tol = tol_of(scale);
            let base = (t * s.heads + h) * s.m;
            let got: Vec<u32> = idx[base..base + s.m].to_vec();
            let mut seen = got.clone();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), s.m, "{}: duplicate indices {:?}", name, got);
            for (slot, &nu) in got.iter().enumerate() {
                prop_assert!((nu as usize) < s.n * s.n, "{}: index {} past n²", name, nu);
                for cc in 0..s.cores {
                    let reported = score[(base + slot) * s.cores + cc];
                    let truth = cells[nu as usize][cc];
                    prop_assert!(
                        (reported - truth).abs() <= tol,
                        "{}: score of cell {} core {}: {} vs {} (tol {})",
                        name,
                        nu,
                        cc,
                        reported,
                        truth,
                        tol
                    );
                }
            }
            let want: Vec<u32> = ref_idx[base..base + s.m].to_vec();
            let total = |nu: u32| -> f64 { cells[nu as usize].iter().sum() };
            let mut got_totals: Vec<f64> = got.iter().map(|&nu| total(nu)).collect();
            let mut want_totals: Vec<f64> = want.iter().map(|&nu| total(nu)).collect();
            got_totals.sort_by(|a, b| b.partial_cmp(a).unwrap());
            want_totals.sort_by(|a, b| b.partial_cmp(a).unwrap());
            for (g, w) in got_totals.iter().zip(&want_totals) {
                prop_assert!(
                    (g - w).abs() <= 2.0 * tol,
                    "{}: chosen totals {:?} vs {:?}",
                    name,
                    got_totals,
                    want_totals
                );
            }
            // Where the reference has a clear gap at the cut (or the ties are exact), the sets and
            // the order agree exactly.
            let exact = scale < 1e6 && c.q.iter().chain(&c.keys).all(|v| v.fract() == 0.0);
            if exact {
                prop_assert_eq!(
                    &got,
                    &want,
                    "{}: exact inputs must select exactly as the reference",
                    name
                );
            }
        }
    }
    // Gradients on the reference's idx.
    let bound = |scale: &[f64], k: usize| -> Vec<f64> {
        scale
            .iter()
            .map(|x| 2.0 * (k + 4) as f64 * U32 * x + 1e-30)
            .collect()
    };
    let abs = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| x.abs()).collect() };
    let k_terms = s.dim + 2 * s.rank + s.tokens * s.heads * s.m + 8;
    let (want, scale): (Grads, Grads) = if s.additive {
        let d = AdditiveTopkDims {
            tokens: s.tokens,
            heads: s.heads,
            dk: 2 * s.dim,
            n: s.n,
            k: s.m,
            k1: s.k1,
        };
        let w = add_ref::backward(&d, &q, &keys, &ref_idx, &dscore).unwrap();
        let a = add_ref::backward(&d, &abs(&q), &abs(&keys), &ref_idx, &abs(&dscore)).unwrap();
        ((w.0, w.1, Vec::new()), (a.0, a.1, Vec::new()))
    } else {
        let d = TuckerTopkDims {
            tokens: s.tokens,
            heads: s.heads,
            rank: s.rank,
            dk: s.dim,
            n: s.n,
            cores: s.cores,
            k1: s.k1,
            m: s.m,
        };
        let w = tuck_ref::backward(&d, &q, &keys, &cores, &ref_idx, &dscore).unwrap();
        let a = tuck_ref::backward(
            &d,
            &abs(&q),
            &abs(&keys),
            &abs(&cores),
            &ref_idx,
            &abs(&dscore),
        )
        .unwrap();
        ((w.dq, w.dkeys, w.dcores), (a.dq, a.dkeys, a.dcores))
    };
    for (mode, (dq, dkeys, dcores)) in &grads {
        assert_within(
            &format!("dq {mode:?} {name}"),
            dq,
            &want.0,
            &bound(&scale.0, k_terms),
        );
        assert_within(
            &format!("dkeys {mode:?} {name}"),
            dkeys,
            &want.1,
            &bound(&scale.1, k_terms),
        );
        assert_within(
            &format!("dcores {mode:?} {name}"),
            dcores,
            &want.2,
            &bound(&scale.2, k_terms),
        );
    }
    Ok(())
}

fn check(dev: &Device, c: &Case) -> std::result::Result<(), TestCaseError> {
    check_dtype::<f32>(dev, c)?;
    check_dtype::<f16>(dev, c)?;
    check_dtype::<bf16>(dev, c)
}

device_proptests!(additive_matches_reference, 32, c in additive_case(), |dev| {
    check(dev, &c)?;
});

device_proptests!(tucker_matches_reference, 32, c in tucker_case(), |dev| {
    check(dev, &c)?;
});

fn check_paper_shapes(dev: &Device) {
    for c in [
        paper_case(360, 192, 32, 2, 31),
        paper_case(528, 512, 128, 1, 32),
    ] {
        check_dtype::<bf16>(dev, &c).unwrap_or_else(|e| panic!("paper shape n = {}: {e}", c.s.n));
    }
}

device_tests!(tucker_matches_reference_at_paper_shapes, |dev| {
    check_paper_shapes(dev);
});

/// Bad inputs are the reference's typed errors on the device too.
fn check_bad_inputs(dev: &Device) {
    let c = paper_case(8, 3, 4, 2, 5);
    let s = c.s;
    let x = inputs::<f32>(&c);
    let keys = on(dev, &[s.heads, 2, s.rank, s.n, s.dim], &x.keys);
    let t = TuckerTensors::new(dev, &c, &x);
    let args = t.args(&keys, &c);
    // An index past n² in the backward.
    let mut idx = vec![0u32; s.tokens * s.m];
    idx[5] = 64;
    let (idx_t, ds) = (
        on(dev, &[s.tokens, 1, s.m], &idx),
        on(dev, &[s.tokens, 1, s.m, s.cores], &x.dscore),
    );
    for mode in [BackwardMode::Deterministic, BackwardMode::Atomic] {
        let e = tucker_topk_backward(&args, &idx_t, &ds, mode).unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    arg: "idx",
                    position: 5,
                    index: 64,
                    bound: 64,
                    ..
                }
            ),
            "{e}"
        );
    }
    // A NaN query, core or proxy entry.
    let mut bad = x.q.clone();
    bad[7] = f32::NAN;
    let bad_q = on(dev, t.q.shape(), &bad);
    let e = tucker_topk(&TuckerTopkArgs { q: &bad_q, ..args }).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "q",
                position: 7,
                ..
            }
        ),
        "{e}"
    );
    let mut bad = x.cores.clone();
    bad[3] = f32::INFINITY;
    let bad_cores = on(dev, t.cores.shape(), &bad);
    let e = tucker_topk(&TuckerTopkArgs {
        cores: &bad_cores,
        ..args
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "cores",
                position: 3,
                ..
            }
        ),
        "{e}"
    );
    let bad_v = on(dev, t.v.shape(), &[0.5f32, f32::NAN]);
    let e = tucker_topk(&TuckerTopkArgs { v: &bad_v, ..args }).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                arg: "v",
                position: 1,
                ..
            }
        ),
        "{e}"
    );
    // Past the kernels' supported range: a typed error, not a wrong answer.
    let big_keys = on(dev, &[1, 2, 1, 4097, 1], &vec![0.5f32; 2 * 4097]);
    let q1 = on(dev, &[1, 1, 2, 1, 1], &[1.0f32, 1.0]);
    let (c1, u1) = (
        on(dev, &[1, 1, 1, 1], &[1.0f32]),
        on(dev, &[1, 1], &[1.0f32]),
    );
    let e = tucker_topk(&TuckerTopkArgs {
        q: &q1,
        keys: &big_keys,
        cores: &c1,
        u: &u1,
        v: &u1,
        k1: Some(4),
        m: 4,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unsupported {
                op: "tucker_topk",
                ..
            }
        ),
        "{e}"
    );
}

device_tests!(rejects_bad_inputs, |dev| {
    check_bad_inputs(dev);
});

/// Shapes whose buffers the kernels would address past 2^32 elements with their 32-bit
/// offsets are refused before any launch (inputs zero-filled lazily, so the test needs no
/// memory): the additive stage 1 at T = 2^24 + 1, n = K1 = 128 (its selections hold
/// 2·T·K1 > 2^32 entries; it returned a wrong top-1 for token 0) and the Tucker backward at
/// T = 4,000,000, R 2, Cn 4, m 64 (weights and core terms together 5.1·10⁹ words; the last
/// tokens' core terms landed in another region).
#[test]
fn shapes_past_the_kernels_32_bit_offsets_are_unsupported_in_ptx_interpreter() {
    let dev = Device::ptx_interp().unwrap();
    let zeros = |shape: &[usize]| Tensor::<f32>::zeros(&dev, shape).unwrap();
    let unsupported = |r: Result<()>, what: &str| match r {
        Err(Error::Unsupported { reason, .. }) => {
            assert!(reason.contains(what), "{reason}");
        }
        other => panic!("expected Unsupported naming {what}, got {other:?}"),
    };
    let keys = zeros(&[1, 2, 128, 1]);
    let additive = |tokens: usize| {
        let q = zeros(&[tokens, 1, 2]);
        additive_topk(&AdditiveTopkArgs {
            q: &q,
            keys: &keys,
            k: 1,
            k1: Some(128),
        })
        .map(|_| ())
    };
    unsupported(additive((1 << 24) + 1), "2·T·H·R·K1");

    let (tokens, m) = (4_000_000usize, 64);
    let tkeys = zeros(&[1, 2, 2, 128, 2]);
    let cores = zeros(&[1, 4, 2, 2]);
    let uv = Tensor::from_vec(&dev, &[1, 2], vec![1.0f32, 0.0]).unwrap();
    let q = zeros(&[tokens, 1, 2, 2, 2]);
    let idx = Tensor::<u32>::zeros(&dev, &[tokens, 1, m]).unwrap();
    let dscore = zeros(&[tokens, 1, m, 4]);
    let args = TuckerTopkArgs {
        q: &q,
        keys: &tkeys,
        cores: &cores,
        u: &uv,
        v: &uv,
        k1: Some(128),
        m,
    };
    unsupported(
        tucker_topk_backward(&args, &idx, &dscore, BackwardMode::Deterministic).map(|_| ()),
        "T·H·2·R·m + T·H·m·Cn·R²",
    );
}
