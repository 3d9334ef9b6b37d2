//! Instruction semantics against hand-computed values, and planted bugs the sanitizer checks
//! must catch.

use ptx_interp::{ErrorKind, ExecError, Machine, Module};

/// Wraps `body` in a one-parameter kernel (`%out`: a global pointer) and runs it on `threads`
/// threads of one block; returns the first `words` 32-bit words of the output buffer.
fn run(regs: &str, body: &str, threads: u32, words: usize) -> Result<Vec<u32>, Box<ExecError>> {
    let src = format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n\
         .visible .entry k(.param .u64 out_ptr)\n{{\n\
         .reg .b64 %out;\n.reg .b32 %tid;\n{regs}\n\
         ld.param.u64 %out, [out_ptr];\ncvta.to.global.u64 %out, %out;\nmov.u32 %tid, %tid.x;\n\
         {body}\nret;\n}}\n"
    );
    let module = Module::parse("test.ptx", &src).expect("test kernels parse");
    let mut m = Machine::new();
    let out = m.alloc(words * 4);
    m.launch(
        &module,
        "k",
        [1, 1, 1],
        [threads, 1, 1],
        &[&out.to_le_bytes()],
    )?;
    let bytes = m.read(out, words * 4).unwrap();
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn one(regs: &str, body: &str, words: usize) -> Vec<u32> {
    run(regs, body, 1, words).unwrap_or_else(|e| panic!("{e}"))
}

fn f(bits: u32) -> f32 {
    f32::from_bits(bits)
}

#[test]
fn integer_arithmetic_wraps_and_widens() {
    let r = one(
        ".reg .b32 %a, %b, %c;\n.reg .b64 %w;",
        "mov.u32 %a, 0xffffffff;\n\
         add.u32 %b, %a, 2;\n st.global.u32 [%out], %b;\n\
         mul.lo.u32 %b, %a, %a;\n st.global.u32 [%out+4], %b;\n\
         mul.hi.u32 %b, %a, %a;\n st.global.u32 [%out+8], %b;\n\
         mul.wide.u32 %w, %a, 3;\n st.global.u64 [%out+48], %w;\n\
         mov.u32 %c, -7;\n div.s32 %b, %c, 2;\n st.global.u32 [%out+20], %b;\n\
         rem.s32 %b, %c, 2;\n st.global.u32 [%out+24], %b;\n\
         div.u32 %b, %c, 0;\n st.global.u32 [%out+28], %b;\n\
         mad.lo.u32 %b, %a, 2, 5;\n st.global.u32 [%out+32], %b;\n\
         min.s32 %b, %c, 3;\n st.global.u32 [%out+36], %b;\n\
         min.u32 %b, %c, 3;\n st.global.u32 [%out+40], %b;",
        14,
    );
    // 0xffffffff + 2 wraps to 1; (2^32−1)² = 2^64 − 2^33 + 1: low word 1, high word 0xfffffffe.
    assert_eq!(r[0], 1);
    assert_eq!(r[1], 1);
    assert_eq!(r[2], 0xffff_fffe);
    // mul.wide: (2^32 − 1)·3 = 0x2_ffff_fffd in 64 bits (stored 8-byte aligned at word 12).
    assert_eq!(u64::from(r[12]) | u64::from(r[13]) << 32, 0x2_ffff_fffd);
    // −7 / 2 truncates to −3, remainder −1; u32 division by zero gives all ones.
    assert_eq!(r[5] as i32, -3);
    assert_eq!(r[6] as i32, -1);
    assert_eq!(r[7], u32::MAX);
    // (2^32 − 1)·2 + 5 wraps to 3.
    assert_eq!(r[8], 3);
    // min is signed or unsigned by type: −7 vs 3.
    assert_eq!(r[9] as i32, -7);
    assert_eq!(r[10], 3);
}

#[test]
fn shifts_clamp_their_amount() {
    let r = one(
        ".reg .b32 %a, %b;",
        "mov.u32 %a, 0x80000001;\n\
         shl.b32 %b, %a, 1;\n st.global.u32 [%out], %b;\n\
         shl.b32 %b, %a, 33;\n st.global.u32 [%out+4], %b;\n\
         shr.u32 %b, %a, 31;\n st.global.u32 [%out+8], %b;\n\
         shr.u32 %b, %a, 32;\n st.global.u32 [%out+12], %b;\n\
         shr.s32 %b, %a, 4;\n st.global.u32 [%out+16], %b;\n\
         shr.s32 %b, %a, 40;\n st.global.u32 [%out+20], %b;",
        6,
    );
    // Bits shifted out are lost; amounts past the width give 0 (or the sign for shr.s).
    assert_eq!(r, vec![2, 0, 1, 0, 0xf800_0000, 0xffff_ffff]);
}

#[test]
fn float_min_max_fma_and_nan() {
    let r = one(
        ".reg .f32 %x, %y, %z, %nan, %r;",
        "mov.f32 %nan, 0f7FC00000;\n mov.f32 %x, 0f3F800000;\n mov.f32 %y, 0fBF800000;\n\
         max.f32 %r, %x, %nan;\n st.global.f32 [%out], %r;\n\
         min.f32 %r, %nan, %y;\n st.global.f32 [%out+4], %r;\n\
         min.f32 %r, %nan, %nan;\n st.global.f32 [%out+8], %r;\n\
         mov.f32 %z, 0f80000000;\n mov.f32 %x, 0f00000000;\n\
         max.f32 %r, %z, %x;\n st.global.f32 [%out+12], %r;\n\
         min.f32 %r, %x, %z;\n st.global.f32 [%out+16], %r;\n\
         mov.f32 %x, 0f3F800001;\n mov.f32 %y, 0f3F7FFFFE;\n mov.f32 %z, 0fBF800000;\n\
         fma.rn.f32 %r, %x, %y, %z;\n st.global.f32 [%out+20], %r;\n\
         mul.f32 %r, %x, %y;\n add.f32 %r, %r, %z;\n st.global.f32 [%out+24], %r;\n\
         div.rn.f32 %r, %x, 0f00000000;\n st.global.f32 [%out+28], %r;",
        8,
    );
    // A NaN operand yields the other one; two NaNs give NaN.
    assert_eq!(f(r[0]), 1.0);
    assert_eq!(f(r[1]), -1.0);
    assert!(f(r[2]).is_nan());
    // −0 < +0 for max and min.
    assert_eq!(r[3], 0x0000_0000);
    assert_eq!(r[4], 0x8000_0000);
    // (1 + 2⁻²³)(1 − 2⁻²³) − 1 = −2⁻⁴⁶ exactly when fused; the separate product rounds to 1.
    assert_eq!(f(r[5]), -(2f32.powi(-46)));
    assert_eq!(f(r[6]), 0.0);
    assert_eq!(f(r[7]), f32::INFINITY);
}

#[test]
fn cvt_rounds_saturates_and_converts_half_types() {
    let r = one(
        ".reg .f32 %x, %r;\n.reg .b32 %i;\n.reg .b16 %h;",
        "mov.f32 %x, 0f40200000;\n\
         cvt.rni.s32.f32 %i, %x;\n st.global.u32 [%out], %i;\n\
         mov.f32 %x, 0fC02CCCCD;\n\
         cvt.rzi.s32.f32 %i, %x;\n st.global.u32 [%out+4], %i;\n\
         cvt.rmi.s32.f32 %i, %x;\n st.global.u32 [%out+8], %i;\n\
         mov.f32 %x, 0f40066666;\n\
         cvt.rpi.s32.f32 %i, %x;\n st.global.u32 [%out+12], %i;\n\
         mov.f32 %x, 0f501502F9;\n\
         cvt.rzi.s32.f32 %i, %x;\n st.global.u32 [%out+16], %i;\n\
         mov.f32 %x, 0f7FC00000;\n\
         cvt.rzi.u32.f32 %i, %x;\n st.global.u32 [%out+20], %i;\n\
         mov.f32 %x, 0f3F801000;\n\
         cvt.rn.f16.f32 %h, %x;\n cvt.u32.u16 %i, %h;\n st.global.u32 [%out+24], %i;\n\
         cvt.f32.f16 %r, %h;\n st.global.f32 [%out+28], %r;\n\
         mov.f32 %x, 0f3F818000;\n\
         cvt.rn.bf16.f32 %h, %x;\n cvt.u32.u16 %i, %h;\n st.global.u32 [%out+32], %i;\n\
         mov.u32 %i, -3;\n\
         cvt.rn.f32.s32 %r, %i;\n st.global.f32 [%out+36], %r;\n\
         mov.u32 %i, 16777217;\n\
         cvt.rz.f32.u32 %r, %i;\n st.global.f32 [%out+40], %r;\n\
         cvt.rp.f32.u32 %r, %i;\n st.global.f32 [%out+44], %r;",
        12,
    );
    // 2.5 → 2 (ties to even); −2.7 → −2 (toward zero), −3 (down); 2.1 → 3 (up).
    assert_eq!(r[0] as i32, 2);
    assert_eq!(r[1] as i32, -2);
    assert_eq!(r[2] as i32, -3);
    assert_eq!(r[3] as i32, 3);
    // 1e10 saturates to i32::MAX; NaN converts to 0.
    assert_eq!(r[4] as i32, i32::MAX);
    assert_eq!(r[5], 0);
    // 0x3F801000 = 1 + 2⁻¹¹ lies halfway between the f16 values 1.0 and 1 + 2⁻¹⁰: ties to even
    // gives 1.0 = 0x3C00.
    assert_eq!(r[6], 0x3c00);
    assert_eq!(f(r[7]), 1.0);
    // 0x3F818000 = 1.01171875 is halfway between bf16 0x3F81 and 0x3F82: even is 0x3F82.
    assert_eq!(r[8], 0x3f82);
    assert_eq!(f(r[9]), -3.0);
    // 2^24 + 1 is not an f32: toward zero 2^24, up 2^24 + 2.
    assert_eq!(f(r[10]), 16_777_216.0);
    assert_eq!(f(r[11]), 16_777_218.0);
}

#[test]
fn setp_selp_and_predicated_execution() {
    let r = one(
        ".reg .pred %p, %q;\n.reg .f32 %x, %nan;\n.reg .b32 %v;",
        "mov.f32 %nan, 0f7FC00000;\n mov.f32 %x, 0f3F800000;\n\
         setp.lt.f32 %p, %x, %nan;\n selp.u32 %v, 1, 0, %p;\n st.global.u32 [%out], %v;\n\
         setp.ltu.f32 %p, %x, %nan;\n selp.u32 %v, 1, 0, %p;\n st.global.u32 [%out+4], %v;\n\
         setp.ne.f32 %p, %x, %nan;\n selp.u32 %v, 1, 0, %p;\n st.global.u32 [%out+8], %v;\n\
         setp.gt.s32 %p|%q, -1, 0;\n selp.u32 %v, 1, 0, %q;\n st.global.u32 [%out+12], %v;\n\
         setp.gt.u32 %p, -1, 0;\n mov.u32 %v, 7;\n @!%p mov.u32 %v, 9;\n st.global.u32 [%out+16], %v;",
        5,
    );
    // Ordered comparisons are false with a NaN, unordered ones true; `p|q` gives the negation;
    // −1 is huge unsigned; a false guard skips the instruction.
    assert_eq!(r, vec![0, 1, 0, 1, 7]);
}

#[test]
fn warp_collectives_see_all_lanes() {
    let r = run(
        ".reg .b32 %v, %s;\n.reg .b64 %a;\n.reg .pred %odd;",
        "shfl.sync.bfly.b32 %v, %tid, 1, 31, 0xffffffff;\n\
         shfl.sync.down.b32 %s, %tid, 4, 31, 0xffffffff;\n\
         add.u32 %v, %v, %s;\n\
         and.b32 %s, %tid, 1;\n setp.ne.u32 %odd, %s, 0;\n\
         vote.sync.ballot.b32 %s, %odd, 0xffffffff;\n\
         mul.wide.u32 %a, %tid, 8;\n add.s64 %a, %out, %a;\n\
         st.global.u32 [%a], %v;\n st.global.u32 [%a+4], %s;",
        32,
        64,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for lane in 0..32u32 {
        // bfly 1 swaps neighbours; down 4 reads lane + 4, or keeps its own value past lane 31.
        let down = if lane + 4 <= 31 { lane + 4 } else { lane };
        assert_eq!(r[2 * lane as usize], (lane ^ 1) + down, "lane {lane}");
        assert_eq!(r[2 * lane as usize + 1], 0xaaaa_aaaa);
    }
}

#[test]
fn atomics_accumulate() {
    let r = run(
        ".reg .b32 %v;\n.reg .f32 %f;",
        "atom.global.add.u32 %v, [%out], 2;\n\
         cvt.rn.f32.u32 %f, %tid;\n red.global.add.f32 [%out+4], %f;\n\
         atom.global.max.u32 %v, [%out+8], %tid;",
        64,
        3,
    )
    .unwrap();
    assert_eq!(r[0], 128);
    assert_eq!(f(r[1]), (0..64).sum::<u32>() as f32);
    assert_eq!(r[2], 63);
}

fn kind(e: Result<Vec<u32>, Box<ExecError>>) -> (ErrorKind, String) {
    let e = e.expect_err("the planted bug must be caught");
    let text = e.to_string();
    // Every report names the kernel, file, line, instruction and thread.
    assert!(
        text.contains("kernel k at test.ptx:") && text.contains("thread"),
        "{text}"
    );
    (e.kind, text)
}

#[test]
fn planted_off_by_one_index_is_out_of_bounds() {
    // Thread i reads element i + 1 of a 32-element buffer: the last thread reads past the end.
    let (k, text) = kind(run(
        ".reg .b32 %v;\n.reg .b64 %a;",
        "add.u32 %v, %tid, 1;\n mul.wide.u32 %a, %v, 4;\n add.s64 %a, %out, %a;\n ld.global.u32 %v, [%a];",
        32,
        32,
    ));
    assert_eq!(k, ErrorKind::OutOfBounds, "{text}");
    assert!(
        text.contains("thread [31, 0, 0]") && text.contains("ld.global.u32 %v, [%a]"),
        "{text}"
    );
}

const SHARED: &str = ".reg .b32 %v, %at, %next;\n.shared .align 4 .u32 buf[64];";

#[test]
fn planted_missing_barrier_is_a_shared_race() {
    // Each thread writes its slot, then reads its neighbour's with no bar.sync in between.
    let (k, text) = kind(run(
        SHARED,
        "mov.u32 %at, buf;\n mad.lo.u32 %at, %tid, 4, %at;\n st.shared.u32 [%at], 0;\n bar.sync 0;\n\
         st.shared.u32 [%at], %tid;\n\
         add.u32 %next, %tid, 1;\n and.b32 %next, %next, 63;\n mov.u32 %v, buf;\n mad.lo.u32 %next, %next, 4, %v;\n\
         ld.shared.u32 %v, [%next];",
        64,
        1,
    ));
    assert_eq!(k, ErrorKind::SharedRace, "{text}");
    // With the barrier the same kernel is clean.
    run(
        SHARED,
        "mov.u32 %at, buf;\n mad.lo.u32 %at, %tid, 4, %at;\n st.shared.u32 [%at], %tid;\n bar.sync 0;\n\
         add.u32 %next, %tid, 1;\n and.b32 %next, %next, 63;\n mov.u32 %v, buf;\n mad.lo.u32 %next, %next, 4, %v;\n\
         ld.shared.u32 %v, [%next];",
        64,
        1,
    )
    .unwrap();
}

#[test]
fn planted_read_of_unwritten_shared_memory() {
    let (k, text) = kind(run(
        SHARED,
        "mov.u32 %at, buf;\n ld.shared.u32 %v, [%at+8];",
        4,
        1,
    ));
    assert_eq!(k, ErrorKind::UninitializedShared, "{text}");
}

#[test]
fn planted_barrier_skipped_by_one_thread() {
    let (k, text) = kind(run(
        ".reg .pred %p;",
        "setp.eq.u32 %p, %tid, 5;\n @%p bra SKIP;\n bar.sync 0;\nSKIP:",
        32,
        1,
    ));
    assert_eq!(k, ErrorKind::BarrierDivergence, "{text}");
}

#[test]
fn planted_divergent_shuffle_is_caught() {
    // Half the warp branches around the shuffle its full mask asks all lanes to join.
    let (k, text) = kind(run(
        ".reg .pred %p;\n.reg .b32 %v;",
        "setp.lt.u32 %p, %tid, 16;\n @%p bra SKIP;\n shfl.sync.bfly.b32 %v, %tid, 1, 31, 0xffffffff;\nSKIP:",
        32,
        1,
    ));
    assert_eq!(k, ErrorKind::WarpSync, "{text}");
}

#[test]
fn misaligned_and_uninitialised_and_unsupported_are_errors() {
    let (k, _) = kind(run(".reg .b32 %v;", "ld.global.u32 %v, [%out+2];", 1, 2));
    assert_eq!(k, ErrorKind::Misaligned);
    let (k, text) = kind(run(".reg .b32 %v, %w;", "add.u32 %v, %w, 1;", 1, 1));
    assert_eq!(k, ErrorKind::UninitializedRegister);
    assert!(text.contains("%w"), "{text}");
    let (k, text) = kind(run(
        ".reg .b32 %v;",
        "prmt.b32 %v, %tid, %tid, 0x3210;",
        1,
        1,
    ));
    assert_eq!(k, ErrorKind::Unsupported);
    assert!(text.contains("prmt.b32"), "{text}");
}

#[test]
fn launch_arguments_are_checked() {
    let module = Module::parse("t.ptx", ".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k(.param .u64 p)\n.maxntid 64, 1, 1\n{\nret;\n}\n").unwrap();
    let mut m = Machine::new();
    assert_eq!(
        m.launch(&module, "k", [1, 1, 1], [1, 1, 1], &[])
            .unwrap_err()
            .kind,
        ErrorKind::Launch
    );
    assert_eq!(
        m.launch(&module, "k", [1, 1, 1], [1, 1, 1], &[&[0u8; 4]])
            .unwrap_err()
            .kind,
        ErrorKind::Launch
    );
    assert_eq!(
        m.launch(&module, "k", [1, 1, 1], [65, 1, 1], &[&[0u8; 8]])
            .unwrap_err()
            .kind,
        ErrorKind::Launch
    );
    assert_eq!(
        m.launch(&module, "nope", [1, 1, 1], [1, 1, 1], &[&[0u8; 8]])
            .unwrap_err()
            .kind,
        ErrorKind::Launch
    );
    m.launch(&module, "k", [2, 1, 1], [64, 1, 1], &[&[0u8; 8]])
        .unwrap();
}

/// The 64-bit rule: an offset computed in 32 bits that wraps and then forms an address is an
/// error naming the kernel, the line and the thread — even when the wrapped address happens to
/// land inside the buffer, which is what makes such bugs silent on a GPU.
#[test]
fn a_wrapped_32_bit_offset_that_reaches_an_address_is_caught() {
    // Thread 1: (0x8000_0000 · 2 + 4) wraps to 4 — a valid offset into the 16-byte buffer.
    let body = "mov.u32 %big, 0x80000000;\n\
                mul.lo.u32 %i, %tid, %big;\n\
                mad.lo.u32 %i, %i, 2, 4;\n\
                mul.wide.u32 %o, %i, 1;\n\
                add.s64 %a, %out, %o;\n\
                st.global.u32 [%a], 7;";
    let regs = ".reg .b32 %big, %i;\n.reg .b64 %o, %a;";
    let e = run(regs, body, 2, 4).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrappedAddress, "{e}");
    assert_eq!(e.thread, [1, 0, 0], "{e}");
    assert_eq!(
        e.line, 18,
        "the st.global line (after the 12-line wrapper): {e}"
    );
    assert_eq!(e.kernel, "k");
    assert!(
        e.message.contains("%a") && e.message.contains("wrapped"),
        "{e}"
    );
    // Thread 0 alone computes 4 without wrapping: fine.
    assert_eq!(run(regs, body, 1, 4).unwrap()[1], 7);
}

#[test]
fn wrapping_that_never_reaches_an_address_is_allowed() {
    // A hash (wrapping by design) stored as data; a wrapped value masked with `and` used as an
    // index (deliberate bit manipulation clears the mark); and a wide product, which never wraps.
    let r = one(
        ".reg .b32 %h, %m;\n.reg .b64 %o, %a;",
        "mov.u32 %h, 0x9e3779b9;\n\
         mul.lo.u32 %h, %h, 0x85ebca6b;\n\
         st.global.u32 [%out], %h;\n\
         and.b32 %m, %h, 3;\n\
         mul.wide.u32 %o, %m, 4;\n\
         add.s64 %a, %out, %o;\n\
         st.global.u32 [%a+4], 9;\n\
         mov.u32 %m, 0xffffffff;\n\
         mul.wide.u32 %o, %m, 0;\n\
         add.s64 %a, %out, %o;\n\
         st.global.u32 [%a+24], 5;",
        8,
    );
    assert_eq!(r[0], 0x9e37_79b9u32.wrapping_mul(0x85eb_ca6b));
    assert!(r[1..5].contains(&9));
    assert_eq!(r[6], 5);
}

/// Runs `body` (with `%out` a global pointer, `%tid`, `%bid` the block) on `blocks` blocks of
/// `threads` threads.
fn run_grid(regs: &str, body: &str, blocks: u32, threads: u32) -> Result<(), Box<ExecError>> {
    run_grid_with(regs, body, blocks, threads, false)
}

/// [`run_grid`], through `launch_profiled` when `profiled` (every block profiled).
fn run_grid_with(
    regs: &str,
    body: &str,
    blocks: u32,
    threads: u32,
    profiled: bool,
) -> Result<(), Box<ExecError>> {
    let src = format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n\
         .visible .entry k(.param .u64 out_ptr)\n{{\n\
         .reg .b64 %out;\n.reg .b32 %tid, %bid;\n{regs}\n\
         ld.param.u64 %out, [out_ptr];\ncvta.to.global.u64 %out, %out;\n\
         mov.u32 %tid, %tid.x;\nmov.u32 %bid, %ctaid.x;\n{body}\nret;\n}}\n"
    );
    let module = Module::parse("grid.ptx", &src).expect("test kernels parse");
    let mut m = Machine::new();
    let out = m.alloc(4 * 64);
    let (grid, block, params) = ([blocks, 1, 1], [threads, 1, 1], &[&out.to_le_bytes()[..]]);
    if profiled {
        let cfg = ptx_interp::ProfileConfig::default();
        m.launch_profiled(&module, "k", grid, block, params, &cfg)?;
    } else {
        m.launch(&module, "k", grid, block, params)?;
    }
    Ok(())
}

/// Two blocks of one launch: a planted race (both store `out[tid]`) is caught, naming the
/// second block and the first; atomics on one word, reads shared by all blocks and disjoint
/// stores are not races.
#[test]
fn a_planted_cross_block_race_is_caught() {
    let regs = ".reg .b64 %o, %a;\n.reg .b32 %i, %v;";
    let same_word = "mul.wide.u32 %o, %tid, 4;\nadd.s64 %a, %out, %o;\nst.global.u32 [%a], %bid;";
    let e = run_grid(regs, same_word, 2, 4).unwrap_err();
    assert_eq!(e.kind, ErrorKind::GlobalRace, "{e}");
    assert_eq!(e.block, [1, 0, 0], "{e}");
    assert!(e.message.contains("block 0"), "{e}");
    // One block alone, or each block its own words: fine.
    run_grid(regs, same_word, 1, 4).unwrap();
    let disjoint = "mad.lo.u32 %i, %bid, 4, %tid;\nmul.wide.u32 %o, %i, 4;\n\
                    add.s64 %a, %out, %o;\nst.global.u32 [%a], %bid;";
    run_grid(regs, disjoint, 4, 4).unwrap();
    // Every block adds atomically to word 0 and reads word 1, which nobody writes.
    let atomics = "atom.global.add.u32 %v, [%out], 1;\nld.global.u32 %v, [%out+4];";
    run_grid(regs, atomics, 4, 4).unwrap();
    // A plain read of a word another block updates atomically is a race.
    let mixed = "setp.eq.u32 %p, %bid, 0;\n@%p atom.global.add.u32 %v, [%out], 1;\n\
                 @!%p ld.global.u32 %v, [%out];";
    let e = run_grid(&format!("{regs}\n.reg .pred %p;"), mixed, 2, 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::GlobalRace, "{e}");
    // The profiled launch (the performance model's) checks the same.
    let e = run_grid_with(regs, same_word, 2, 4, true).unwrap_err();
    assert_eq!((e.kind, e.block), (ErrorKind::GlobalRace, [1, 0, 0]), "{e}");
    run_grid_with(regs, disjoint, 4, 4, true).unwrap();
    run_grid_with(regs, atomics, 4, 4, true).unwrap();
}

/// `red.global.add.v4.f32` / `.v2.f32` (PTX ISA 8.1, sm_90; ptxas rejects them for sm_80):
/// each element added atomically, exact; blocks reducing into the same words do not race (both
/// accesses atomic), a plain read of them from another block does; a vector reduction must be
/// aligned to its size; the profile counts one reduction per warp moving 16 (8) bytes per lane.
#[test]
fn vector_reductions_add_each_element_atomically() {
    let src = |body: &str| {
        format!(
            ".version 8.1\n.target sm_90\n.address_size 64\n\
             .visible .entry k(.param .u64 out_ptr)\n{{\n\
             .reg .b64 %out;\n.reg .b32 %tid, %bid;\n.reg .f32 %a, %b;\n.reg .pred %p;\n\
             ld.param.u64 %out, [out_ptr];\ncvta.to.global.u64 %out, %out;\n\
             mov.u32 %tid, %tid.x;\nmov.u32 %bid, %ctaid.x;\n\
             cvt.rn.f32.u32 %a, %tid;\nadd.f32 %b, %a, 0f3F800000;\n{body}\nret;\n}}\n"
        )
    };
    let launch = |body: &str, blocks: u32, profiled: bool| {
        let module = Module::parse("red.ptx", &src(body)).expect("parses");
        let mut m = Machine::new();
        let out = m.alloc(64);
        let params: &[&[u8]] = &[&out.to_le_bytes()];
        let p = if profiled {
            let cfg = ptx_interp::ProfileConfig::default();
            Some(m.launch_profiled(&module, "k", [blocks, 1, 1], [64, 1, 1], params, &cfg)?)
        } else {
            m.launch(&module, "k", [blocks, 1, 1], [64, 1, 1], params)?;
            None
        };
        let words: Vec<f32> = m
            .read(out, 64)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok::<_, Box<ExecError>>((words, p))
    };
    // Three blocks of 64 threads: out[0..4] += {tid, tid + 1, 2, tid}, out[4..6] += {1, tid}.
    let body = "red.global.add.v4.f32 [%out], {%a, %b, 0f40000000, %a};\n\
                red.global.add.v2.f32 [%out+16], {0f3F800000, %a};";
    let (w, _) = launch(body, 3, false).unwrap();
    let sum_tid = 3.0 * (0..64).sum::<u32>() as f32;
    assert_eq!(
        &w[..6],
        &[sum_tid, sum_tid + 192.0, 384.0, sum_tid, 192.0, sum_tid]
    );
    // Profiled: the same sums, one reduction instruction per warp and vector, 16 and 8 bytes a
    // lane.
    let (w2, p) = launch(body, 1, true).unwrap();
    assert_eq!(w2[0], sum_tid / 3.0);
    let b = &p.unwrap().blocks[0];
    assert_eq!(b.issued(ptx_interp::InstrClass::GlobalReduction), 2 * 2);
    // Misaligned: a v4 at byte 4.
    let e = launch(
        "red.global.add.v4.f32 [%out+4], {%a, %a, %a, %a};",
        1,
        false,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Misaligned, "{e}");
    // Block 1 reads the words block 0 reduces into: a race.
    let mixed = "setp.eq.u32 %p, %bid, 0;\n\
                 @%p red.global.add.v4.f32 [%out], {%a, %a, %a, %a};\n\
                 @!%p ld.global.f32 %a, [%out+8];";
    let e = launch(mixed, 2, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::GlobalRace, "{e}");
    // Only `.global.add.f32` vectors are implemented: anything else is a parse error.
    assert!(Module::parse("red.ptx", &src("red.global.max.v2.f32 [%out], {%a, %a};")).is_err());
    assert!(Module::parse("red.ptx", &src("red.global.add.v2.f32 [%out], {%a};")).is_err());
}
