// row_sort.wgsl — stable sort of slots by value row: the CSR order of the deterministic
// backward (Part I §I.3).
//
// Twin of kernels/row_sort.ptx; reference src/reference/row_sort.rs.
//
// Keys are the rows clamped to N (a bad row becomes the sentinel N and sorts last); values are
// the flat slot indices. An LSD radix sort with 8-bit digits, ceil(bits(N)/8) passes, each pass
// stable, so equal rows keep their (token, slot) order and the result is the same on every run:
//   row_sort_init       keys[i] = min(rows[i], N), vals[i] = i
//   row_sort_histogram  per tile of 256 entries, count each digit: hist[digit·tiles + tile]
//   row_sort_scan       one workgroup: exclusive prefix sum over hist (digit-major)
//   row_sort_scatter    entry i of tile w goes to hist[digit·tiles + w] + (number of earlier
//                       entries of the tile with the same digit)
//
// Launch: workgroups of 256 on a (grid_x, grid_y) grid flattened to wid = wg.x + wg.y·grid_x;
// one per tile (init: per 256 entries; scan: a single workgroup).
//
// build.rs appends shaders/helpers.wgsl (the functions every kernel module shares).

const WG: u32 = 256u;

// The host's SortParams (src/gpu/params.rs).
struct Params {
    entries: u32,
    table_rows: u32,
    shift: u32,
    tiles: u32,
    grid_x: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> keys_in: array<u32>;
@group(0) @binding(3) var<storage, read> vals_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> keys_out: array<u32>;
@group(0) @binding(5) var<storage, read_write> vals_out: array<u32>;
@group(0) @binding(6) var<storage, read_write> hist: array<u32>;

var<workgroup> counts: array<atomic<u32>, WG>;
var<workgroup> digits: array<u32, WG>;
var<workgroup> sums: array<u32, WG>;

@compute @workgroup_size(256)
fn row_sort_init(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.x + wg.y * p.grid_x) * WG + lid.x;
    if i < p.entries {
        keys_out[i] = min(rows[i], p.table_rows);
        vals_out[i] = i;
    }
}

@compute @workgroup_size(256)
fn row_sort_histogram(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wg.x + wg.y * p.grid_x;
    if tile >= p.tiles {
        return;
    }
    atomicStore(&counts[lid.x], 0u);
    workgroupBarrier();
    let i = tile * WG + lid.x;
    if i < p.entries {
        atomicAdd(&counts[(keys_in[i] >> p.shift) & 255u], 1u);
    }
    workgroupBarrier();
    hist[lid.x * p.tiles + tile] = atomicLoad(&counts[lid.x]);
}

@compute @workgroup_size(256)
fn row_sort_scan(@builtin(local_invocation_id) lid: vec3<u32>) {
    // Each invocation sums a contiguous chunk, the chunk totals are scanned in workgroup memory,
    // then each chunk is rewritten as exclusive prefixes.
    let len = WG * p.tiles;
    let per = p.tiles;
    let start = lid.x * per;
    var total = 0u;
    for (var i = start; i < start + per; i++) {
        total += hist[i];
    }
    sums[lid.x] = total;
    workgroupBarrier();
    if lid.x == 0u {
        var run = 0u;
        for (var j = 0u; j < WG; j++) {
            let v = sums[j];
            sums[j] = run;
            run += v;
        }
    }
    workgroupBarrier();
    var run = sums[lid.x];
    for (var i = start; i < min(start + per, len); i++) {
        let v = hist[i];
        hist[i] = run;
        run += v;
    }
}

@compute @workgroup_size(256)
fn row_sort_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = wg.x + wg.y * p.grid_x;
    if tile >= p.tiles {
        return;
    }
    let i = tile * WG + lid.x;
    let valid = i < p.entries;
    var key = 0u;
    var digit = 256u; // past every real digit: invalid entries never match
    if valid {
        key = keys_in[i];
        digit = (key >> p.shift) & 255u;
    }
    digits[lid.x] = digit;
    workgroupBarrier();
    if valid {
        var rank = 0u;
        for (var j = 0u; j < lid.x; j++) {
            rank += select(0u, 1u, digits[j] == digit);
        }
        let dest = hist[digit * p.tiles + tile] + rank;
        keys_out[dest] = key;
        vals_out[dest] = vals_in[i];
    }
}
