// index_map.wgsl — virtual slot ν to value row ρ = (shuffle[ν] mod N_l + offset) mod N_tot.
//
// Twin of kernels/index_map.ptx; reference src/reference/index_map.rs.
//
// N_l and N_tot may be 2^32, which a u32 cannot hold: the host passes 0 for 2^32. The sum
// π mod N_l + offset (< 2·N_tot) may pass 2^32; it is reduced with one conditional subtraction
// that watches the carry, so the result is exact for every input the host accepts.
// Launch: 256 invocations per workgroup, one per index, on a (grid_x, grid_y) grid.
// Bounds: ν >= idx_bound records its position in status[0]; a shuffle entry >= entry_bound the
// position of the ν that selected it in status[1]; both write 0.
// A status word holds ~position via atomicMax (the lowest position wins; 0 means no error).
// Not fused into the top-k kernels: it is one read and one write of 4 bytes per slot.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

const WG: u32 = 256u;

// The host's MapParams (src/gpu/params.rs).
struct Params {
    len: u32,
    has_shuffle: u32,   // 0: no shuffle table
    rows_per_layer: u32,  // 0 means 2^32
    offset: u32,
    total_rows: u32,    // 0 means 2^32
    grid_x: u32,
    idx_bound: u32,     // nu must be below it (shuffle length, 2^31 for int32 input); 0: none
    entry_bound: u32,   // shuffle entries must be below it (2^31 for an int32 table); 0: none
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> shuffle: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>>;

@compute @workgroup_size(256)
fn index_map_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * p.grid_x) * WG + lid.x;
    if i >= p.len {
        return;
    }
    var pi = idx[i];
    if p.idx_bound != 0u && pi >= p.idx_bound {
        atomicMax(&status[0], ~i);
        out[i] = 0u;
        return;
    }
    if p.has_shuffle != 0u {
        pi = shuffle[pi];
        if p.entry_bound != 0u && pi >= p.entry_bound {
            atomicMax(&status[1], ~i);
            out[i] = 0u;
            return;
        }
    }
    var a = pi;
    if p.rows_per_layer != 0u {
        a = pi % p.rows_per_layer;
    }
    let s = a + p.offset;
    let carry = s < a;
    var r = s;
    if p.total_rows != 0u && (carry || s >= p.total_rows) {
        r = s - p.total_rows;
    }
    out[i] = r;
}
