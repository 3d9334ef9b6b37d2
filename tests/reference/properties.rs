//! Properties of the reference on random inputs drawn by proptest: odd and edge sizes, `T = 0`,
//! `k` from 1 to its maximum, and small-integer inputs that plant many exact ties (integer
//! arithmetic in f64 is exact, so brute force and reference must agree bit for bit, tie order
//! included).

use proptest::prelude::*;
use ultramem::reference::{
    additive_topk, index_map, moe_ffn, peer_ffn, score_fn, tucker_topk, weighted_gather,
};
use ultramem::*;

/// `len` values: small integers (planted ties) or continuous ones.
fn values(len: usize, ints: bool) -> impl Strategy<Value = Vec<f64>> {
    let ints_s = proptest::collection::vec((-3i32..=3).prop_map(f64::from), len);
    let floats = proptest::collection::vec(-10.0f64..10.0, len);
    if ints {
        ints_s.boxed()
    } else {
        floats.boxed()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Every candidate of a brute-force search, ranked by the spec's order (written here again, not
/// taken from the crate, so a wrong order in the crate cannot hide): larger score first, ties to
/// the lower index. These tests draw no NaN.
fn ranked(mut all: Vec<(f64, u64)>) -> Vec<(f64, u64)> {
    all.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .expect("no NaN here")
            .then(a.1.cmp(&b.1))
    });
    all
}

#[derive(Debug, Clone)]
struct AdditiveCase {
    d: AdditiveTopkDims,
    q: Vec<f64>,
    keys: Vec<f64>,
}

fn additive_case() -> impl Strategy<Value = AdditiveCase> {
    (0usize..4, 1usize..3, 1usize..4, 1usize..9, any::<bool>())
        .prop_flat_map(|(t, h, half, n, ints)| {
            (
                Just((t, h, half, n)),
                1..=n,
                values(t * h * 2 * half, ints),
                values(h * 2 * n * half, ints),
            )
        })
        .prop_flat_map(|((t, h, half, n), k, q, keys)| (Just((t, h, half, n, k, q, keys)), k..=n))
        .prop_map(|((tokens, heads, half, n, k, q, keys), k1)| AdditiveCase {
            d: AdditiveTopkDims {
                tokens,
                heads,
                dk: 2 * half,
                n,
                k,
                k1,
            },
            q,
            keys,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn additive_topk_equals_brute_force_over_the_whole_grid(c in additive_case()) {
        let d = c.d;
        let half = d.dk / 2;
        let (idx, score) = additive_topk::forward(&d, &c.q, &c.keys).unwrap();
        prop_assert_eq!(idx.len(), d.tokens * d.heads * d.k);
        for th in 0..d.tokens * d.heads {
            let h = th % d.heads;
            let s = |side: usize, i: usize| {
                let key = ((h * 2 + side) * d.n + i) * half;
                dot(&c.keys[key..key + half], &c.q[th * d.dk + side * half..th * d.dk + (side + 1) * half])
            };
            let all = (0..d.n).flat_map(|i| (0..d.n).map(move |j| (i, j)))
                .map(|(i, j)| (s(0, i) + s(1, j), (i * d.n + j) as u64)).collect();
            let best = ranked(all);
            for (p, &(want_score, want_idx)) in best.iter().take(d.k).enumerate() {
                // Exact: the two-stage search is exact for K1 >= k, ties and float rounding included.
                prop_assert_eq!(u64::from(idx[th * d.k + p]), want_idx);
                prop_assert_eq!(score[th * d.k + p], want_score);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct TuckerCase {
    d: TuckerTopkDims,
    q: Vec<f64>,
    keys: Vec<f64>,
    cores: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
}

fn tucker_case(full_grid: bool) -> impl Strategy<Value = TuckerCase> {
    (
        0usize..3,
        1usize..3,
        1usize..4,
        1usize..3,
        1usize..4,
        1usize..7,
    )
        .prop_flat_map(move |(t, h, r, cn, dk, n)| {
            let k1 = if full_grid {
                Just(n).boxed()
            } else {
                (1..=n).boxed()
            };
            (Just((t, h, r, cn, dk, n)), k1)
        })
        .prop_flat_map(|((t, h, r, cn, dk, n), k1)| {
            (
                Just((t, h, r, cn, dk, n, k1)),
                1..=k1 * k1,
                values(t * h * 2 * r * dk, true),
                values(h * 2 * r * n * dk, true),
                values(h * cn * r * r, true),
                values(2 * h * r, true),
            )
        })
        .prop_map(
            |((tokens, heads, rank, cores, dk, n, k1), m, q, keys, c, uv)| TuckerCase {
                d: TuckerTopkDims {
                    tokens,
                    heads,
                    rank,
                    dk,
                    n,
                    cores,
                    k1,
                    m,
                },
                q,
                keys,
                cores: c,
                u: uv[..heads * rank].to_vec(),
                v: uv[heads * rank..].to_vec(),
            },
        )
}

/// The test's own scoring: S[side][r][i] and the per-core grid values G_c(i, j).
struct TuckerBrute<'a> {
    c: &'a TuckerCase,
    th: usize,
}

impl TuckerBrute<'_> {
    fn s(&self, side: usize, r: usize, i: usize) -> f64 {
        let d = &self.c.d;
        let h = self.th % d.heads;
        let q0 = ((self.th * 2 + side) * d.rank + r) * d.dk;
        let k0 = (((h * 2 + side) * d.rank + r) * d.n + i) * d.dk;
        dot(&self.c.keys[k0..k0 + d.dk], &self.c.q[q0..q0 + d.dk])
    }
    fn g(&self, core: usize, i: usize, j: usize) -> f64 {
        let d = &self.c.d;
        let h = self.th % d.heads;
        let mut total = 0.0;
        for r in 0..d.rank {
            let mut inner = 0.0;
            for r2 in 0..d.rank {
                inner += self.c.cores[((h * d.cores + core) * d.rank + r) * d.rank + r2]
                    * self.s(1, r2, j);
            }
            total += self.s(0, r, i) * inner;
        }
        total
    }
    fn proxy(&self, side: usize, i: usize) -> f64 {
        let d = &self.c.d;
        let h = self.th % d.heads;
        let w = if side == 0 { &self.c.u } else { &self.c.v };
        (0..d.rank)
            .map(|r| w[h * d.rank + r] * self.s(side, r, i))
            .sum()
    }
}

fn check_tucker(c: &TuckerCase) -> std::result::Result<(), TestCaseError> {
    let d = c.d;
    let (idx, score) = tucker_topk::forward(&d, &c.q, &c.keys, &c.cores, &c.u, &c.v).unwrap();
    prop_assert_eq!(idx.len(), d.tokens * d.heads * d.m);
    for th in 0..d.tokens * d.heads {
        let b = TuckerBrute { c, th };
        let stage1 = |side: usize| -> Vec<usize> {
            let cands = (0..d.n).map(|i| (b.proxy(side, i), i as u64)).collect();
            ranked(cands)
                .into_iter()
                .take(d.k1)
                .map(|(_, i)| i as usize)
                .collect()
        };
        let (i1, i2) = (stage1(0), stage1(1));
        let all = i1
            .iter()
            .flat_map(|&i| i2.iter().map(move |&j| (i, j)))
            .map(|(i, j)| {
                (
                    (0..d.cores).map(|cc| b.g(cc, i, j)).sum::<f64>(),
                    (i * d.n + j) as u64,
                )
            })
            .collect();
        let best = ranked(all);
        for (p, &(_, want_idx)) in best.iter().take(d.m).enumerate() {
            let slot = th * d.m + p;
            let nu = want_idx as usize;
            prop_assert_eq!(u64::from(idx[slot]), want_idx);
            for cc in 0..d.cores {
                prop_assert_eq!(score[slot * d.cores + cc], b.g(cc, nu / d.n, nu % d.n));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tucker_topk_with_full_stage_one_equals_brute_force_over_the_grid(c in tucker_case(true)) {
        check_tucker(&c)?;
    }

    #[test]
    fn tucker_topk_equals_brute_force_over_the_stage_one_grid(c in tucker_case(false)) {
        check_tucker(&c)?;
    }
}

fn gather_case() -> impl Strategy<Value = (WeightedGatherDims, Vec<u32>, Vec<f64>, Vec<f64>)> {
    (0usize..4, 1usize..6, 1usize..4, 1usize..7, 1usize..4).prop_flat_map(|(t, m, cn, n, width)| {
        let d = WeightedGatherDims {
            tokens: t,
            slots: m,
            cores: cn,
            table_rows: n,
            dv: cn * width,
        };
        (
            Just(d),
            proptest::collection::vec(0..n as u32, t * m),
            values(t * m * cn, false),
            values(n * cn * width, false),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn weighted_gather_equals_a_dense_one_hot_product((d, rows, w, table) in gather_case()) {
        let out = weighted_gather::forward(&d, &rows, &w, &table).unwrap();
        let width = d.dv / d.cores;
        for t in 0..d.tokens {
            for c in 0..d.cores {
                // A_c[t, r] = Σ_k w[t,k,c]·[rows[t,k] = r]; out[t, slice c] = A_c[t] · table[:, slice c].
                let a: Vec<f64> = (0..d.table_rows)
                    .map(|r| (0..d.slots).filter(|&k| rows[t * d.slots + k] as usize == r)
                        .map(|k| w[(t * d.slots + k) * d.cores + c]).sum())
                    .collect();
                for e in 0..width {
                    let col = c * width + e;
                    let want: f64 = (0..d.table_rows).map(|r| a[r] * table[r * d.dv + col]).sum();
                    let got = out[t * d.dv + col];
                    prop_assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "t {t} col {col}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn peer_ffn_with_identity_equals_gather_with_weights_s_times_alpha(
        (g, rows, s, up) in gather_case(), dp in 1usize..5, seed in any::<u64>()
    ) {
        let mut rng = ultramem::rng::SplitMix64::new(seed);
        let d = PeerFfnDims { tokens: g.tokens, slots: g.slots, cores: g.cores, table_rows: g.table_rows, dp, dv: g.dv };
        let z = rng.normals(d.tokens * dp, 1.0);
        let down = rng.normals(d.table_rows * dp, 1.0);
        let out = peer_ffn::forward(&d, Activation::Identity, &rows, &s, &z, &down, &up).unwrap();
        let w: Vec<f64> = (0..rows.len() * d.cores).map(|i| {
            let (slot, t) = (i / d.cores, i / d.cores / d.slots);
            let r = rows[slot] as usize;
            s[i] * dot(&down[r * dp..(r + 1) * dp], &z[t * dp..(t + 1) * dp])
        }).collect();
        let want = weighted_gather::forward(&g, &rows, &w, &up).unwrap();
        for (a, b) in out.iter().zip(&want) {
            prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn softmax_rows_are_probabilities(t in 0usize..3, h in 1usize..3, k in 1usize..6, cn in 1usize..3, seed in any::<u64>()) {
        let d = ScoreFnDims { tokens: t, heads: h, k, cores: cn };
        let x = ultramem::rng::SplitMix64::new(seed).normals(t * h * k * cn, 30.0);
        let y = score_fn::forward(&d, ScoreFn::Softmax, &x).unwrap();
        for g in 0..t * h {
            for c in 0..cn {
                let sum: f64 = (0..k).map(|s| y[(g * k + s) * cn + c]).sum();
                prop_assert!((sum - 1.0).abs() < 1e-12);
                // Order is kept: a larger score gets a larger weight.
                for s in 1..k {
                    let (a, b) = ((g * k + s - 1) * cn + c, (g * k + s) * cn + c);
                    prop_assert_eq!(x[a] < x[b], y[a] < y[b]);
                }
            }
        }
    }

    #[test]
    fn index_map_with_a_permutation_and_full_window_is_a_bijection(v in 1usize..50, offset_frac in 0.0f64..1.0, seed in any::<u64>()) {
        let perm = ultramem::rng::SplitMix64::new(seed).permutation(v);
        let offset = ((v as f64 * offset_frac) as u64).min(v as u64 - 1);
        let d = IndexMapDims { len: v, shuffle_len: Some(v), map: IndexMapConfig { rows_per_layer: v as u64, offset, total_rows: v as u64 } };
        let all: Vec<u32> = (0..v as u32).collect();
        let mut rows = index_map::forward(&d, &all, Some(&perm)).unwrap();
        for (nu, &r) in rows.iter().enumerate() {
            prop_assert_eq!(u64::from(r), (u64::from(perm[nu]) + offset) % v as u64);
        }
        rows.sort_unstable();
        prop_assert_eq!(rows, all);
    }

    #[test]
    fn moe_ffn_is_the_gate_weighted_sum_of_single_experts(
        t in 0usize..3, dm in 1usize..4, f in 1usize..4, e in 1usize..5, seed in any::<u64>()
    ) {
        let mut rng = ultramem::rng::SplitMix64::new(seed);
        let k = 1 + (seed as usize % e);
        let d = MoeFfnDims { tokens: t, d_model: dm, ffn: f, experts: e, k };
        let x = rng.normals(t * dm, 1.0);
        let logits = rng.normals(t * e, 1.0);
        let w1 = rng.normals(e * f * dm, 1.0);
        let w3 = rng.normals(e * f * dm, 1.0);
        let w2 = rng.normals(e * dm * f, 1.0);
        let (ids, gates) = moe_ffn::route(&d, &logits, GateNorm::Softmax).unwrap();
        let out = moe_ffn::forward(&d, &x, &ids, &gates, &w1, &w3, &w2).unwrap();
        let one = MoeFfnDims { k: 1, ..d };
        let mut want = vec![0.0; t * dm];
        for j in 0..k {
            let ids_j: Vec<u32> = (0..t).map(|tt| ids[tt * k + j]).collect();
            let ones = vec![1.0; t];
            let y = moe_ffn::forward(&one, &x, &ids_j, &ones, &w1, &w3, &w2).unwrap();
            for tt in 0..t {
                for o in 0..dm {
                    want[tt * dm + o] += gates[tt * k + j] * y[tt * dm + o];
                }
            }
        }
        for (a, b) in out.iter().zip(&want) {
            prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }
        // The routed experts are the best k logits, and their gates are softmax probabilities.
        for tt in 0..t {
            let row = &logits[tt * e..(tt + 1) * e];
            let worst_chosen = (0..k).map(|j| row[ids[tt * k + j] as usize]).fold(f64::INFINITY, f64::min);
            let unchosen_best = (0..e as u32).filter(|x| !ids[tt * k..(tt + 1) * k].contains(x))
                .map(|x| row[x as usize]).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(worst_chosen >= unchosen_best);
            let z: f64 = row.iter().map(|l| l.exp()).sum();
            for j in 0..k {
                let p = row[ids[tt * k + j] as usize].exp() / z;
                prop_assert!((gates[tt * k + j] - p).abs() < 1e-12);
            }
        }
    }
}
