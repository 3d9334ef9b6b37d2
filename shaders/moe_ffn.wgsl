// moe_ffn.wgsl — the MoE expert FFN baseline (SwiGLU experts, given routing), expert-major.
//
// Twin of kernels/moe_ffn.ptx; reference src/reference/moe_ffn.rs.
//
// Entries e = t·k + s (token t, slot s) are sorted by expert id on the device first (the row
// sort; `order` holds entry indices, stable, bad ids last). A workgroup owns one run of equal
// experts (it starts at a sorted position p whose predecessor has another expert; other
// workgroups return at once) and 16 weight rows, and applies each row to every token of the run,
// so each expert's weights are read about once per step whatever the batch:
//   moe_ffn_up:      hidden[e, f] = silu(<W1[x, f], x[t]>) · <W3[x, f], x[t]>   (x = expert)
//   moe_ffn_down:    partial[e, d] = <W2[x, d], hidden[e]>
//   moe_ffn_combine: out[t, d] = Σ over s in order of gate[t·k + s] · partial[t·k + s, d]
// W1, W3 are [E, F, D] and W2 is [E, D, F], bound as array<u32> of the table dtype
// (TABLE_DTYPE 0 f32, 1 f16, 2 bf16); the rest is f32. 8 invocations per row stride over it,
// then one of them adds the 8 partial sums in order, so the result does not depend on the launch.
//
// Launch: up and down one workgroup of 128 per (sorted position, chunk of 16 rows), wid =
// p·chunks + chunk; combine one invocation per output element; (grid_x, grid_y) grid,
// wid = wg.x + wg.y·grid_x.
// Bounds: an expert id ≥ E never addresses a weight: up records the entry's index in status[0]
// as ~index via atomicMax (the lowest wins, 0 means none) and skips it. Every other index is
// below its buffer's length by the loop bounds; the host checks that every element index fits
// u32 (each buffer lives in one storage binding).
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

override TABLE_DTYPE: u32 = 0u;
const WG: u32 = 128u;

// The host's MoeParams (src/gpu/params.rs).
struct Params {
    entries: u32,
    k: u32,
    d_model: u32,
    ffn: u32,
    experts: u32,
    chunks: u32,
    table_dtype: u32,
    grid_x: u32,
    tokens: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> experts: array<u32>;
@group(0) @binding(3) var<storage, read> gates: array<f32>;
@group(0) @binding(4) var<storage, read> order: array<u32>;
@group(0) @binding(5) var<storage, read> w_a: array<u32>;
@group(0) @binding(6) var<storage, read> w_b: array<u32>;
@group(0) @binding(7) var<storage, read_write> hidden: array<f32>;
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;
@group(0) @binding(9) var<storage, read_write> out: array<f32>;
@group(0) @binding(10) var<storage, read_write> status: array<atomic<u32>>;

var<workgroup> sums: array<f32, WG>;
var<workgroup> sums_b: array<f32, WG>;
// The run this workgroup owns: [run_start, run_end) in sorted positions, and its expert;
// run_start = entries when the workgroup has nothing to do.
var<workgroup> run_start: u32;
var<workgroup> run_end: u32;
var<workgroup> run_expert: u32;

// Weight element i of w_a (which = 0) or w_b (which = 1), as f32.
fn weight(which: u32, i: u32) -> f32 {
    let w = ultramem_table_word(i, TABLE_DTYPE);
    var word: u32;
    if which == 0u {
        word = w_a[w];
    } else {
        word = w_b[w];
    }
    return ultramem_table_element(word, i, TABLE_DTYPE);
}

// Invocation 0 finds the run starting at sorted position `pos` (if it starts one) and records
// a bad expert id; everyone reads the result after the barrier.
fn find_run(pos: u32, lid: u32, record_bad: bool) {
    if lid == 0u {
        run_start = p.entries;
        if pos < p.entries {
            let ent = order[pos];
            let expert = experts[ent];
            if expert >= p.experts {
                if record_bad {
                    atomicMax(&status[0], ~ent);
                }
            } else if pos == 0u || experts[order[pos - 1u]] != expert {
                var end = pos + 1u;
                while end < p.entries && experts[order[end]] == expert {
                    end += 1u;
                }
                run_start = pos;
                run_end = end;
                run_expert = expert;
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(128)
fn moe_ffn_up(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wid = wg.x + wg.y * p.grid_x;
    find_run(wid / p.chunks, lid, true);
    let start = workgroupUniformLoad(&run_start);
    if start >= p.entries {
        return;
    }
    let end = workgroupUniformLoad(&run_end);
    let expert = run_expert;
    let lane8 = lid % 8u;
    let f = (wid % p.chunks) * 16u + lid / 8u;
    let ok = f < p.ffn;
    let wrow = (expert * p.ffn + f) * p.d_model;
    for (var q = start; q < end; q++) {
        let ent = order[q];
        let t = ent / p.k;
        var a = 0.0;
        var b = 0.0;
        if ok {
            for (var i = lane8; i < p.d_model; i += 8u) {
                let xv = x[t * p.d_model + i];
                a = fma(weight(0u, wrow + i), xv, a);
                b = fma(weight(1u, wrow + i), xv, b);
            }
        }
        sums[lid] = a;
        sums_b[lid] = b;
        workgroupBarrier();
        if ok && lane8 == 0u {
            var sa = 0.0;
            var sb = 0.0;
            for (var j = 0u; j < 8u; j++) {
                sa += sums[lid + j];
                sb += sums_b[lid + j];
            }
            hidden[ent * p.ffn + f] = sa / (1.0 + exp(-sa)) * sb;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(128)
fn moe_ffn_down(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wid = wg.x + wg.y * p.grid_x;
    find_run(wid / p.chunks, lid, false);
    let start = workgroupUniformLoad(&run_start);
    if start >= p.entries {
        return;
    }
    let end = workgroupUniformLoad(&run_end);
    let expert = run_expert;
    let lane8 = lid % 8u;
    let d = (wid % p.chunks) * 16u + lid / 8u;
    let ok = d < p.d_model;
    let wrow = (expert * p.d_model + d) * p.ffn;
    for (var q = start; q < end; q++) {
        let ent = order[q];
        var a = 0.0;
        if ok {
            for (var i = lane8; i < p.ffn; i += 8u) {
                a = fma(weight(0u, wrow + i), hidden[ent * p.ffn + i], a);
            }
        }
        sums[lid] = a;
        workgroupBarrier();
        if ok && lane8 == 0u {
            var s = 0.0;
            for (var j = 0u; j < 8u; j++) {
                s += sums[lid + j];
            }
            partial[ent * p.d_model + d] = s;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(128)
fn moe_ffn_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * p.grid_x) * WG + lid;
    if i >= p.tokens * p.d_model {
        return;
    }
    let t = i / p.d_model;
    let d = i % p.d_model;
    var acc = 0.0;
    for (var s = 0u; s < p.k; s++) {
        let ent = t * p.k + s;
        acc = fma(gates[ent], partial[ent * p.d_model + d], acc);
    }
    out[i] = acc;
}
