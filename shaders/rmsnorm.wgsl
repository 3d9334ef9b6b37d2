// rmsnorm.wgsl — RMSNorm over contiguous chunks (the layer's query and key norms), forward and
// backward.
//
// Twin of kernels/rmsnorm.ptx; reference src/reference/rmsnorm.rs.
//
// x is [chunks, dim]; r = sqrt(mean(x²) + eps) per chunk.
// rmsnorm_forward:        y[(g·repeat + j)·dim + i] = γ[i]·x[g·dim + i] / r_g for every j < repeat
//                         (repeat > 1 writes tied queries once per Tucker rank).
// rmsnorm_backward_rows:  with dy summed over the repeat copies, dx = γ·dy/r − x·S/(dim·r³),
//                         S = Σ γ·dy·x, and gx = dy·x/r (the per-chunk dγ terms).
// rmsnorm_backward_gamma: dγ[i] = Σ over chunks of gx[g·dim + i], in chunk order per invocation
//                         (deterministic, no atomics).
// Sums accumulate in f32.
//
// Launch: forward and backward_rows one workgroup of 128 per chunk; backward_gamma one per 128
// columns; (grid_x, grid_y) grid, wid = wg.x + wg.y·grid_x. Every index is below
// chunks·repeat·dim (or dim) by the loop bounds and the wid check; the host checks each
// buffer's length.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

const WG: u32 = 128u;

// The host's RmsParams (src/gpu/params.rs).
struct Params {
    chunks: u32,
    dim: u32,
    repeat: u32,
    eps: f32,
    grid_x: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> gx: array<f32>;

var<workgroup> partial: array<f32, WG>;

// Every invocation must call it.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let v = partial[0];
    workgroupBarrier();
    return v;
}

fn chunk_rms(g: u32, lid: u32) -> f32 {
    var sum = 0.0;
    for (var i = lid; i < p.dim; i += WG) {
        let v = x[g * p.dim + i];
        sum = fma(v, v, sum);
    }
    sum = workgroup_sum(lid, sum);
    return sqrt(sum / f32(p.dim) + p.eps);
}

// dy of element i of chunk g, summed over the repeat copies.
fn dy_sum(g: u32, i: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < p.repeat; j++) {
        s += dy[(g * p.repeat + j) * p.dim + i];
    }
    return s;
}

@compute @workgroup_size(128)
fn rmsnorm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.chunks {
        return;
    }
    let r = chunk_rms(g, lid);
    for (var i = lid; i < p.dim; i += WG) {
        let v = gamma[i] * x[g * p.dim + i] / r;
        for (var j = 0u; j < p.repeat; j++) {
            out[(g * p.repeat + j) * p.dim + i] = v;
        }
    }
}

@compute @workgroup_size(128)
fn rmsnorm_backward_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.chunks {
        return;
    }
    let r = chunk_rms(g, lid);
    var dot = 0.0;
    for (var i = lid; i < p.dim; i += WG) {
        dot = fma(gamma[i] * dy_sum(g, i), x[g * p.dim + i], dot);
    }
    dot = workgroup_sum(lid, dot);
    let shift = dot / (r * r * r * f32(p.dim));
    for (var i = lid; i < p.dim; i += WG) {
        let d = dy_sum(g, i);
        let xi = x[g * p.dim + i];
        out[g * p.dim + i] = gamma[i] * d / r - xi * shift;
        gx[g * p.dim + i] = d * xi / r;
    }
}

@compute @workgroup_size(128)
fn rmsnorm_backward_gamma(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wg.x + wg.y * p.grid_x) * WG + lid;
    if i >= p.dim {
        return;
    }
    var sum = 0.0;
    for (var g = 0u; g < p.chunks; g++) {
        sum += gx[g * p.dim + i];
    }
    out[i] = sum;
}
