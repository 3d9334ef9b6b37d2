// matmul.wgsl — the layer's dense products: C[M,N] = A B (+ C), f32, 16×16 tiles in workgroup
// memory.
//
// Twin of kernels/matmul.ptx; reference src/reference/matmul.rs.
//
// A(m, k) is a[m·a_rs + k·a_cs] and B(k, n) is b[k·b_rs + n·b_cs], so one entry serves x Wᵀ
// (forward), dY W (input gradient) and dYᵀ X (weight gradient) by its strides alone. C(m, n) is
// c[m·ldc + n]; with accumulate = 1 the product is added to what C holds. Every invocation sums
// its K products in order with fma, so the result does not depend on the launch: the weight
// gradients are deterministic without atomics.
//
// Launch: one workgroup of 256 (16 × 16) per output tile on a (grid_x, grid_y) grid,
// wid = wg.x + wg.y·grid_x; workgroups with wid ≥ tiles return at once (uniformly). Bounds: a
// load only for m < M, k < K (A) and k < K, n < N (B), zero otherwise; a store only for m < M,
// n < N; the host checks that the largest such index lies inside each buffer.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

const TILE: u32 = 16u;

// The host's MatmulParams (src/gpu/params.rs).
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    ldc: u32,
    accumulate: u32,
    tiles_n: u32,
    tiles: u32,
    grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<f32, 256>;
var<workgroup> b_tile: array<f32, 256>;

@compute @workgroup_size(256)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wid = wg.x + wg.y * p.grid_x;
    if wid >= p.tiles {
        return;
    }
    let tx = lid % TILE;
    let ty = lid / TILE;
    let row = (wid / p.tiles_n) * TILE + ty;
    let col = (wid % p.tiles_n) * TILE + tx;
    var acc = 0.0;
    for (var kt = 0u; kt < p.k; kt += TILE) {
        let ka = kt + tx;
        var av = 0.0;
        if row < p.m && ka < p.k {
            av = a[row * p.a_rs + ka * p.a_cs];
        }
        a_tile[lid] = av;
        let kb = kt + ty;
        var bv = 0.0;
        if kb < p.k && col < p.n {
            bv = b[kb * p.b_rs + col * p.b_cs];
        }
        b_tile[lid] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc = fma(a_tile[ty * TILE + kk], b_tile[kk * TILE + tx], acc);
        }
        workgroupBarrier();
    }
    if row < p.m && col < p.n {
        let at = row * p.ldc + col;
        if p.accumulate != 0u {
            acc += c[at];
        }
        c[at] = acc;
    }
}
