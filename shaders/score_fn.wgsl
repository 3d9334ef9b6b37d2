// score_fn.wgsl — the score functions over a top-k op's scores, forward and backward.
//
// Twin of kernels/score_fn.ptx; reference src/reference/score_fn.rs.
//
// Scores are [T, H, k, Cn] (Cn = 1 for [T, H, k]); a group is one (t, h, core): its k values at
// (th·k + slot)·Cn + c. func: 0 raw, 1 softmax over the group (max-shifted), 2 relu, 3 sigmoid.
// score_fn_forward:  out = f(score)
// score_fn_backward: out = the vector-Jacobian product with dout (softmax: y ⊙ (dout − Σ y·dout);
//                    relu: dout where score > 0; sigmoid: dout·y·(1 − y)).
//
// Launch: one workgroup of 128 per group on a (grid_x, grid_y) grid, wid = wg.x + wg.y·grid_x.
// Every index is below groups·k·Cn, checked by the loop bounds.
// Not fused into the top-k kernels: Raw, the UltraMemV2 default, needs no pass at all, and the
// others cost one read and one write of T·H·k·Cn floats.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

const WG: u32 = 128u;

// The host's ScoreParams (src/gpu/params.rs).
struct Params {
    groups: u32,
    k: u32,
    cores: u32,
    func: u32,
    grid_x: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> score: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

fn at(g: u32, slot: u32) -> u32 {
    return ((g / p.cores) * p.k + slot) * p.cores + g % p.cores;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Every invocation must call these.
fn workgroup_max(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let v = partial[0];
    workgroupBarrier();
    return v;
}

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

// The softmax's max and denominator of group g.
fn softmax_stats(lid: u32, g: u32) -> vec2<f32> {
    var m = -3.4028235e38;
    for (var s = lid; s < p.k; s += WG) {
        m = max(m, score[at(g, s)]);
    }
    let mx = workgroup_max(lid, m);
    var sum = 0.0;
    for (var s = lid; s < p.k; s += WG) {
        sum += exp(score[at(g, s)] - mx);
    }
    return vec2<f32>(mx, workgroup_sum(lid, sum));
}

@compute @workgroup_size(128)
fn score_fn_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.groups {
        return;
    }
    let lid = lid3.x;
    var stats = vec2<f32>(0.0, 1.0);
    if p.func == 1u {
        stats = softmax_stats(lid, g);
    }
    for (var s = lid; s < p.k; s += WG) {
        let i = at(g, s);
        let x = score[i];
        var y = x;
        switch p.func {
            case 1u: {
                y = exp(x - stats.x) / stats.y;
            }
            case 2u: {
                y = max(x, 0.0);
            }
            case 3u: {
                y = sigmoid(x);
            }
            default: {}
        }
        out[i] = y;
    }
}

@compute @workgroup_size(128)
fn score_fn_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let g = wg.x + wg.y * p.grid_x;
    if g >= p.groups {
        return;
    }
    let lid = lid3.x;
    var stats = vec2<f32>(0.0, 1.0);
    var inner = 0.0;
    if p.func == 1u {
        stats = softmax_stats(lid, g);
        var acc = 0.0;
        for (var s = lid; s < p.k; s += WG) {
            let i = at(g, s);
            acc += exp(score[i] - stats.x) / stats.y * dout[i];
        }
        inner = workgroup_sum(lid, acc);
    }
    for (var s = lid; s < p.k; s += WG) {
        let i = at(g, s);
        let x = score[i];
        let dy = dout[i];
        var dx = dy;
        switch p.func {
            case 1u: {
                dx = exp(x - stats.x) / stats.y * (dy - inner);
            }
            case 2u: {
                dx = select(0.0, dy, x > 0.0);
            }
            case 3u: {
                let y = sigmoid(x);
                dx = dy * y * (1.0 - y);
            }
            default: {}
        }
        out[i] = dx;
    }
}
