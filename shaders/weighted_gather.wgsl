// weighted_gather.wgsl — weighted gather with core split, forward and backward.
//
// Twin of kernels/weighted_gather.ptx; reference src/reference/weighted_gather.rs.
//
// forward:          out[t·groups + g, col] = Σ over the slots k of group g of
//                                      w[t, k, col / slice_width] · table[rows[t, k], col]
//                   (groups = 1: the output itself; else partial sums)
// combine:          out[t, col] = Σ_g partial[t·groups + g, col], in group order
// backward_slots:   dw[t, k, c] = Σ_{col in slice c} table[rows[t, k], col] · g[t, col]
// backward_rows:    dtable[r, col] = Σ_{slots s with rows[s] = r, in (token, slot) order}
//                                    w[s, col / slice_width] · g[token(s), col]
//                   (deterministic: `order` lists the slots sorted by row, stably; a
//                   workgroup starting a run of equal rows sums the whole run; other rows of
//                   dtable must be zero beforehand)
//
// Launch: workgroups of 128 invocations on a (grid_x, grid_y) grid flattened to
// wid = wg.x + wg.y·grid_x (WebGPU caps each dimension at 65535). forward: one workgroup per
// (token, slot group, chunk of 128·vec columns), as the PTX twin: with vec > 1 an invocation
// reads 16 bytes of each row (four consecutive words: 4 f32 or 8 f16/bf16), four slots' rows
// at once, and accumulates in slot order; combine: one invocation per output element;
// backward_slots: one per slot; backward_rows: one per sorted position.
//
// Bounds: every row index is checked against `rows` (N) before the table is read; a bad one is
// skipped and its slot's flat position recorded in status[0] as ~slot with atomicMax (the lowest
// slot wins, 0 means none), which the host turns into Error::IndexOutOfRange. Indices are u32: the host checks that every element index
// fits (the table lives in one storage binding, at most 4 GiB).
//
// Tables are bound as array<u32> whatever their dtype; TABLE_DTYPE (0 f32, 1 f16, 2 bf16)
// selects the unpacking at pipeline creation. 16-bit elements are packed two per word, element
// 2j in the low half; f16 is widened by bit manipulation, so no adapter feature (shader-f16 or
// naga's f16-in-f32) is needed and every adapter takes every dtype.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

override TABLE_DTYPE: u32 = 0u;

const WG: u32 = 128u;

// The host's ValueParams, field for field (src/gpu/params.rs).
struct Params {
    tokens: u32,
    slots: u32,
    cores: u32,
    table_rows: u32,
    width: u32,        // row width of the table and of g (Dv, or Dp for PEER's down table)
    slice_width: u32,  // width / cores
    chunks: u32,       // ceil(width / WG)
    grid_x: u32,
    entries: u32,      // tokens · slots
    activation: u32,
    flags: u32,
    dp: u32,
    dv: u32,
    table_dtype: u32,  // the PTX twin's dtype switch; WGSL uses TABLE_DTYPE
    groups: u32,       // slot groups per token (forward)
    vec: u32,          // forward: columns per invocation (1, or 16 bytes of the table)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> order: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> status: array<atomic<u32>>;

var<workgroup> partial: array<f32, WG>;

fn load_table(i: u32) -> f32 {
    return ultramem_table_element(table[ultramem_table_word(i, TABLE_DTYPE)], i, TABLE_DTYPE);
}

fn flat_id(wg: vec3<u32>) -> u32 {
    return wg.x + wg.y * p.grid_x;
}

// Adds w · (the `vec` table elements in `x`) to `acc`: 4 f32, or 8 16-bit elements two per word.
fn accumulate(acc: ptr<function, array<f32, 8>>, w: f32, x: vec4<u32>) {
    for (var j = 0u; j < 4u; j++) {
        if TABLE_DTYPE == 0u {
            (*acc)[j] += w * bitcast<f32>(x[j]);
        } else {
            (*acc)[2u * j] += w * ultramem_table_element(x[j], 0u, TABLE_DTYPE);
            (*acc)[2u * j + 1u] += w * ultramem_table_element(x[j], 1u, TABLE_DTYPE);
        }
    }
}

@compute @workgroup_size(128)
fn weighted_gather_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let wid = flat_id(wg);
    let chunk = wid % p.chunks;
    let g = (wid / p.chunks) % p.groups;
    let t = wid / p.chunks / p.groups;
    let col = (chunk * WG + lid.x) * p.vec;
    if t >= p.tokens || col >= p.width {
        return;
    }
    let c = col / p.slice_width;
    let per = (p.slots + p.groups - 1u) / p.groups;
    let token_end = t * p.slots + p.slots;
    var slot = t * p.slots + g * per;
    let slot_end = min(slot + per, token_end);
    var acc: array<f32, 8>;
    if p.vec != 1u {
        for (; slot < slot_end; slot += 4u) {
            // Four slots' rows and weights first, then their 16-byte reads, then the sums.
            var row: array<u32, 4>;
            var w: array<f32, 4>;
            var ok: array<bool, 4>;
            for (var k = 0u; k < 4u; k++) {
                let s = slot + k;
                ok[k] = false;
                w[k] = 0.0;
                row[k] = 0u;
                if s < slot_end {
                    row[k] = rows[s];
                    ok[k] = row[k] < p.table_rows;
                    if !ok[k] && col == 0u {
                        atomicMax(&status[0], ~s);
                    }
                    if ok[k] {
                        w[k] = weights[s * p.cores + c];
                    }
                }
            }
            var x: array<vec4<u32>, 4>;
            for (var k = 0u; k < 4u; k++) {
                x[k] = vec4<u32>(0u);
                if ok[k] {
                    let at = ultramem_table_word(row[k] * p.width + col, TABLE_DTYPE);
                    x[k] = vec4<u32>(table[at], table[at + 1u], table[at + 2u], table[at + 3u]);
                }
            }
            for (var k = 0u; k < 4u; k++) {
                accumulate(&acc, w[k], x[k]);
            }
        }
    } else {
        for (; slot < slot_end; slot++) {
            let r = rows[slot];
            if r >= p.table_rows {
                if col == 0u {
                    atomicMax(&status[0], ~slot);
                }
                continue;
            }
            acc[0] += weights[slot * p.cores + c] * load_table(r * p.width + col);
        }
    }
    let at = (t * p.groups + g) * p.width + col;
    for (var j = 0u; j < p.vec; j++) {
        out[at + j] = acc[j];
    }
}

@compute @workgroup_size(128)
fn weighted_gather_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg) * WG + lid.x;
    let t = i / p.width;
    let col = i % p.width;
    if t >= p.tokens {
        return;
    }
    var acc = 0.0;
    // The partial sums are bound as `g`.
    for (var k = 0u; k < p.groups; k++) {
        acc += g[(t * p.groups + k) * p.width + col];
    }
    out[i] = acc;
}

// Sums `partial` over the workgroup; every invocation must call it.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(128)
fn weighted_gather_backward_slots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let slot = flat_id(wg);
    if slot >= p.entries {
        return;
    }
    let t = slot / p.slots;
    let r = rows[slot];
    // A bad row contributes zeros; every invocation still reaches every barrier.
    let ok = r < p.table_rows;
    let row = select(0u, r, ok);
    for (var c = 0u; c < p.cores; c++) {
        var sum = 0.0;
        if ok {
            for (var e = lid.x; e < p.slice_width; e += WG) {
                let col = c * p.slice_width + e;
                sum += load_table(row * p.width + col) * g[t * p.width + col];
            }
        }
        let total = workgroup_sum(lid.x, sum);
        if lid.x == 0u {
            out[slot * p.cores + c] = total;
        }
    }
    if !ok && lid.x == 0u {
        atomicMax(&status[0], ~slot);
    }
}

@compute @workgroup_size(128)
fn weighted_gather_backward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let pos = flat_id(wg);
    if pos >= p.entries {
        return;
    }
    let r = rows[order[pos]];
    // Bad rows sort last and were reported by backward_slots; a run is summed by its head.
    if r >= p.table_rows || (pos > 0u && rows[order[pos - 1u]] == r) {
        return;
    }
    for (var col = lid.x; col < p.width; col += WG) {
        let c = col / p.slice_width;
        var acc = 0.0;
        for (var q = pos; q < p.entries; q++) {
            let s = order[q];
            if rows[s] != r {
                break;
            }
            acc += weights[s * p.cores + c] * g[(s / p.slots) * p.width + col];
        }
        out[r * p.width + col] = acc;
    }
}
