// peer_ffn.wgsl — the per-slot parts of the PEER FFN, forward and backward.
//
// Twin of kernels/peer_ffn.ptx; reference src/reference/peer_ffn.rs.
//
// The value reads themselves are weighted gathers (shaders/weighted_gather.wgsl):
//   forward   out = gather(up, weights = s · φ(α))                 after peer_ffn_alpha
//   backward  dz  = gather(down, weights = dα)                      after peer_ffn_backward_slots
//             dup = scatter(dout, weights = s · φ(α)), ddown = scatter(z, weights = dα)
//
// peer_ffn_alpha (one workgroup per slot s = (t, k), ρ = rows[s]):
//   α = <down[ρ], z[t]>,  out[s, c] = s[s, c] · φ(α)
// peer_ffn_backward_slots (one workgroup per slot):
//   α as above, dw_c = <up[ρ, slice c], dout[t, slice c]>, and into out, laid out as
//   [ds (entries·Cn) | wv (entries·Cn) | dα (entries)]:
//   ds_c = dw_c · φ(α),  wv_c = s_c · φ(α),  dα = φ'(α) · Σ_c dw_c · s_c
//
// φ by p.activation: 0 identity, 1 relu (φ'(0) = 0), 2 gelu (erf form; erf by Abramowitz &
// Stegun 7.1.26, |error| < 1.5e-7), 3 silu.
//
// Launch: workgroups of 128 on a (grid_x, grid_y) grid flattened to wid = wg.x + wg.y·grid_x,
// one per slot. Bounds: a row >= N is skipped (zeros) and its slot recorded in status[0]
// as ~slot via atomicMax (the lowest slot wins; 0 means no error).
// Tables are bound as array<u32>; TABLE_DTYPE (0 f32, 1 f16, 2 bf16) selects the unpacking;
// 16-bit elements are packed two per word, element 2j in the low half.
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
    width: u32,
    slice_width: u32,  // dv / cores
    chunks: u32,
    grid_x: u32,
    entries: u32,
    activation: u32,
    flags: u32,
    dp: u32,
    dv: u32,
    table_dtype: u32,  // the PTX twin's dtype switch; WGSL uses TABLE_DTYPE
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> down: array<u32>;
@group(0) @binding(4) var<storage, read> up: array<u32>;
@group(0) @binding(5) var<storage, read> z: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

var<workgroup> partial: array<f32, WG>;

fn load_down(i: u32) -> f32 {
    return ultramem_table_element(down[ultramem_table_word(i, TABLE_DTYPE)], i, TABLE_DTYPE);
}

fn load_up(i: u32) -> f32 {
    return ultramem_table_element(up[ultramem_table_word(i, TABLE_DTYPE)], i, TABLE_DTYPE);
}

fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    let y = 1.0 - poly * exp(-a * a);
    return select(-y, y, x >= 0.0);
}

fn phi(x: f32) -> f32 {
    switch p.activation {
        case 0u: {
            return x;
        }
        case 1u: {
            return max(x, 0.0);
        }
        case 2u: {
            return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
        }
        default: {
            return x / (1.0 + exp(-x));
        }
    }
}

fn phi_grad(x: f32) -> f32 {
    switch p.activation {
        case 0u: {
            return 1.0;
        }
        case 1u: {
            return select(0.0, 1.0, x > 0.0);
        }
        case 2u: {
            let cdf = 0.5 * (1.0 + erf_approx(x * 0.70710678118654752));
            return cdf + x * exp(-0.5 * x * x) * 0.39894228040143268;
        }
        default: {
            let s = 1.0 / (1.0 + exp(-x));
            return s * (1.0 + x * (1.0 - s));
        }
    }
}

// Sums over the workgroup; every invocation must call it.
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

// α = <down[row], z[t]>, zero for a bad row.
fn alpha(lid: u32, ok: bool, row: u32, t: u32) -> f32 {
    var sum = 0.0;
    if ok {
        for (var e = lid; e < p.dp; e += WG) {
            sum += load_down(row * p.dp + e) * z[t * p.dp + e];
        }
    }
    return workgroup_sum(lid, sum);
}

@compute @workgroup_size(128)
fn peer_ffn_alpha(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let slot = wg.x + wg.y * p.grid_x;
    if slot >= p.entries {
        return;
    }
    let r = rows[slot];
    let ok = r < p.table_rows;
    let a = alpha(lid.x, ok, select(0u, r, ok), slot / p.slots);
    if lid.x == 0u {
        let f = phi(a);
        for (var c = 0u; c < p.cores; c++) {
            out[slot * p.cores + c] = scores[slot * p.cores + c] * f;
        }
        if !ok {
            atomicMax(&status[0], ~slot);
        }
    }
}

@compute @workgroup_size(128)
fn peer_ffn_backward_slots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let slot = wg.x + wg.y * p.grid_x;
    if slot >= p.entries {
        return;
    }
    let t = slot / p.slots;
    let r = rows[slot];
    let ok = r < p.table_rows;
    let row = select(0u, r, ok);
    let a = alpha(lid.x, ok, row, t);
    let f = phi(a);
    let wv_base = p.entries * p.cores;
    var dphi = 0.0;
    for (var c = 0u; c < p.cores; c++) {
        var sum = 0.0;
        if ok {
            for (var e = lid.x; e < p.slice_width; e += WG) {
                let col = c * p.slice_width + e;
                sum += load_up(row * p.dv + col) * dout[t * p.dv + col];
            }
        }
        let dw = workgroup_sum(lid.x, sum);
        if lid.x == 0u {
            let s = scores[slot * p.cores + c];
            out[slot * p.cores + c] = dw * f;
            out[wv_base + slot * p.cores + c] = s * f;
            dphi += dw * s;
        }
    }
    if lid.x == 0u {
        out[2u * wv_base + slot] = phi_grad(a) * dphi;
        if !ok {
            atomicMax(&status[0], ~slot);
        }
    }
}
