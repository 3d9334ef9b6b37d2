// product_key_topk.wgsl — fused product-key top-k, additive (PKM, PEER, Memory+) and Tucker
// (UltraMem, UltraMemV2), forward and the per-slot half of the backward.
//
// Twin of kernels/product_key_topk.ptx; references src/reference/additive_topk.rs and
// src/reference/tucker_topk.rs.
//
// One layout serves both ops: queries q[T, H, 2, R, dim] and keys[H, 2, R, n, dim] (the additive
// op is R = 1, dim = Dk/2, a proxy of ones and a sum instead of the Tucker grid).
//
// product_key_topk_stage1 (one workgroup per (t, h, side)): the proxy scores
//   a[i] = Σ_r w[h, r]·<keys[h, side, r, i], q[t, h, side, r]> for all n sub-keys, kept in
//   workgroup memory; the best K1 of them; writes their indices sel_idx[(t, h, side), K1] and
//   per-rank scores sel_s[(t, h, side), R, K1] (O(T·K1) scratch: the n scores never leave).
// product_key_topk_grid (one workgroup per (t, h)): the K1 × K1 cells, each recomputed from the
//   two selections when needed (the grid never exists in memory): additive s_row + s_col, Tucker
//   G_c = S_row[:, a]ᵀ C_c S_col[:, b] summed over the cores; the best m; writes idx[t, h, m] =
//   i·n + j and score[t, h, m, Cn] (per core; the sum for additive).
// product_key_topk_backward_prep (one workgroup per (t, h)): from idx and dscore, the per-rank
//   score gradients of each chosen cell, written as weighted-gather entries (row of keys,
//   weight) in the order [t, h, side, rank, slot] so dq is a gather and dkeys a scatter of them
//   (kernels/weighted_gather.ptx), and the (t, h) share of dcores.
// product_key_topk_backward_cores (one workgroup per head): dcores summed over tokens in order.
//
// Selection: each candidate gets the 64-bit key (hi, lo) = (order(score), index) where order
// maps larger scores to smaller keys, −0 to +0 and NaN past everything; all keys are distinct,
// so "the k smallest keys, ascending" is exactly Part I §I.2 (larger first, ties to the lower
// index, NaN last) and deterministic. A radix select (8 passes of 8-bit digits over
// workgroup-memory histograms) finds the k-th key, the candidates at or below it are collected,
// and a bitonic sort orders them.
//
// Launch: workgroups of 256 on a (grid_x, grid_y) grid, wid = wg.x + wg.y·grid_x.
// Bounds: the stage-1 keys are bounded by n; idx in the backward is checked against n² (bad
// ones are skipped and recorded in status[0]); a non-finite query, proxy or core entry records
// its flat position in status[1], status[2], status[3]. A word holds ~position via atomicMax:
// the lowest position wins and 0 means no error.
// POOL (override): workgroup words for the n stage-1 keys or the two selections; the host sizes
// it per call and checks it against the adapter's workgroup-memory limit.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

override TABLE_DTYPE: u32 = 0u;
override POOL: u32 = 4096u;

const WG: u32 = 256u;
const LIST: u32 = 1024u;
const NONE: u32 = 0xffffffffu;

// The host's TopkParams (src/gpu/params.rs).
struct Params {
    tokens: u32,
    heads: u32,
    n: u32,
    dim: u32,
    rank: u32,
    cores: u32,
    k1: u32,
    m: u32,
    additive: u32,     // 1: additive (sum of the two sides), 0: Tucker
    grid_x: u32,
    groups: u32,       // workgroups with work: T·H·2 (stage 1), T·H (grid, prep), H (cores)
    table_dtype: u32,  // the PTX twin's dtype switch; WGSL uses TABLE_DTYPE
    offset: u32,       // backward_cores: where the per-slot contributions start in out_f
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> keys: array<u32>;
@group(0) @binding(3) var<storage, read> proxy: array<f32>;   // [H, 2, R]: u then v
@group(0) @binding(4) var<storage, read> cores: array<f32>;   // [H, Cn, R, R]
@group(0) @binding(5) var<storage, read_write> sel_idx: array<u32>;
@group(0) @binding(6) var<storage, read_write> sel_s: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_idx: array<u32>;
@group(0) @binding(8) var<storage, read_write> out_f: array<f32>;
@group(0) @binding(9) var<storage, read_write> status: array<atomic<u32>>;

var<workgroup> pool: array<u32, POOL>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> list: array<u32, LIST>;
var<workgroup> counter: atomic<u32>;
var<workgroup> chosen_digit: u32;
var<workgroup> chosen_rest: u32;
var<workgroup> core_vals: array<f32, 64>;

// Which candidates `cand_key` ranks: 0 the stage-1 keys in `pool`, 1 the grid cells.
var<private> phase: u32;

fn load_key(i: u32) -> f32 {
    return ultramem_table_element(keys[ultramem_table_word(i, TABLE_DTYPE)], i, TABLE_DTYPE);
}

// <keys[h, side, r, i], q[t, h, side, r]>, summed in element order.
fn sub_score(t: u32, h: u32, side: u32, r: u32, i: u32) -> f32 {
    let kbase = (((h * 2u + side) * p.rank + r) * p.n + i) * p.dim;
    let qbase = (((t * p.heads + h) * 2u + side) * p.rank + r) * p.dim;
    var acc = 0.0;
    for (var e = 0u; e < p.dim; e++) {
        acc += load_key(kbase + e) * q[qbase + e];
    }
    return acc;
}

// Whether a float is NaN or infinite, by its bits (float comparisons may assume finite values).
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// Larger scores give smaller keys; −0 == +0; NaN is past every number.
fn order_key(s: f32) -> u32 {
    var b = bitcast<u32>(s);
    if (b & 0x7fffffffu) > 0x7f800000u {
        return NONE;
    }
    if (b & 0x7fffffffu) == 0u {
        b = 0u;
    }
    let asc = select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
    return ~asc;
}

// The grid's cell (a, b): per-core value for `core`, or the total over cores when core = NONE.
fn cell_value(a: u32, b: u32, core: u32) -> f32 {
    let k1 = p.k1;
    let r_ = p.rank;
    if p.additive == 1u {
        return bitcast<f32>(pool[2u * k1 + a]) + bitcast<f32>(pool[2u * k1 + r_ * k1 + b]);
    }
    var total = 0.0;
    for (var c = 0u; c < p.cores; c++) {
        if core != NONE && c != core {
            continue;
        }
        var g = 0.0;
        for (var r = 0u; r < r_; r++) {
            var inner = 0.0;
            for (var r2 = 0u; r2 < r_; r2++) {
                inner += core_vals[(c * r_ + r) * r_ + r2] * bitcast<f32>(pool[2u * k1 + r_ * k1 + r2 * k1 + b]);
            }
            g += bitcast<f32>(pool[2u * k1 + r * k1 + a]) * inner;
        }
        total += g;
    }
    return total;
}

// The 64-bit selection key of candidate c (NONE, NONE for padding).
fn cand_key(c: u32) -> vec2<u32> {
    if c == NONE {
        return vec2<u32>(NONE, NONE);
    }
    if phase == 0u {
        return vec2<u32>(pool[c], c);
    }
    let a = c / p.k1;
    let b = c % p.k1;
    let nu = pool[a] * p.n + pool[p.k1 + b];
    return vec2<u32>(order_key(cell_value(a, b, NONE)), nu);
}

fn key_le(x: vec2<u32>, y: vec2<u32>) -> bool {
    return x.x < y.x || (x.x == y.x && x.y <= y.y);
}

fn key_lt(x: vec2<u32>, y: vec2<u32>) -> bool {
    return x.x < y.x || (x.x == y.x && x.y < y.y);
}

// Leaves the `want` best of `count` candidates in list[0..want], sorted best first.
fn select_best(lid: u32, count: u32, want: u32) {
    var prefix = vec2<u32>(0u, 0u);
    var mask = vec2<u32>(0u, 0u);
    var rest = want;
    for (var round = 0u; round < 8u; round++) {
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        let shift = 24u - 8u * (round % 4u);
        let in_hi = round < 4u;
        for (var c = lid; c < count; c += WG) {
            let key = cand_key(c);
            if (key.x & mask.x) == prefix.x && (key.y & mask.y) == prefix.y {
                let digit = select((key.y >> shift) & 255u, (key.x >> shift) & 255u, in_hi);
                atomicAdd(&hist[digit], 1u);
            }
        }
        workgroupBarrier();
        if lid == 0u {
            var below = 0u;
            var d = 0u;
            loop {
                let h = atomicLoad(&hist[d]);
                if below + h >= rest || d == 255u {
                    break;
                }
                below += h;
                d += 1u;
            }
            chosen_digit = d;
            chosen_rest = rest - below;
        }
        let d = workgroupUniformLoad(&chosen_digit);
        rest = workgroupUniformLoad(&chosen_rest);
        if in_hi {
            prefix.x |= d << shift;
            mask.x |= 255u << shift;
        } else {
            prefix.y |= d << shift;
            mask.y |= 255u << shift;
        }
    }
    // prefix is now the want-th smallest key: collect everything at or below it.
    if lid == 0u {
        atomicStore(&counter, 0u);
    }
    workgroupBarrier();
    for (var c = lid; c < count; c += WG) {
        if key_le(cand_key(c), prefix) {
            let at = atomicAdd(&counter, 1u);
            if at < LIST {
                list[at] = c;
            }
        }
    }
    workgroupBarrier();
    // Bitonic sort of the power of two above `want`, padded with NONE.
    var size = 1u;
    while size < want {
        size <<= 1u;
    }
    for (var i = want + lid; i < size; i += WG) {
        list[i] = NONE;
    }
    workgroupBarrier();
    for (var k = 2u; k <= size; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            for (var x = lid; x < size / 2u; x += WG) {
                let i = 2u * j * (x / j) + (x % j);
                let l = i + j;
                let up = (i & k) == 0u;
                let ki = cand_key(list[i]);
                let kl = cand_key(list[l]);
                if (up && key_lt(kl, ki)) || (!up && key_lt(ki, kl)) {
                    let tmp = list[i];
                    list[i] = list[l];
                    list[l] = tmp;
                }
            }
            workgroupBarrier();
        }
    }
}

fn flag(word: u32, position: u32) {
    atomicMax(&status[word], ~position);
}

@compute @workgroup_size(256)
fn product_key_topk_stage1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.groups {
        return;
    }
    let lid = lid3.x;
    phase = 0u;
    let side = g % 2u;
    let th = g / 2u;
    let h = th % p.heads;
    let t = th / p.heads;
    // The query and proxy must be finite: they steer the selection.
    let qbase = (th * 2u + side) * p.rank * p.dim;
    for (var e = lid; e < p.rank * p.dim; e += WG) {
        if non_finite(q[qbase + e]) {
            flag(1u, qbase + e);
        }
    }
    if lid < p.rank {
        if non_finite(proxy[(h * 2u + side) * p.rank + lid]) {
            flag(2u, (h * 2u + side) * p.rank + lid);
        }
    }
    for (var i = lid; i < p.n; i += WG) {
        var a = 0.0;
        for (var r = 0u; r < p.rank; r++) {
            a += proxy[(h * 2u + side) * p.rank + r] * sub_score(t, h, side, r, i);
        }
        pool[i] = order_key(a);
    }
    workgroupBarrier();
    select_best(lid, p.n, p.k1);
    for (var x = lid; x < p.k1 * p.rank; x += WG) {
        let a = x % p.k1;
        let r = x / p.k1;
        let i = list[a];
        if r == 0u {
            sel_idx[g * p.k1 + a] = i;
        }
        sel_s[(g * p.rank + r) * p.k1 + a] = sub_score(t, h, side, r, i);
    }
}

@compute @workgroup_size(256)
fn product_key_topk_grid(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.groups {
        return;
    }
    let lid = lid3.x;
    phase = 1u;
    let head = g % p.heads;
    let k1 = p.k1;
    let r_ = p.rank;
    // pool: [I1 | I2 | S_row[R][K1] | S_col[R][K1]].
    for (var x = lid; x < 2u * k1; x += WG) {
        let side = x / k1;
        pool[x] = sel_idx[(g * 2u + side) * k1 + x % k1];
    }
    for (var x = lid; x < 2u * r_ * k1; x += WG) {
        let side = x / (r_ * k1);
        let within = x % (r_ * k1);
        pool[2u * k1 + x] = bitcast<u32>(sel_s[(g * 2u + side) * r_ * k1 + within]);
    }
    let ncore = select(p.cores * r_ * r_, 0u, p.additive == 1u);
    for (var x = lid; x < ncore; x += WG) {
        let v = cores[head * ncore + x];
        core_vals[x] = v;
        if non_finite(v) {
            flag(3u, head * ncore + x);
        }
    }
    workgroupBarrier();
    select_best(lid, k1 * k1, p.m);
    for (var slot = lid; slot < p.m; slot += WG) {
        let cell = list[slot];
        let a = cell / k1;
        let b = cell % k1;
        out_idx[g * p.m + slot] = pool[a] * p.n + pool[k1 + b];
        for (var c = 0u; c < p.cores; c++) {
            out_f[(g * p.m + slot) * p.cores + c] = cell_value(a, b, c);
        }
    }
}

// Backward, per (t, h): out_idx receives gather rows and out_f weights, at
// e = (((t·H + h)·2 + side)·R + r)·m + slot, then (from out_f[E], E = T·H·2·R·m) each slot's
// dcores contribution at [(t·H + h)·m + slot][Cn·R·R]. q and keys are as in the forward;
// `proxy` carries dscore[t, h, m, Cn] and `sel_idx` the chosen idx[t, h, m].
@compute @workgroup_size(256)
fn product_key_topk_backward_prep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.groups {
        return;
    }
    let lid = lid3.x;
    let h = g % p.heads;
    let t = g / p.heads;
    let r_ = p.rank;
    let nn = p.n * p.n;
    let ncore = p.cores * r_ * r_;
    for (var slot = lid; slot < p.m; slot += WG) {
        let at = g * p.m + slot;
        let nu = sel_idx[at];
        let ok = nu < nn;
        if !ok {
            flag(0u, at);
        }
        let rows = vec2<u32>(select(0u, nu / p.n, ok), select(0u, nu % p.n, ok));
        var s_row: array<f32, 4>;
        var s_col: array<f32, 4>;
        var ds_row: array<f32, 4>;
        var ds_col: array<f32, 4>;
        for (var r = 0u; r < r_; r++) {
            ds_row[r] = 0.0;
            ds_col[r] = 0.0;
            s_row[r] = 0.0;
            s_col[r] = 0.0;
            if p.additive == 0u && ok {
                s_row[r] = sub_score(t, h, 0u, r, rows.x);
                s_col[r] = sub_score(t, h, 1u, r, rows.y);
            }
        }
        for (var c = 0u; c < p.cores; c++) {
            let gc = select(0.0, proxy[at * p.cores + c], ok);
            if p.additive == 1u {
                ds_row[0] += gc;
                ds_col[0] += gc;
                continue;
            }
            for (var r = 0u; r < r_; r++) {
                for (var r2 = 0u; r2 < r_; r2++) {
                    let cv = cores[(h * p.cores + c) * r_ * r_ + r * r_ + r2];
                    out_f[p.offset + at * ncore + (c * r_ + r) * r_ + r2] = gc * s_row[r] * s_col[r2];
                    ds_row[r] += gc * cv * s_col[r2];
                    ds_col[r2] += gc * cv * s_row[r];
                }
            }
        }
        for (var side = 0u; side < 2u; side++) {
            for (var r = 0u; r < r_; r++) {
                let e = ((g * 2u + side) * r_ + r) * p.m + slot;
                let row = select(rows.y, rows.x, side == 0u);
                out_idx[e] = ((h * 2u + side) * r_ + r) * p.n + row;
                out_f[e] = select(ds_col[r], ds_row[r], side == 0u);
            }
        }
    }
}

// dcores[h] = Σ over tokens and slots, in that order, of the per-slot contributions in
// out_f[offset..]; written to sel_s[h·Cn·R·R..].
@compute @workgroup_size(256)
fn product_key_topk_backward_cores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let h = wg.x + wg.y * p.grid_x;
    if h >= p.groups {
        return;
    }
    let ncore = p.cores * p.rank * p.rank;
    for (var x = lid3.x; x < ncore; x += WG) {
        var acc = 0.0;
        for (var t = 0u; t < p.tokens; t++) {
            for (var slot = 0u; slot < p.m; slot++) {
                acc += out_f[p.offset + ((t * p.heads + h) * p.m + slot) * ncore + x];
            }
        }
        sel_s[h * ncore + x] = acc;
    }
}
