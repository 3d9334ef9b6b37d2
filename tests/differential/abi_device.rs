//! The C ABI's GPU path (`ultramem::abi::device`, what the CUDA entry points run over the
//! caller's memory) in the PTX interpreter, against the CPU reference: each op's metas, buffer
//! order, kernel call and copy into the caller's outputs. The kernels themselves are checked
//! in depth by the per-op tests; here a wrong argument order or a dropped output would be an
//! O(1) error, so the bound is loose: f32 rounding of short sums, 1e-4·(1 + |expected|).
//! Outputs are poisoned before the call, so an unwritten element fails.

use crate::common::normals;
use crate::interp::InterpExt;
use ultramem::abi::device;
use ultramem::abi::view::{Elem, Place, View};
use ultramem::interp_backend::{InterpBuffer as Buf, InterpDevice as Interp};
use ultramem::reference;
use ultramem::rng::SplitMix64;
use ultramem::*;

fn rows(seed: u64, len: usize, bound: u32) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..len)
        .map(|_| (r.next_u64() % u64::from(bound)) as u32)
        .collect()
}

/// A tensor of the GPU path: its description, the memory handed over as a buffer.
fn meta(op: &'static str, arg: &'static str, shape: &[usize], elem: Elem) -> View {
    View::described(op, arg, shape, elem, Place::Cuda(0)).unwrap()
}

/// A poisoned output buffer of `len` words (NaN as f32, huge as u32).
fn poisoned(ip: &Interp, len: usize) -> Buf {
    ip.upload_pod(&vec![f32::NAN; len.max(1)])
}

/// `len` int64 values of a buffer (two little-endian words each).
fn read_i64(ip: &Interp, buf: &Buf, len: usize) -> Vec<i64> {
    ip.read_u32(buf, 2 * len)
        .chunks_exact(2)
        .map(|p| i64::from(p[0]) | (i64::from(p[1]) << 32))
        .collect()
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

#[test]
fn gather_and_peer_through_the_abi_device_path() {
    const OP: &str = "weighted_gather";
    let ip = Interp::new();
    let (t, m, cn, n, dv, dp) = (3usize, 4usize, 2usize, 9usize, 6usize, 5usize);
    let r = rows(1, t * m, n as u32);
    let w = normals(2, t * m * cn, 1.0);
    let table = normals(3, n * dv, 1.0);
    let dout = normals(4, t * dv, 1.0);
    let rb = ip.upload_pod(&r);
    let wb = ip.upload_pod(&w);
    let dob = ip.upload_pod(&dout);
    // The table in bf16, read by the kernels as such: the ABI passes its dtype through.
    let table16: Vec<bf16> = table.iter().map(|&x| bf16::from_f32(x)).collect();
    let tb = ip.upload_pod(&table16);
    let metas = [
        meta(OP, "rows", &[t, m], Elem::I32),
        meta(OP, "weights", &[t, m, cn], Elem::F32),
        meta(OP, "table", &[n, dv], Elem::BF16),
        meta(OP, "out", &[t, dv], Elem::F32),
        meta(OP, "dweights", &[t, m, cn], Elem::F32),
        meta(OP, "dtable", &[n, dv], Elem::F32),
        meta(OP, "dout", &[t, dv], Elem::F32),
    ];
    let d = WeightedGatherDims {
        tokens: t,
        slots: m,
        cores: cn,
        table_rows: n,
        dv,
    };
    let mut out = poisoned(&ip, t * dv);
    device::weighted_gather_forward(
        &ip,
        [&metas[0], &metas[1], &metas[2], &metas[3]],
        [&rb, &wb, &tb],
        &mut out,
    )
    .unwrap();
    let want = reference::weighted_gather::forward(&d, &r, &w, &table16).unwrap();
    close("gather out", &ip.read_f32(&out, t * dv), &want);

    let (mut dw, mut dt) = (poisoned(&ip, t * m * cn), poisoned(&ip, n * dv));
    let dmetas = [
        &metas[0], &metas[1], &metas[2], &metas[6], &metas[4], &metas[5],
    ];
    device::weighted_gather_backward(&ip, dmetas, [&rb, &wb, &tb, &dob], [&mut dw, &mut dt])
        .unwrap();
    let (want_dw, want_dt) =
        reference::weighted_gather::backward(&d, &r, &w, &table16, &dout).unwrap();
    close("gather dweights", &ip.read_f32(&dw, t * m * cn), &want_dw);
    close("gather dtable", &ip.read_f32(&dt, n * dv), &want_dt);

    // PEER, f32 tables, gelu.
    const PEER: &str = "peer_ffn";
    let z = normals(5, t * dp, 1.0);
    let down = normals(6, n * dp, 1.0);
    let up = normals(7, n * dv, 1.0);
    let (zb, db, ub) = (ip.upload_pod(&z), ip.upload_pod(&down), ip.upload_pod(&up));
    let pm = [
        meta(PEER, "rows", &[t, m], Elem::U32),
        meta(PEER, "scores", &[t, m, cn], Elem::F32),
        meta(PEER, "z", &[t, dp], Elem::F32),
        meta(PEER, "down", &[n, dp], Elem::F32),
        meta(PEER, "up", &[n, dv], Elem::F32),
        meta(PEER, "out", &[t, dv], Elem::F32),
        meta(PEER, "dz", &[t, dp], Elem::F32),
        meta(PEER, "dscores", &[t, m, cn], Elem::F32),
        meta(PEER, "ddown", &[n, dp], Elem::F32),
        meta(PEER, "dup", &[n, dv], Elem::F32),
    ];
    let pd = PeerFfnDims {
        tokens: t,
        slots: m,
        cores: cn,
        table_rows: n,
        dp,
        dv,
    };
    let act = Activation::Gelu;
    let mut out = poisoned(&ip, t * dv);
    device::peer_ffn_forward(
        &ip,
        [&pm[0], &pm[1], &pm[2], &pm[3], &pm[4], &pm[5]],
        act,
        [&rb, &wb, &zb, &db, &ub],
        &mut out,
    )
    .unwrap();
    let want = reference::peer_ffn::forward(&pd, act, &r, &w, &z, &down, &up).unwrap();
    close("peer out", &ip.read_f32(&out, t * dv), &want);
    let mut outs = [
        poisoned(&ip, t * dp),
        poisoned(&ip, t * m * cn),
        poisoned(&ip, n * dp),
        poisoned(&ip, n * dv),
    ];
    let [o1, o2, o3, o4] = &mut outs;
    device::peer_ffn_backward(
        &ip,
        [
            &pm[0], &pm[1], &pm[2], &pm[3], &pm[4], &pm[5], &pm[6], &pm[7], &pm[8], &pm[9],
        ],
        act,
        [&rb, &wb, &zb, &db, &ub, &dob],
        [o1, o2, o3, o4],
    )
    .unwrap();
    let g = reference::peer_ffn::backward(&pd, act, &r, &w, &z, &down, &up, &dout).unwrap();
    close("peer dz", &ip.read_f32(&outs[0], t * dp), &g.dz);
    close(
        "peer dscores",
        &ip.read_f32(&outs[1], t * m * cn),
        &g.dscores,
    );
    close("peer ddown", &ip.read_f32(&outs[2], n * dp), &g.ddown);
    close("peer dup", &ip.read_f32(&outs[3], n * dv), &g.dup);
}

#[test]
fn topk_index_map_and_score_fn_through_the_abi_device_path() {
    let ip = Interp::new();
    // Additive: T 3, H 2, Dk 6, n 7, k 4 (K1 = k).
    const ADD: &str = "additive_topk";
    let (t, h, dk, n, k) = (3usize, 2usize, 6usize, 7usize, 4usize);
    let q = normals(11, t * h * dk, 1.0);
    let keys = normals(12, h * 2 * n * dk / 2, 1.0);
    let (qb, kb) = (ip.upload_pod(&q), ip.upload_pod(&keys));
    let am = [
        meta(ADD, "q", &[t, h, dk], Elem::F32),
        meta(ADD, "keys", &[h, 2, n, dk / 2], Elem::F32),
        meta(ADD, "idx", &[t, h, k], Elem::I32),
        meta(ADD, "score", &[t, h, k], Elem::F32),
        meta(ADD, "dq", &[t, h, dk], Elem::F32),
        meta(ADD, "dkeys", &[h, 2, n, dk / 2], Elem::F32),
    ];
    let (mut ib, mut sb) = (poisoned(&ip, t * h * k), poisoned(&ip, t * h * k));
    device::additive_topk_forward(
        &ip,
        [&am[0], &am[1], &am[2], &am[3]],
        k,
        None,
        [&qb, &kb],
        [&mut ib, &mut sb],
    )
    .unwrap();
    let ad = AdditiveTopkDims {
        tokens: t,
        heads: h,
        dk,
        n,
        k,
        k1: k,
    };
    let (want_i, want_s) = reference::additive_topk::forward(&ad, &q, &keys).unwrap();
    assert_eq!(ip.read_u32(&ib, t * h * k), want_i, "additive idx");
    close("additive score", &ip.read_f32(&sb, t * h * k), &want_s);
    let dscore = normals(13, t * h * k, 1.0);
    let gb = ip.upload_pod(&dscore);
    let (mut dq, mut dkk) = (poisoned(&ip, q.len()), poisoned(&ip, keys.len()));
    device::additive_topk_backward(
        &ip,
        [&am[0], &am[1], &am[2], &am[3], &am[4], &am[5]],
        [&qb, &kb, &ib, &gb],
        [&mut dq, &mut dkk],
    )
    .unwrap();
    let (want_dq, want_dk) =
        reference::additive_topk::backward(&ad, &q, &keys, &want_i, &dscore).unwrap();
    close("additive dq", &ip.read_f32(&dq, q.len()), &want_dq);
    close("additive dkeys", &ip.read_f32(&dkk, keys.len()), &want_dk);

    // Tucker: T 2, H 1, R 2, Dk 4, n 6, Cn 2, m 5.
    const TUCK: &str = "tucker_topk";
    let (t, h, r, dk, n, cn, top) = (2usize, 1usize, 2usize, 4usize, 6usize, 2usize, 5usize);
    let q = normals(21, t * h * 2 * r * dk, 1.0);
    let keys = normals(22, h * 2 * r * n * dk, 1.0);
    let cores = normals(23, h * cn * r * r, 1.0);
    let (u, v) = ultramem::layer::tucker_proxy::tucker_proxy(&cores, h, cn, r, None).unwrap();
    let (u, v): (Vec<f32>, Vec<f32>) = (
        u.iter().map(|&x| x as f32).collect(),
        v.iter().map(|&x| x as f32).collect(),
    );
    let bufs = [&q, &keys, &cores, &u, &v].map(|x| ip.upload_pod(x));
    let tm = [
        meta(TUCK, "q", &[t, h, 2, r, dk], Elem::F32),
        meta(TUCK, "keys", &[h, 2, r, n, dk], Elem::F32),
        meta(TUCK, "cores", &[h, cn, r, r], Elem::F32),
        meta(TUCK, "u", &[h, r], Elem::F32),
        meta(TUCK, "v", &[h, r], Elem::F32),
        meta(TUCK, "idx", &[t, h, top], Elem::U32),
        meta(TUCK, "score", &[t, h, top, cn], Elem::F32),
        meta(TUCK, "dq", &[t, h, 2, r, dk], Elem::F32),
        meta(TUCK, "dkeys", &[h, 2, r, n, dk], Elem::F32),
        meta(TUCK, "dcores", &[h, cn, r, r], Elem::F32),
    ];
    let (mut ib, mut sb) = (poisoned(&ip, t * h * top), poisoned(&ip, t * h * top * cn));
    let [b0, b1, b2, b3, b4] = &bufs;
    device::tucker_topk_forward(
        &ip,
        [&tm[0], &tm[1], &tm[2], &tm[3], &tm[4], &tm[5], &tm[6]],
        top,
        None,
        [b0, b1, b2, b3, b4],
        [&mut ib, &mut sb],
    )
    .unwrap();
    let td = TuckerTopkDims {
        tokens: t,
        heads: h,
        rank: r,
        dk,
        n,
        cores: cn,
        k1: ultramem::dims::tucker_topk::default_k1(top, n),
        m: top,
    };
    let (want_i, want_s) = reference::tucker_topk::forward(&td, &q, &keys, &cores, &u, &v).unwrap();
    assert_eq!(ip.read_u32(&ib, t * h * top), want_i, "tucker idx");
    close("tucker score", &ip.read_f32(&sb, t * h * top * cn), &want_s);
    let dscore = normals(24, t * h * top * cn, 1.0);
    let gb = ip.upload_pod(&dscore);
    let mut outs = [
        poisoned(&ip, q.len()),
        poisoned(&ip, keys.len()),
        poisoned(&ip, cores.len()),
    ];
    let [o1, o2, o3] = &mut outs;
    device::tucker_topk_backward(
        &ip,
        [
            &tm[0], &tm[1], &tm[2], &tm[3], &tm[4], &tm[5], &tm[6], &tm[7], &tm[8], &tm[9],
        ],
        [b0, b1, b2, b3, b4, &ib, &gb],
        [o1, o2, o3],
    )
    .unwrap();
    let g = reference::tucker_topk::backward(&td, &q, &keys, &cores, &want_i, &dscore).unwrap();
    close("tucker dq", &ip.read_f32(&outs[0], q.len()), &g.dq);
    close("tucker dkeys", &ip.read_f32(&outs[1], keys.len()), &g.dkeys);
    close(
        "tucker dcores",
        &ip.read_f32(&outs[2], cores.len()),
        &g.dcores,
    );

    // Index map with a shuffle table.
    const MAP: &str = "index_map";
    let idx = rows(31, 10, 20);
    let shuffle = rows(32, 20, 1000);
    let map = IndexMapConfig {
        rows_per_layer: 12,
        offset: 30,
        total_rows: 40,
    };
    let (ib, shb) = (ip.upload_pod(&idx), ip.upload_pod(&shuffle));
    let mut out = poisoned(&ip, 10);
    let sm = meta(MAP, "shuffle", &[20], Elem::U32);
    device::index_map_forward(
        &ip,
        [
            &meta(MAP, "idx", &[2, 5], Elem::I32),
            &meta(MAP, "out", &[2, 5], Elem::I32),
        ],
        Some((&sm, &shb)),
        map,
        &ib,
        &mut out,
    )
    .unwrap();
    let d = IndexMapDims {
        len: 10,
        shuffle_len: Some(20),
        map,
    };
    let want = reference::index_map::forward(&d, &idx, Some(&shuffle)).unwrap();
    assert_eq!(ip.read_u32(&out, 10), want, "index map");

    // Softmax forward and backward over [T 2, H 1, k 5, Cn 2].
    const SF: &str = "score_fn";
    let x = normals(41, 20, 1.0);
    let dy = normals(42, 20, 1.0);
    let (xb, gb) = (ip.upload_pod(&x), ip.upload_pod(&dy));
    let shape = [2usize, 1, 5, 2];
    let (xm, om) = (
        meta(SF, "score", &shape, Elem::F32),
        meta(SF, "out", &shape, Elem::F32),
    );
    let sd = ScoreFnDims::from_shape(&shape).unwrap();
    let mut y = poisoned(&ip, 20);
    device::score_fn_run(&ip, [&xm, &om], ScoreFn::Softmax, &xb, None, &mut y).unwrap();
    let want = reference::score_fn::forward(&sd, ScoreFn::Softmax, &x).unwrap();
    close("softmax", &ip.read_f32(&y, 20), &want);
    let mut g = poisoned(&ip, 20);
    device::score_fn_run(
        &ip,
        [&xm, &om],
        ScoreFn::Softmax,
        &xb,
        Some((&om, &gb)),
        &mut g,
    )
    .unwrap();
    let want = reference::score_fn::backward(&sd, ScoreFn::Softmax, &x, &dy).unwrap();
    close("softmax backward", &ip.read_f32(&g, 20), &want);
}

#[test]
fn the_abi_device_path_refuses_what_the_kernels_do_not_take() {
    const OP: &str = "weighted_gather";
    let ip = Interp::new();
    let rb = ip.upload_pod(&[0u32, 1]);
    let wb = ip.upload_pod(&[1.0f64, 2.0]);
    let tb = ip.upload_pod(&[1.0f32; 4]);
    let mut out = poisoned(&ip, 4);
    let run = |w: Elem, o: &[usize], out: &mut Buf| {
        device::weighted_gather_forward(
            &ip,
            [
                &meta(OP, "rows", &[2, 1], Elem::U32),
                &meta(OP, "weights", &[2, 1, 1], w),
                &meta(OP, "table", &[2, 2], Elem::F32),
                &meta(OP, "out", o, Elem::F32),
            ],
            [&rb, &wb, &tb],
            out,
        )
    };
    let e = run(Elem::F64, &[2, 2], &mut out).unwrap_err();
    assert!(
        matches!(e, Error::Unsupported { .. }) && e.to_string().contains("float32"),
        "{e}"
    );
    let e = run(Elem::F32, &[2, 3], &mut out).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { arg: "out", .. }), "{e}");
    // A row past the table is the kernels' status report, as a typed error.
    let far = ip.upload_pod(&[0u32, 5]);
    let e = device::weighted_gather_forward(
        &ip,
        [
            &meta(OP, "rows", &[2, 1], Elem::U32),
            &meta(OP, "weights", &[2, 1, 1], Elem::F32),
            &meta(OP, "table", &[2, 2], Elem::F32),
            &meta(OP, "out", &[2, 2], Elem::F32),
        ],
        [&far, &ip.upload_pod(&[1.0f32, 2.0]), &tb],
        &mut out,
    )
    .unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { .. }), "{e}");
}

/// int32 indices on the GPU path: the kernels read them as u32, so a negative one arrives as
/// `>= 2^31`. The index map bounds int32 `ν` and int32 shuffle entries by `2^31` in the kernel
/// (without a shuffle `ν` had no bound at all, and −1 mapped to row 5 of 10); an int32 output
/// or input that would need values past `2^31` is refused before any launch.
#[test]
fn negative_int32_indices_on_the_abi_device_path_are_errors() {
    const MAP: &str = "index_map";
    let ip = Interp::new();
    let plain = IndexMapConfig::plain(10);
    let run = |idx: &[u32], idx_elem, shuffle: Option<(&[u32], Elem)>, map, out_elem| {
        let ib = ip.upload_pod(idx);
        let mut out = poisoned(&ip, idx.len());
        let sb = shuffle.map(|(s, _)| ip.upload_pod(s));
        let sm = shuffle.map(|(s, e)| meta(MAP, "shuffle", &[s.len()], e));
        let r = device::index_map_forward(
            &ip,
            [
                &meta(MAP, "idx", &[idx.len()], idx_elem),
                &meta(MAP, "out", &[idx.len()], out_elem),
            ],
            sm.as_ref().zip(sb.as_ref()),
            map,
            &ib,
            &mut out,
        );
        r.map(|()| ip.read_u32(&out, idx.len()))
    };
    let minus_one = u32::MAX;
    // ν = −1, no shuffle.
    let e = run(&[minus_one, 3], Elem::I32, None, plain, Elem::I32).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 0,
                index: -1,
                ..
            }
        ),
        "{e}"
    );
    // The same bits as uint32 are a valid ν: (2^32 − 1) mod 10 = 5.
    assert_eq!(
        run(&[minus_one, 3], Elem::U32, None, plain, Elem::I32).unwrap(),
        [5, 3]
    );
    // A shuffle entry of −1.
    let shuffle = [0u32, minus_one, 2];
    let e = run(
        &[2, 1],
        Elem::U32,
        Some((&shuffle, Elem::I32)),
        plain,
        Elem::I32,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { arg: "shuffle", ref reason, .. } if reason.contains("idx[1]")),
        "{e}"
    );
    assert_eq!(
        run(
            &[2, 1],
            Elem::U32,
            Some((&shuffle, Elem::U32)),
            plain,
            Elem::I32
        )
        .unwrap(),
        [2, 5]
    );
    // An int32 output for a table past 2^31 rows.
    let big = IndexMapConfig::plain(1 << 32);
    let e = run(&[1], Elem::U32, None, big, Elem::I32).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert_eq!(
        run(&[minus_one], Elem::U32, None, big, Elem::U32).unwrap(),
        [minus_one]
    );
}

/// int64 index tensors on the GPU path (spec §I.6.1): inputs narrowed to u32 on the device with
/// every value checked (a negative value or one at or past the bound is `IndexOutOfRange` with
/// the value the caller wrote, as on the host path), outputs widened from the kernels' u32.
/// Results equal the int32 path's; outputs are poisoned first, high words included.
#[test]
fn int64_indices_on_the_abi_device_path() {
    const OP: &str = "weighted_gather";
    let ip = Interp::new();
    let (t, m, cn, n, dv) = (3usize, 4usize, 2usize, 9usize, 6usize);
    let r = rows(31, t * m, n as u32);
    let wide: Vec<i64> = r.iter().map(|&x| i64::from(x)).collect();
    let w = normals(32, t * m * cn, 1.0);
    let table = normals(33, n * dv, 1.0);
    let (wb, tb) = (ip.upload_pod(&w), ip.upload_pod(&table));
    let gather = |rows: &Buf, elem: Elem| {
        let mut out = poisoned(&ip, t * dv);
        device::weighted_gather_forward(
            &ip,
            [
                &meta(OP, "rows", &[t, m], elem),
                &meta(OP, "weights", &[t, m, cn], Elem::F32),
                &meta(OP, "table", &[n, dv], Elem::F32),
                &meta(OP, "out", &[t, dv], Elem::F32),
            ],
            [rows, &wb, &tb],
            &mut out,
        )
        .map(|()| ip.read_f32(&out, t * dv))
    };
    let d = WeightedGatherDims {
        tokens: t,
        slots: m,
        cores: cn,
        table_rows: n,
        dv,
    };
    let want = reference::weighted_gather::forward(&d, &r, &w, &table).unwrap();
    close(
        "int64 rows",
        &gather(&ip.upload_pod(&wide), Elem::I64).unwrap(),
        &want,
    );
    // Bad int64 rows, each reported with its value: negative, past N, past 2^32 (whose low
    // word, 1, would be a valid row if the narrowing truncated).
    for (position, bad) in [(5usize, -7i64), (2, 9), (11, (1 << 32) + 1)] {
        let mut v = wide.clone();
        v[position] = bad;
        let e = gather(&ip.upload_pod(&v), Elem::I64).unwrap_err();
        assert!(
            matches!(e, Error::IndexOutOfRange { arg: "rows", position: p, index, bound: 9, .. }
                if p == position && index == bad),
            "{bad}: {e}"
        );
    }
    // A negative int32 row is reported as written, not as its u32 bits (4294967294).
    let mut v: Vec<i32> = r.iter().map(|&x| x as i32).collect();
    v[3] = -2;
    let e = gather(&ip.upload_pod(&v), Elem::I32).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "rows",
                position: 3,
                index: -2,
                ..
            }
        ),
        "{e}"
    );

    // Additive top-k: an int64 idx output holds the int32 path's values; the backward reads
    // int64 idx and gives the int32 path's gradients.
    const ADD: &str = "additive_topk";
    let (t, h, dk, n, k) = (2usize, 2usize, 4usize, 6usize, 3usize);
    let q = normals(34, t * h * dk, 1.0);
    let keys = normals(35, h * 2 * n * dk / 2, 1.0);
    let (qb, kb) = (ip.upload_pod(&q), ip.upload_pod(&keys));
    let am = |idx: Elem| {
        [
            meta(ADD, "q", &[t, h, dk], Elem::F32),
            meta(ADD, "keys", &[h, 2, n, dk / 2], Elem::F32),
            meta(ADD, "idx", &[t, h, k], idx),
            meta(ADD, "score", &[t, h, k], Elem::F32),
            meta(ADD, "dq", &[t, h, dk], Elem::F32),
            meta(ADD, "dkeys", &[h, 2, n, dk / 2], Elem::F32),
        ]
    };
    let ad = AdditiveTopkDims {
        tokens: t,
        heads: h,
        dk,
        n,
        k,
        k1: k,
    };
    let (want_i, _) = reference::additive_topk::forward(&ad, &q, &keys).unwrap();
    let m64 = am(Elem::I64);
    let (mut ib, mut sb) = (poisoned(&ip, 2 * t * h * k), poisoned(&ip, t * h * k));
    device::additive_topk_forward(
        &ip,
        [&m64[0], &m64[1], &m64[2], &m64[3]],
        k,
        None,
        [&qb, &kb],
        [&mut ib, &mut sb],
    )
    .unwrap();
    let got = read_i64(&ip, &ib, t * h * k);
    let want_wide: Vec<i64> = want_i.iter().map(|&x| i64::from(x)).collect();
    assert_eq!(got, want_wide, "int64 idx output");
    let dscore = normals(36, t * h * k, 1.0);
    let gb = ip.upload_pod(&dscore);
    let backward = |m: &[View; 6], idx: &Buf| {
        let (mut dq, mut dkk) = (poisoned(&ip, q.len()), poisoned(&ip, keys.len()));
        device::additive_topk_backward(
            &ip,
            [&m[0], &m[1], &m[2], &m[3], &m[4], &m[5]],
            [&qb, &kb, idx, &gb],
            [&mut dq, &mut dkk],
        )
        .map(|()| (ip.read_f32(&dq, q.len()), ip.read_f32(&dkk, keys.len())))
    };
    let narrow: Vec<u32> = want_i.clone();
    let (dq32, dk32) = backward(&am(Elem::U32), &ip.upload_pod(&narrow)).unwrap();
    let (dq64, dk64) = backward(&m64, &ib).unwrap();
    assert_eq!((dq64, dk64), (dq32, dk32), "int64 idx backward");
    let mut bad = want_wide.clone();
    bad[4] = -1;
    let e = backward(&m64, &ip.upload_pod(&bad)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 4,
                index: -1,
                bound: 36,
                ..
            }
        ),
        "{e}"
    );

    // Index map: int64 ν and shuffle, int64 output, against the reference; a negative int64
    // shuffle entry is the host path's error (the whole table is checked, as there).
    const MAP: &str = "index_map";
    let shuffle: Vec<u32> = vec![4, 0, 7, 2, 9, 1, 3, 8, 6, 5];
    let idx: Vec<u32> = vec![9, 0, 3, 3, 7];
    let map = IndexMapConfig {
        rows_per_layer: 10,
        offset: 4,
        total_rows: 12,
    };
    let widen = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
    let run = |shuffle: &[i64]| {
        let mut out = poisoned(&ip, 2 * idx.len());
        let sm = meta(MAP, "shuffle", &[shuffle.len()], Elem::I64);
        let sb = ip.upload_pod(shuffle);
        device::index_map_forward(
            &ip,
            [
                &meta(MAP, "idx", &[idx.len()], Elem::I64),
                &meta(MAP, "out", &[idx.len()], Elem::I64),
            ],
            Some((&sm, &sb)),
            map,
            &ip.upload_pod(&widen(&idx)),
            &mut out,
        )
        .map(|()| read_i64(&ip, &out, idx.len()))
    };
    let d = IndexMapDims {
        len: idx.len(),
        shuffle_len: Some(shuffle.len()),
        map,
    };
    let want = reference::index_map::forward(&d, &idx, Some(&shuffle)).unwrap();
    assert_eq!(run(&widen(&shuffle)).unwrap(), widen(&want), "int64 map");
    let mut bad = widen(&shuffle);
    bad[6] = -3;
    let e = run(&bad).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "shuffle",
                position: 6,
                index: -3,
                ..
            }
        ),
        "{e}"
    );
}
