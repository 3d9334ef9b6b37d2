//! Profiled launches: exact warp-level counts on hand-written kernels, the clock simulation,
//! block sampling, and `mma.sync` against a reference product.

use ptx_interp::{
    AccessKind, ErrorKind, InstrClass, Latencies, LaunchProfile, Machine, Module, ProfileConfig,
};

const HEADER: &str = ".version 8.0\n.target sm_80\n.address_size 64\n";

fn module(body: &str) -> Module {
    Module::parse("profile.ptx", &format!("{HEADER}{body}")).unwrap_or_else(|e| panic!("{e}"))
}

/// Latencies all different from each other, so a wrong class shows.
const LAT: Latencies = Latencies {
    alu: 4,
    fp32: 5,
    fp64: 9,
    conversion: 6,
    sfu: 13,
    shared: 30,
    global_first_touch: 500,
    global_retouch: 200,
    global_l1_hit: 40,
    atomic: 700,
    shuffle: 20,
    barrier: 25,
    mma: 33,
    branch: 3,
};

fn cfg() -> ProfileConfig {
    ProfileConfig {
        blocks: None,
        run_others: false,
        stop: None,
        latency: LAT,
    }
}

fn profile(
    m: &mut Machine,
    module: &Module,
    grid: [u32; 3],
    block: [u32; 3],
    params: &[&[u8]],
) -> LaunchProfile {
    m.launch_profiled(module, "k", grid, block, params, &cfg())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Issues by class as (name, count), the nonzero ones, for readable failures.
fn issues(p: &ptx_interp::BlockProfile) -> Vec<(&'static str, u64)> {
    InstrClass::ALL
        .iter()
        .map(|&c| (c.name(), p.issued(c)))
        .filter(|&(_, n)| n != 0)
        .collect()
}

fn words(m: &mut Machine, buf: u64, n: usize) -> Vec<u32> {
    m.read(buf, 4 * n)
        .unwrap()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Warp-level issues.

const STRAIGHT: &str = r#"
.visible .entry k(.param .u64 out_ptr)
{
    .reg .b64 %out, %a;
    .reg .b32 %t, %x, %y;
    .reg .f32 %f, %g;
    .reg .f64 %d;
    .reg .pred %p;
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mul.wide.u32 %a, %t, 4;
    add.s64 %a, %out, %a;
    cvt.rn.f32.u32 %f, %t;
    fma.rn.f32 %g, %f, %f, %f;
    ex2.approx.f32 %g, %g;
    tanh.approx.f32 %g, %g;
    div.approx.f32 %g, %g, %f;
    div.rn.f32 %g, %g, %f;
    cvt.f64.f32 %d, %f;
    add.f64 %d, %d, %d;
    setp.lt.u32 %p, %t, 1000;
    @!%p add.u32 %x, %t, 1;
    mov.b32 %y, %f;
    st.global.u32 [%a], %y;
    ret;
}
"#;

#[test]
fn straight_line_issues_are_static_counts_times_warps() {
    let module = module(STRAIGHT);
    let mut m = Machine::new();
    let out = m.alloc(4 * 64);
    // 48 threads: two warps, the second half full; 64 threads: two full warps. Same issues.
    for threads in [48u32, 64] {
        let p = profile(
            &mut m,
            &module,
            [1, 1, 1],
            [threads, 1, 1],
            &[&out.to_le_bytes()],
        );
        assert_eq!(p.blocks.len(), 1);
        let b = &p.blocks[0];
        assert_eq!(b.warps, 2);
        let per_warp = [
            ("fp32", 2), // fma, div.rn
            ("fp64", 1),
            // mul.wide, add.s64, setp, the predicated-off add, mov.b32
            ("int", 5),
            ("conversion", 2),
            ("sfu", 3), // ex2, tanh, div.approx
            ("global_store", 1),
            ("branch", 1),
            ("param_load", 1),
            ("other", 1), // mov of %tid.x
        ];
        let want: Vec<(&str, u64)> = per_warp.iter().map(|&(c, n)| (c, 2 * n)).collect();
        assert_eq!(issues(b), want);
        let static_count = module.function("k").unwrap().code.len() as u64;
        assert_eq!(b.total_issues(), 2 * static_count);
        // Every thread ran every instruction, the predicated-off one included.
        assert_eq!(p.thread_instructions, u64::from(threads) * static_count);
        assert_eq!(b.thread_instructions, p.thread_instructions);
    }
}

const DIVERGENT: &str = r#"
.visible .entry k(.param .u64 out_ptr)
{
    .reg .b64 %out, %a;
    .reg .b32 %t, %x, %y, %i, %n;
    .reg .pred %p, %q;
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    and.b32 %x, %t, 1;
    setp.eq.u32 %p, %x, 0;
    @%p bra EVEN;
    add.u32 %y, %t, 100;
    bra DONE;
EVEN:
    add.u32 %y, %t, 200;
DONE:
    and.b32 %n, %t, 31;
    add.u32 %n, %n, 1;
    mov.u32 %i, 0;
LOOP:
    add.u32 %y, %y, %i;
    add.u32 %i, %i, 1;
    setp.lt.u32 %q, %i, %n;
    @%q bra LOOP;
    mul.wide.u32 %a, %t, 4;
    add.s64 %a, %out, %a;
    st.global.u32 [%a], %y;
    ret;
}
"#;

#[test]
fn divergent_branches_issue_both_sides_and_loops_their_longest_trip() {
    let module = module(DIVERGENT);
    let mut m = Machine::new();
    let out = m.alloc(4 * 64);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [64, 1, 1],
        &[&out.to_le_bytes()],
    );
    let b = &p.blocks[0];
    // Per warp: and, setp, odd add, even add, and, add, mov (7), the loop body's add, add,
    // setp at the longest trip count (lane 31: 32 iterations), mul.wide, add.s64.
    let int = 7 + 3 * 32 + 2;
    // @%p bra, bra DONE, the loop's @%q bra × 32, ret.
    let branch = 1 + 1 + 32 + 1;
    assert_eq!(
        issues(b),
        vec![
            ("int", 2 * int),
            ("global_store", 2),
            ("branch", 2 * branch),
            ("param_load", 2),
            ("other", 2),
        ]
    );
    // The results: odd lanes took the other side; lane t adds 0 + 1 + ... + (t % 32).
    let r = words(&mut m, out, 64);
    for (t, &v) in r.iter().enumerate() {
        let t = t as u32;
        let side = if t.is_multiple_of(2) { 200 } else { 100 };
        let lane = t % 32;
        assert_eq!(v, t + side + lane * (lane + 1) / 2, "thread {t}");
    }
}

// ---------------------------------------------------------------------------------------------
// Global accesses.

const GLOBAL: &str = r#"
.visible .entry k(.param .u64 in_ptr, .param .u64 out_ptr)
{
    .reg .b64 %in, %out, %a, %o;
    .reg .b32 %t, %v0, %v1, %v2, %v3, %v4, %v5, %v6;
    ld.param.u64 %in, [in_ptr];
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mul.wide.u32 %o, %t, 4;
    add.s64 %a, %in, %o;
    ld.global.u32 %v0, [%a];
    mul.wide.u32 %o, %t, 16;
    add.s64 %a, %in, %o;
    ld.global.v4.u32 {%v1, %v2, %v3, %v4}, [%a];
    mul.wide.u32 %o, %t, 128;
    add.s64 %a, %in, %o;
    ld.global.u32 %v5, [%a];
    ld.global.u32 %v6, [%in];
    add.u32 %v0, %v0, %v1;
    add.u32 %v0, %v0, %v2;
    add.u32 %v0, %v0, %v3;
    add.u32 %v0, %v0, %v4;
    add.u32 %v0, %v0, %v5;
    add.u32 %v0, %v0, %v6;
    mul.wide.u32 %o, %t, 16;
    add.s64 %a, %out, %o;
    st.global.v4.u32 [%a], {%v0, %v1, %v5, %v6};
    ret;
}
"#;

#[test]
fn global_accesses_count_sectors_lines_and_useful_bytes() {
    let module = module(GLOBAL);
    let mut m = Machine::new();
    let input = m.alloc(4096);
    let data: Vec<u8> = (0..1024u32).flat_map(|i| i.to_le_bytes()).collect();
    m.write(input, &data).unwrap();
    let out = m.alloc(16 * 32);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [32, 1, 1],
        &[&input.to_le_bytes(), &out.to_le_bytes()],
    );
    let b = &p.blocks[0];
    assert_eq!(b.global.len(), 1);
    let acc = &b.global[0];
    let summary: Vec<(AccessKind, u32, u32, usize, u32, u32)> = acc
        .iter()
        .map(|a| {
            (
                a.kind,
                a.lanes,
                a.bytes_per_lane,
                a.sectors.len(),
                a.lines,
                a.useful_bytes,
            )
        })
        .collect();
    use AccessKind::*;
    assert_eq!(
        summary,
        vec![
            (Load, 32, 4, 4, 1, 128),    // coalesced
            (Load, 32, 16, 16, 4, 512),  // v4
            (Load, 32, 4, 32, 32, 128),  // stride 128 bytes
            (Load, 32, 4, 1, 1, 4),      // broadcast
            (Store, 32, 16, 16, 4, 512), // v4 store
        ]
    );
    let s0 = input / 32;
    assert_eq!(acc[0].sectors, vec![s0, s0 + 1, s0 + 2, s0 + 3]);
    assert_eq!(
        acc[2].sectors,
        (0..32).map(|i| s0 + 4 * i).collect::<Vec<_>>()
    );
    assert_eq!(acc[3].sectors, vec![s0]);
    // The static instruction of each: the loads are instructions 5, 8, 11 and 12 of `k`.
    let k = module.functions.iter().position(|f| f.name == "k").unwrap() as u32;
    assert_eq!(acc[0].instruction, (k, 5));
    assert_eq!(acc[3].instruction, (k, 12));
    assert_eq!(b.issued(InstrClass::GlobalLoad), 4);
    assert_eq!(b.issued(InstrClass::GlobalStore), 1);
    // The v4 forms load and store the right values.
    let r = words(&mut m, out, 4 * 32);
    for t in 0..32u32 {
        let v1 = 4 * t;
        let sum = t + (4 * t) + (4 * t + 1) + (4 * t + 2) + (4 * t + 3) + 32 * t;
        assert_eq!(
            &r[4 * t as usize..4 * t as usize + 4],
            &[sum, v1, 32 * t, 0],
            "thread {t}"
        );
    }
}

const V4F32: &str = r#"
.visible .entry k(.param .u64 in_ptr, .param .u64 out_ptr)
{
    .reg .b64 %in, %out, %o;
    .reg .b32 %t;
    .reg .f32 %a, %b, %c, %d;
    ld.param.u64 %in, [in_ptr];
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mul.wide.u32 %o, %t, 16;
    add.s64 %in, %in, %o;
    add.s64 %out, %out, %o;
    ld.global.v4.f32 {%a, %b, %c, %d}, [%in];
    add.f32 %a, %a, %d;
    st.global.v4.f32 [%out], {%d, %c, %b, %a};
    ret;
}
"#;

#[test]
fn vector_f32_loads_and_stores() {
    let module = module(V4F32);
    let mut m = Machine::new();
    let input = m.alloc(16 * 8);
    let out = m.alloc(16 * 8);
    let vals: Vec<f32> = (0..32).map(|i| i as f32 * 0.5).collect();
    m.write(
        input,
        &vals
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    m.launch(
        &module,
        "k",
        [1, 1, 1],
        [8, 1, 1],
        &[&input.to_le_bytes(), &out.to_le_bytes()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r: Vec<f32> = words(&mut m, out, 32)
        .into_iter()
        .map(f32::from_bits)
        .collect();
    for t in 0..8 {
        let v = &vals[4 * t..4 * t + 4];
        assert_eq!(&r[4 * t..4 * t + 4], &[v[3], v[2], v[1], v[0] + v[3]]);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared-memory bank conflicts.

/// Each lane stores and loads the 4-byte word `lane · STRIDE + 3` of a shared array.
const SHARED: &str = r#"
.visible .entry k()
{
    .reg .b32 %t, %w, %s, %v;
    .shared .align 16 .b8 tile[8192];
    mov.u32 %t, %tid.x;
    mul.lo.u32 %w, %t, STRIDE;
    add.u32 %w, %w, 3;
    shl.b32 %s, %w, 2;
    mov.u32 %v, tile;
    add.u32 %s, %s, %v;
    st.shared.u32 [%s], %t;
    ld.shared.u32 %v, [%s];
    ret;
}
"#;

const SHARED_BROADCAST: &str = r#"
.visible .entry k()
{
    .reg .b32 %t, %v;
    .reg .pred %p;
    .shared .align 4 .b32 cell[8];
    mov.u32 %t, %tid.x;
    setp.eq.u32 %p, %t, 0;
    @%p st.shared.u32 [cell+12], %t;
    bar.sync 0;
    ld.shared.u32 %v, [cell+12];
    ret;
}
"#;

const SHARED_V4: &str = r#"
.visible .entry k()
{
    .reg .b32 %t, %s, %v, %x, %y, %z;
    .shared .align 16 .b8 tile[512];
    mov.u32 %t, %tid.x;
    shl.b32 %s, %t, 4;
    mov.u32 %v, tile;
    add.u32 %s, %s, %v;
    st.shared.v4.u32 [%s], {%t, %t, %t, %t};
    ld.shared.v4.u32 {%v, %x, %y, %z}, [%s];
    ret;
}
"#;

#[test]
fn shared_wavefronts_count_bank_conflicts() {
    let mut m = Machine::new();
    let run = |m: &mut Machine, src: &str| {
        let p = profile(m, &module(src), [1, 1, 1], [32, 1, 1], &[]);
        let b = &p.blocks[0];
        (b.shared_requests, b.shared_wavefronts)
    };
    // A store and a load, each: consecutive words → 1 wavefront each.
    assert_eq!(run(&mut m, &SHARED.replace("STRIDE", "1")), (2, 2));
    // A 32×32 f32 tile read by column: every lane in the same bank → 32 each.
    assert_eq!(run(&mut m, &SHARED.replace("STRIDE", "32")), (2, 64));
    // Padded to a stride of 33 words: 32 different banks → 1 each.
    assert_eq!(run(&mut m, &SHARED.replace("STRIDE", "33")), (2, 2));
    // Stride 2: two words per bank → 2 each.
    assert_eq!(run(&mut m, &SHARED.replace("STRIDE", "2")), (2, 4));
    // All lanes the same word: a broadcast, 1 wavefront (the store is lane 0's alone).
    assert_eq!(run(&mut m, SHARED_BROADCAST), (2, 2));
    // v4 by 32 lanes: 128 words over 32 banks → 4 each.
    assert_eq!(run(&mut m, SHARED_V4), (2, 8));
}

// ---------------------------------------------------------------------------------------------
// Loads in flight.

const INDEPENDENT: &str = r#"
.visible .entry k(.param .u64 in_ptr, .param .u64 out_ptr)
{
    .reg .b64 %in, %out, %a, %o;
    .reg .b32 %t, %v0, %v1, %v2, %v3, %s;
    ld.param.u64 %in, [in_ptr];
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mul.wide.u32 %o, %t, 4;
    add.s64 %a, %in, %o;
    ld.global.u32 %v0, [%a];
    ld.global.u32 %v1, [%a+128];
    ld.global.u32 %v2, [%a+256];
    ld.global.u32 %v3, [%a+384];
    add.u32 %s, %v0, %v1;
    add.u32 %s, %s, %v2;
    add.u32 %s, %s, %v3;
    add.s64 %a, %out, %o;
    st.global.u32 [%a], %s;
    ret;
}
"#;

#[test]
fn independent_loads_are_in_flight_together() {
    let module = module(INDEPENDENT);
    let mut m = Machine::new();
    let input = m.alloc(512);
    let out = m.alloc(128);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [32, 1, 1],
        &[&input.to_le_bytes(), &out.to_le_bytes()],
    );
    let f = &p.blocks[0].inflight;
    // First wait (v0 + v1): 4 loads of 4 bytes pending, 16 bytes per lane, 512 per warp. Then
    // v2 with 2 pending (256), then v3 alone (128).
    assert_eq!(f.waits, 3);
    assert_eq!(f.max_warp_bytes_at_wait, 512);
    assert_eq!(f.total_warp_bytes_at_wait, 512 + 256 + 128);
    assert!((f.mean_warp_bytes_at_wait - 896.0 / 3.0).abs() < 1e-9);
    assert_eq!(f.global_loads_before_first_wait, 4.0);
}

/// A pointer chase: `N` dependent 8-byte loads, `%p = *%p`, then a store of the last.
const CHASE: &str = r#"
.visible .entry k(.param .u64 head, .param .u64 out_ptr)
{
    .reg .b64 %p, %out, %o;
    .reg .b32 %i, %b;
    .reg .pred %q;
    ld.param.u64 %p, [head];
    ld.param.u64 %out, [out_ptr];
    // Each block stores its own word (two blocks storing one would race).
    mov.u32 %b, %ctaid.x;
    mul.wide.u32 %o, %b, 8;
    add.s64 %out, %out, %o;
    mov.u32 %i, 0;
LOOP:
    ld.global.u64 %p, [%p];
    add.u32 %i, %i, 1;
    setp.lt.u32 %q, %i, N;
    @%q bra LOOP;
    st.global.u64 [%out], %p;
    ret;
}
"#;

/// A buffer of `nodes` 64-byte nodes (each in its own sector), node `i` pointing at node
/// `(i + 1) % nodes`.
fn ring(m: &mut Machine, nodes: u64) -> u64 {
    let buf = m.alloc(64 * nodes as usize);
    for i in 0..nodes {
        let next = buf + 64 * ((i + 1) % nodes);
        m.write(buf + 64 * i, &next.to_le_bytes()).unwrap();
    }
    buf
}

#[test]
fn a_pointer_chase_has_one_load_in_flight_and_costs_a_latency_per_load() {
    const N: u64 = 40;
    let module = module(&CHASE.replace("N;", &format!("{N};")));
    let mut m = Machine::new();
    let out = m.alloc(16);
    // Distinct sectors: every load is a first touch.
    let distinct = ring(&mut m, N);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [1, 1, 1],
        &[&distinct.to_le_bytes(), &out.to_le_bytes()],
    );
    let b = &p.blocks[0];
    assert_eq!(m.read(out, 8).unwrap(), distinct.to_le_bytes());
    // Each load waits for the one before (and the store for the last): one 8-byte load in
    // flight at each wait.
    assert_eq!(b.inflight.waits, N);
    assert_eq!(b.inflight.max_warp_bytes_at_wait, 8);
    assert_eq!(b.inflight.total_warp_bytes_at_wait, 8 * N);
    assert_eq!(b.inflight.global_loads_before_first_wait, 1.0);
    let first = u64::from(LAT.global_first_touch);
    let cp = b.critical_path_cycles;
    assert!(
        cp >= N * first && cp < N * first + 40,
        "critical path {cp}, {N} × {first} = {}",
        N * first
    );
    // A ring of 4 nodes revisited by one block: 4 first touches, the rest hit its L1.
    let small = ring(&mut m, 4);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [1, 1, 1],
        &[&small.to_le_bytes(), &out.to_le_bytes()],
    );
    let retouch = u64::from(LAT.global_retouch);
    let l1 = u64::from(LAT.global_l1_hit);
    let want = 4 * first + (N - 4) * l1;
    let cp = p.blocks[0].critical_path_cycles;
    assert!(
        cp >= want && cp < want + 40,
        "critical path {cp}, expected about {want}"
    );
    // Two blocks chase the same ring: the second finds the nodes in L2 (another block touched
    // them), then in its own L1.
    let two = profile(
        &mut m,
        &module,
        [2, 1, 1],
        [1, 1, 1],
        &[&small.to_le_bytes(), &out.to_le_bytes()],
    );
    let want2 = 4 * retouch + (N - 4) * l1;
    let cp2 = two.blocks[1].critical_path_cycles;
    assert!(
        cp2 >= want2 && cp2 < want2 + 40,
        "second block's critical path {cp2}, expected about {want2}"
    );
    // The same chase in a second launch: the set of touched sectors is per launch.
    let p2 = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [1, 1, 1],
        &[&small.to_le_bytes(), &out.to_le_bytes()],
    );
    assert_eq!(p2.blocks[0].critical_path_cycles, cp);
}

/// Thread 0 chases 20 pointers (and uses the last), then the block meets at a barrier and
/// every thread stores `%clock64`.
const BARRIER: &str = r#"
.visible .entry k(.param .u64 head, .param .u64 out_ptr)
{
    .reg .b64 %p, %out, %o, %c;
    .reg .b32 %i, %t;
    .reg .pred %q, %z;
    ld.param.u64 %p, [head];
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mov.u32 %i, 0;
    setp.ne.u32 %z, %t, 0;
    @%z bra WAIT;
LOOP:
    ld.global.u64 %p, [%p];
    add.u32 %i, %i, 1;
    setp.lt.u32 %q, %i, 20;
    @%q bra LOOP;
    mov.b64 %c, %p;
WAIT:
    bar.sync 0;
    mov.u64 %c, %clock64;
    mul.wide.u32 %o, %t, 8;
    add.s64 %o, %out, %o;
    st.global.u64 [%o], %c;
    ret;
}
"#;

#[test]
fn a_barrier_makes_the_block_wait_for_its_slowest_thread() {
    let module = module(BARRIER);
    let mut m = Machine::new();
    let head = ring(&mut m, 20);
    let out = m.alloc(8 * 64);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [64, 1, 1],
        &[&head.to_le_bytes(), &out.to_le_bytes()],
    );
    let clocks: Vec<u64> = m
        .read(out, 8 * 64)
        .unwrap()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let chase = 20 * u64::from(LAT.global_first_touch);
    // Every thread leaves the barrier together, after thread 0's chase.
    assert!(clocks.iter().all(|&c| c == clocks[0]), "{clocks:?}");
    assert!(
        clocks[0] >= chase + u64::from(LAT.barrier) && clocks[0] < chase + 80,
        "{}",
        clocks[0]
    );
    let cp = p.blocks[0].critical_path_cycles;
    assert!(
        cp > clocks[0] && cp < clocks[0] + 20,
        "{cp} vs {}",
        clocks[0]
    );
    // Unprofiled, %clock64 reads 0.
    m.launch(
        &module,
        "k",
        [1, 1, 1],
        [64, 1, 1],
        &[&head.to_le_bytes(), &out.to_le_bytes()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(m.read(out, 8 * 64).unwrap().iter().all(|&b| b == 0));
}

/// Lane 0 loads a word; the warp shuffles it to every lane, votes, and stores `%clock64`.
const SHUFFLE: &str = r#"
.visible .entry k(.param .u64 in_ptr, .param .u64 out_ptr)
{
    .reg .b64 %in, %out, %o, %c;
    .reg .b32 %t, %v, %w, %m;
    .reg .pred %p, %q;
    ld.param.u64 %in, [in_ptr];
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mov.u32 %v, 7;
    setp.eq.u32 %p, %t, 0;
    @%p ld.global.u32 %v, [%in];
    shfl.sync.idx.b32 %w, %v, 0, 31, 0xffffffff;
    setp.eq.u32 %q, %w, 42;
    vote.sync.ballot.b32 %m, %q, 0xffffffff;
    mov.u64 %c, %clock64;
    mul.wide.u32 %o, %t, 8;
    add.s64 %o, %out, %o;
    st.global.u64 [%o], %c;
    ret;
}
"#;

#[test]
fn warp_collectives_wait_for_the_slowest_lane_and_count_once() {
    let module = module(SHUFFLE);
    let mut m = Machine::new();
    let input = m.alloc(4);
    m.write(input, &42u32.to_le_bytes()).unwrap();
    let out = m.alloc(8 * 64);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [64, 1, 1],
        &[&input.to_le_bytes(), &out.to_le_bytes()],
    );
    let b = &p.blocks[0];
    let static_count = module.function("k").unwrap().code.len() as u64;
    // Every thread counts each instruction once, collectives included.
    assert_eq!(p.thread_instructions, 64 * static_count);
    assert_eq!(b.issued(InstrClass::Shuffle), 2);
    assert_eq!(b.issued(InstrClass::Vote), 2);
    // The guarded load issues in both warps, though only lane 0 of warp 0 loads.
    assert_eq!(b.issued(InstrClass::GlobalLoad), 2);
    assert_eq!(b.global[0][0].lanes, 1);
    assert!(b.global[1].iter().all(|a| a.kind == AccessKind::Store));
    // Warp 0 waits at the shuffle for lane 0's load (first touch), then at the vote for the
    // setp; warp 1 only for its own lanes' ALU work.
    let clocks: Vec<u64> = m
        .read(out, 8 * 64)
        .unwrap()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(clocks[..32].iter().all(|&c| c == clocks[0]), "{clocks:?}");
    assert!(clocks[32..].iter().all(|&c| c == clocks[32]), "{clocks:?}");
    let (load, shfl, alu) = (
        u64::from(LAT.global_first_touch),
        u64::from(LAT.shuffle),
        u64::from(LAT.alu),
    );
    assert!(clocks[0] >= load + 2 * shfl + alu, "{}", clocks[0]);
    assert!(clocks[0] < load + 2 * shfl + alu + 30, "{}", clocks[0]);
    assert!(
        clocks[32] >= 2 * shfl + alu && clocks[32] < 2 * shfl + alu + 30,
        "{}",
        clocks[32]
    );
    // The shuffle read lane 0's pending load: one wait in warp 0, 4 bytes in flight.
    assert_eq!(b.inflight.waits, 1);
    assert_eq!(b.inflight.max_warp_bytes_at_wait, 4);
}

// ---------------------------------------------------------------------------------------------
// Block sampling.

const BLOCKS: &str = r#"
.visible .entry k(.param .u64 out_ptr)
{
    .reg .b64 %out, %o;
    .reg .b32 %t, %b, %x, %y, %n;
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mov.u32 %x, %ctaid.x;
    mov.u32 %y, %ctaid.y;
    mov.u32 %n, %nctaid.x;
    mad.lo.u32 %b, %y, %n, %x;
    mov.u32 %n, %ntid.x;
    mad.lo.u32 %x, %b, %n, %t;
    mul.wide.u32 %o, %x, 4;
    add.s64 %o, %out, %o;
    add.u32 %b, %b, 1;
    st.global.u32 [%o], %b;
    ret;
}
"#;

#[test]
fn sampled_blocks_are_the_only_ones_that_run_unless_the_others_are_asked_for() {
    let module = module(BLOCKS);
    let mut m = Machine::new();
    let out = m.alloc(4 * 8 * 32);
    let cfg = ProfileConfig {
        blocks: Some(vec![5, 0]),
        run_others: false,
        stop: None,
        latency: LAT,
    };
    let p = m
        .launch_profiled(
            &module,
            "k",
            [4, 2, 1],
            [32, 1, 1],
            &[&out.to_le_bytes()],
            &cfg,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // In run order (by id), block 5 being (1, 1, 0).
    assert_eq!(p.blocks.iter().map(|b| b.block).collect::<Vec<_>>(), [0, 5]);
    let static_count = module.function("k").unwrap().code.len() as u64;
    assert_eq!(p.thread_instructions, 2 * 32 * static_count);
    let r = words(&mut m, out, 8 * 32);
    for (i, &v) in r.iter().enumerate() {
        let block = i / 32;
        let want = if block == 0 || block == 5 {
            block as u32 + 1
        } else {
            0
        };
        assert_eq!(v, want, "word {i}");
    }
    // A block outside the grid is a launch error.
    let bad = ProfileConfig {
        blocks: Some(vec![8]),
        run_others: false,
        stop: None,
        latency: LAT,
    };
    let e = m
        .launch_profiled(
            &module,
            "k",
            [4, 2, 1],
            [32, 1, 1],
            &[&out.to_le_bytes()],
            &bad,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Launch);
    // With run_others, every block writes, and only the listed ones are profiled.
    let out = m.alloc(4 * 8 * 32);
    let p = m
        .launch_profiled(
            &module,
            "k",
            [4, 2, 1],
            [32, 1, 1],
            &[&out.to_le_bytes()],
            &ProfileConfig {
                run_others: true,
                ..cfg.clone()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.blocks.iter().map(|b| b.block).collect::<Vec<_>>(), [0, 5]);
    assert_eq!(p.thread_instructions, 2 * 32 * static_count);
    let r = words(&mut m, out, 8 * 32);
    for (i, &v) in r.iter().enumerate() {
        assert_eq!(v, (i / 32) as u32 + 1, "word {i}");
    }
    // A stop rule: the listed blocks in the list's order, until 2 ran past the budget.
    let out = m.alloc(4 * 8 * 32);
    let stop = |run_others| ProfileConfig {
        blocks: Some(vec![6, 1, 3, 1]),
        run_others,
        stop: Some(ptx_interp::StopRule {
            thread_instructions: 1,
            min_blocks: 2,
        }),
        ..cfg.clone()
    };
    let p = m
        .launch_profiled(
            &module,
            "k",
            [4, 2, 1],
            [32, 1, 1],
            &[&out.to_le_bytes()],
            &stop(false),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.blocks.iter().map(|b| b.block).collect::<Vec<_>>(), [6, 1]);
    let r = words(&mut m, out, 8 * 32);
    for (i, &v) in r.iter().enumerate() {
        let block = i / 32;
        let want = if block == 6 || block == 1 {
            block as u32 + 1
        } else {
            0
        };
        assert_eq!(v, want, "word {i}");
    }
    let p = m
        .launch_profiled(
            &module,
            "k",
            [4, 2, 1],
            [32, 1, 1],
            &[&out.to_le_bytes()],
            &stop(true),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.blocks.len(), 2);
    let r = words(&mut m, out, 8 * 32);
    assert!(r.iter().enumerate().all(|(i, &v)| v == (i / 32) as u32 + 1));
}

// ---------------------------------------------------------------------------------------------
// Calls in a profiled launch.

const CALLS: &str = r#"
.func (.reg .b32 %r) unused(.reg .b32 %x)
{
    mul.lo.u32 %r, %x, %x;
    ret;
}

.func (.reg .b32 %r) twice(.reg .b32 %x)
{
    add.u32 %r, %x, %x;
    ret;
}

.visible .entry k(.param .u64 in_ptr, .param .u64 out_ptr)
{
    .reg .b64 %in, %out, %o;
    .reg .b32 %t, %v;
    ld.param.u64 %in, [in_ptr];
    ld.param.u64 %out, [out_ptr];
    mov.u32 %t, %tid.x;
    mul.wide.u32 %o, %t, 4;
    add.s64 %in, %in, %o;
    ld.global.u32 %v, [%in];
    call (%v), twice, (%v);
    add.s64 %out, %out, %o;
    st.global.u32 [%out], %v;
    ret;
}
"#;

#[test]
fn calls_count_their_callee_and_pass_ready_times() {
    let module = module(CALLS);
    let mut m = Machine::new();
    let input = m.alloc(4 * 32);
    m.write(
        input,
        &(0..32u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>(),
    )
    .unwrap();
    let out = m.alloc(4 * 32);
    let p = profile(
        &mut m,
        &module,
        [1, 1, 1],
        [32, 1, 1],
        &[&input.to_le_bytes(), &out.to_le_bytes()],
    );
    let b = &p.blocks[0];
    assert_eq!(
        words(&mut m, out, 32),
        (0..32).map(|i| 2 * i).collect::<Vec<u32>>()
    );
    // mul.wide, add.s64 ×2, the callee's add; call, the callee's ret, the kernel's ret.
    assert_eq!(
        issues(b),
        vec![
            ("int", 4),
            ("global_load", 1),
            ("global_store", 1),
            ("branch", 3),
            ("param_load", 2),
            ("other", 1),
        ]
    );
    // The load is instruction 5 of `k` (function 2 of the module).
    assert_eq!(b.global[0][0].instruction, (2, 5));
    assert_eq!(b.global[0][1].instruction, (2, 8));
    // The call waits for the load (one 4-byte load in flight per lane).
    assert_eq!(b.inflight.waits, 1);
    assert_eq!(b.inflight.max_warp_bytes_at_wait, 128);
    // The critical path runs through the load, the call, the add and the ret, then the store.
    let cp = b.critical_path_cycles;
    let load = u64::from(LAT.global_first_touch);
    assert!(cp > load + u64::from(LAT.alu) && cp < load + 40, "{cp}");
}

// ---------------------------------------------------------------------------------------------
// mma.sync.

/// One m16n8k16 tile: A 16×16 row-major, B given transposed (8×16, B^T row-major), C and D
/// 16×8 row-major f32. Fragments loaded per the PTX ISA's layouts.
const MMA16: &str = r#"
.visible .entry k(.param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u64 pd)
{
    .reg .b64 %a, %b, %c, %d, %o;
    .reg .b32 %lane, %g, %q, %r, %x, %a0, %a1, %a2, %a3, %b0, %b1;
    .reg .f32 %c0, %c1, %c2, %c3, %d0, %d1, %d2, %d3;
    ld.param.u64 %a, [pa];
    ld.param.u64 %b, [pb];
    ld.param.u64 %c, [pc];
    ld.param.u64 %d, [pd];
    mov.u32 %lane, %laneid;
    shr.u32 %g, %lane, 2;
    and.b32 %q, %lane, 3;
    shl.b32 %r, %q, 1;
    shl.b32 %x, %g, 4;
    add.u32 %x, %x, %r;
    mul.wide.u32 %o, %x, 2;
    add.s64 %a, %a, %o;
    add.s64 %b, %b, %o;
    ld.global.b32 %a0, [%a];
    ld.global.b32 %a1, [%a+256];
    ld.global.b32 %a2, [%a+16];
    ld.global.b32 %a3, [%a+272];
    ld.global.b32 %b0, [%b];
    ld.global.b32 %b1, [%b+16];
    shl.b32 %x, %g, 3;
    add.u32 %x, %x, %r;
    mul.wide.u32 %o, %x, 4;
    add.s64 %c, %c, %o;
    add.s64 %d, %d, %o;
    ld.global.v2.f32 {%c0, %c1}, [%c];
    ld.global.v2.f32 {%c2, %c3}, [%c+256];
    mma.sync.aligned.m16n8k16.row.col.f32.TY.TY.f32 {%d0, %d1, %d2, %d3}, {%a0, %a1, %a2, %a3}, {%b0, %b1}, {%c0, %c1, %c2, %c3};
    st.global.v2.f32 [%d], {%d0, %d1};
    st.global.v2.f32 [%d+256], {%d2, %d3};
    ret;
}
"#;

/// One m16n8k8 tile: A 16×8 row-major, B^T 8×8 row-major.
const MMA8: &str = r#"
.visible .entry k(.param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u64 pd)
{
    .reg .b64 %a, %b, %c, %d, %o;
    .reg .b32 %lane, %g, %q, %r, %x, %a0, %a1, %b0;
    .reg .f32 %c0, %c1, %c2, %c3;
    ld.param.u64 %a, [pa];
    ld.param.u64 %b, [pb];
    ld.param.u64 %c, [pc];
    ld.param.u64 %d, [pd];
    mov.u32 %lane, %laneid;
    shr.u32 %g, %lane, 2;
    and.b32 %q, %lane, 3;
    shl.b32 %r, %q, 1;
    shl.b32 %x, %g, 3;
    add.u32 %x, %x, %r;
    mul.wide.u32 %o, %x, 2;
    add.s64 %a, %a, %o;
    add.s64 %b, %b, %o;
    ld.global.b32 %a0, [%a];
    ld.global.b32 %a1, [%a+128];
    ld.global.b32 %b0, [%b];
    mul.wide.u32 %o, %x, 4;
    add.s64 %c, %c, %o;
    add.s64 %d, %d, %o;
    ld.global.v2.f32 {%c0, %c1}, [%c];
    ld.global.v2.f32 {%c2, %c3}, [%c+256];
    mma.sync.aligned.m16n8k8.row.col.f32.TY.TY.f32 {%c0, %c1, %c2, %c3}, {%a0, %a1}, {%b0}, {%c0, %c1, %c2, %c3};
    st.global.v2.f32 [%d], {%c0, %c1};
    st.global.v2.f32 [%d+256], {%c2, %c3};
    ret;
}
"#;

/// A small deterministic generator of values in [-2, 2).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    }
}

/// A 16-bit float type's conversions: from f32 (rounded to nearest) and back.
type Conversions = (fn(f32) -> u16, fn(u16) -> f32);

/// Runs one mma tile of inner dimension `k` with element type `ty` ("bf16" or "f16") and
/// checks D against C + A·B computed here in the same order (k ascending, f32 sums).
fn check_mma(src: &str, k: usize, ty: &str) {
    let module = module(&src.replace("TY", ty));
    let (to_bits, from_bits): Conversions = if ty == "bf16" {
        (
            |x| half::bf16::from_f32(x).to_bits(),
            |b| half::bf16::from_bits(b).to_f32(),
        )
    } else {
        (
            |x| half::f16::from_f32(x).to_bits(),
            |b| half::f16::from_bits(b).to_f32(),
        )
    };
    let mut rng = Lcg(k as u64 * 1000 + ty.len() as u64);
    let a: Vec<u16> = (0..16 * k).map(|_| to_bits(rng.next())).collect();
    let bt: Vec<u16> = (0..8 * k).map(|_| to_bits(rng.next())).collect();
    let c: Vec<f32> = (0..16 * 8).map(|_| rng.next()).collect();
    let mut m = Machine::new();
    let bytes16 = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (pa, pb, pc, pd) = (
        m.alloc(2 * a.len()),
        m.alloc(2 * bt.len()),
        m.alloc(4 * c.len()),
        m.alloc(4 * c.len()),
    );
    m.write(pa, &bytes16(&a)).unwrap();
    m.write(pb, &bytes16(&bt)).unwrap();
    m.write(
        pc,
        &c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
    )
    .unwrap();
    let params = [
        pa.to_le_bytes(),
        pb.to_le_bytes(),
        pc.to_le_bytes(),
        pd.to_le_bytes(),
    ];
    let params: Vec<&[u8]> = params.iter().map(|p| &p[..]).collect();
    let p = profile(&mut m, &module, [1, 1, 1], [32, 1, 1], &params);
    let d: Vec<f32> = words(&mut m, pd, 128)
        .into_iter()
        .map(f32::from_bits)
        .collect();
    for i in 0..16 {
        for j in 0..8 {
            let mut want = c[i * 8 + j];
            for kk in 0..k {
                want += from_bits(a[i * k + kk]) * from_bits(bt[j * k + kk]);
            }
            assert_eq!(
                d[i * 8 + j].to_bits(),
                want.to_bits(),
                "{ty} k={k} D[{i}][{j}] = {} want {want}",
                d[i * 8 + j]
            );
        }
    }
    let b = &p.blocks[0];
    assert_eq!(b.issued(InstrClass::Mma), 1);
    let opcode = format!("mma.sync.aligned.m16n8k{k}.row.col.f32.{ty}.{ty}.f32");
    assert_eq!(b.mma, vec![(opcode, 1)]);
}

#[test]
fn mma_m16n8k16_bf16_and_f16_equal_a_reference_product() {
    check_mma(MMA16, 16, "bf16");
    check_mma(MMA16, 16, "f16");
}

#[test]
fn mma_m16n8k8_bf16_and_f16_equal_a_reference_product() {
    check_mma(MMA8, 8, "bf16");
    check_mma(MMA8, 8, "f16");
}

#[test]
fn mma_needs_the_whole_warp() {
    let module = module(&MMA16.replace("TY", "bf16"));
    let mut m = Machine::new();
    let bufs: Vec<u64> = (0..4).map(|_| m.alloc(1024)).collect();
    let params: Vec<[u8; 8]> = bufs.iter().map(|b| b.to_le_bytes()).collect();
    let params: Vec<&[u8]> = params.iter().map(|p| &p[..]).collect();
    let e = m
        .launch(&module, "k", [1, 1, 1], [16, 1, 1], &params)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::WarpSync, "{e}");
    assert!(e.message.contains("lane 16"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Speed.

const SPEED: &str = r#"
.visible .entry k(.param .u64 out_ptr)
{
    .reg .b64 %out, %a;
    .reg .b32 %tid, %bid;
    .reg .pred %p;
    .reg .b32 %i, %x;
    ld.param.u64 %out, [out_ptr];
    cvta.to.global.u64 %out, %out;
    mov.u32 %tid, %tid.x;
    mov.u32 %bid, %ctaid.x;
    mad.lo.u32 %bid, %bid, 256, %tid;
    mul.wide.u32 %a, %bid, 4;
    add.s64 %a, %out, %a;
    mov.u32 %x, %tid;
    mov.u32 %i, 0;
LOOP:
    mad.lo.u32 %x, %x, 1664525, 1013904223;
    xor.b32 %x, %x, %i;
    add.u32 %i, %i, 1;
    setp.lt.u32 %p, %i, 2000;
    @%p bra LOOP;
    st.global.u32 [%a], %x;
    ret;
}
"#;

#[test]
fn profiled_and_unprofiled_speed() {
    let module = module(SPEED);
    let mut m = Machine::new();
    // One word per thread of the 8 blocks (one shared word would be a cross-block race).
    let out = m.alloc(4 * 256 * 8);
    let params = [&out.to_le_bytes()[..]];
    let (mut plain, mut profiled) = (0f64, 0f64);
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let n = m
            .launch(&module, "k", [8, 1, 1], [256, 1, 1], &params)
            .unwrap();
        plain = plain.max(n as f64 / start.elapsed().as_secs_f64());
        let start = std::time::Instant::now();
        let p = m
            .launch_profiled(&module, "k", [8, 1, 1], [256, 1, 1], &params, &cfg())
            .unwrap();
        profiled = profiled.max(p.thread_instructions as f64 / start.elapsed().as_secs_f64());
        assert_eq!(p.thread_instructions, n);
    }
    println!(
        "ptx-interp speed: unprofiled {:.1} M instructions/s, profiled {:.1} M instructions/s",
        plain / 1e6,
        profiled / 1e6
    );
    assert!(plain >= 10e6, "{:.1} M instructions/s", plain / 1e6);
}
