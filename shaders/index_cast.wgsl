// index_cast.wgsl — index dtype casts around the kernels, which read and write u32 indices:
// int64 indices narrowed to u32 (each value checked), u32 results widened to int64.
//
// Twin of kernels/index_cast.ptx; reference: the C ABI host path's `Borrows::indices` /
// `write_indices` (src/abi/dlpack.rs).
//
// WGSL has no 64-bit integers: an int64 is two u32 words, low then high (little-endian).
// Launch: 256 invocations per workgroup, one per index, on a (grid_x, grid_y) grid.
// narrow: a value below 0 or at or past the bound (one unsigned comparison) records its
// position in status[0] (~position by atomicMax: the lowest wins, 0 means none) and writes 0.
// Offsets: i < len < 2^32; the int64 buffer's word offset 2i fits u32 because the host binds
// it only when its 8·len bytes fit the adapter's binding limit, which is below 2^32 bytes.
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

const WG: u32 = 256u;

// The host's CastParams (src/gpu/params.rs).
struct Params {
    len: u32,
    grid_x: u32,
    bound_lo: u32,   // the exclusive bound of a narrowed value (at most 2^32), low word
    bound_hi: u32,   // and high word
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;

@compute @workgroup_size(256)
fn index_cast_narrow(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * p.grid_x) * WG + lid.x;
    if i >= p.len {
        return;
    }
    let lo = src[2u * i];
    let hi = src[2u * i + 1u];
    // Unsigned: a negative value has hi >= 2^31, past every bound (at most 2^32, hi <= 1).
    let past = hi > p.bound_hi || (hi == p.bound_hi && lo >= p.bound_lo);
    if past {
        atomicMax(&status[0], ~i);
        dst[i] = 0u;
        return;
    }
    dst[i] = lo;
}

@compute @workgroup_size(256)
fn index_cast_widen(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * p.grid_x) * WG + lid.x;
    if i >= p.len {
        return;
    }
    dst[2u * i] = src[i];
    dst[2u * i + 1u] = 0u;
}
