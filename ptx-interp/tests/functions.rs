//! `.func`, `call` and `ret`: per-call register frames, `.reg` and `.param` parameters, nested
//! and divergent calls, synchronisation inside functions, the sanitizer checks there, and
//! modules joined from several files ([`Module::parse_parts`]).

use ptx_interp::{ErrorKind, ExecError, Machine, Module, SourcePart};

const HEADER: &str = ".version 8.0\n.target sm_80\n.address_size 64\n";

fn module(body: &str) -> Module {
    let src = format!("{HEADER}{body}");
    Module::parse("fn.ptx", &src).unwrap_or_else(|e| panic!("{e}"))
}

/// The 1-based line of `src` (after [`HEADER`]) holding `needle`, which must be unique.
fn line_of(body: &str, needle: &str) -> u32 {
    let src = format!("{HEADER}{body}");
    let hits: Vec<usize> = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "`{needle}` must be on exactly one line");
    hits[0] as u32
}

fn words(m: &mut Machine, buf: u64, n: usize) -> Vec<u32> {
    m.read(buf, 4 * n)
        .unwrap()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Runs entry `k(.param .u64 out)` of `body` on one block of `threads`; returns `n` output words.
fn run_out(body: &str, threads: u32, n: usize) -> Result<Vec<u32>, Box<ExecError>> {
    let module = module(body);
    let mut m = Machine::new();
    let out = m.alloc(4 * n);
    m.launch(
        &module,
        "k",
        [1, 1, 1],
        [threads, 1, 1],
        &[&out.to_le_bytes()],
    )?;
    Ok(words(&mut m, out, n))
}

/// The prologue of `k`: `%out` = the output pointer, `%tid`, `%a` = `&out[tid]`.
const PROLOGUE: &str = "
    .reg .b64 %out, %a;
    .reg .b32 %tid;
    ld.param.u64 %out, [out_ptr];
    cvta.to.global.u64 %out, %out;
    mov.u32 %tid, %tid.x;
    mul.wide.u32 %a, %tid, 4;
    add.s64 %a, %out, %a;";

// ---------------------------------------------------------------------------------------------
// A value-returning call and a void call.

const TABLE: &str = r#"
// Element `elem` of a table of dtype 0 = f32, 1 = f16, 2 = bf16, as f32.
.func (.reg .f32 %value) ultramem_table_load(.reg .b64 %table, .reg .b64 %elem, .reg .b32 %dtype)
{
    .reg .pred %p;
    .reg .b16 %h;
    .reg .b64 %addr;
    setp.eq.u32 %p, %dtype, 0;
    @%p bra F32;
    shl.b64 %addr, %elem, 1;
    add.s64 %addr, %table, %addr;
    ld.global.u16 %h, [%addr];
    setp.eq.u32 %p, %dtype, 1;
    @%p bra F16;
    cvt.f32.bf16 %value, %h;
    ret;
F16:
    cvt.f32.f16 %value, %h;
    ret;
F32:
    shl.b64 %addr, %elem, 2;
    add.s64 %addr, %table, %addr;
    ld.global.f32 %value, [%addr];
    ret;
}

// Records `position` in the status word: the largest position wins.
.func ultramem_status_record(.reg .b64 %status, .reg .b32 %position)
{
    .reg .b32 %old;
    atom.global.max.u32 %old, [%status], %position;
    ret;
}

.visible .entry decode(.param .u64 table_ptr, .param .u64 out_ptr, .param .u32 dtype,
                       .param .u64 status_ptr)
{
    .reg .pred %neg;
    .reg .f32 %v;
    .reg .b32 %tid, %dt, %pos;
    .reg .b64 %table, %out, %status, %elem, %a;
    ld.param.u64 %table, [table_ptr];
    ld.param.u64 %out, [out_ptr];
    ld.param.u32 %dt, [dtype];
    ld.param.u64 %status, [status_ptr];
    mov.u32 %tid, %tid.x;
    cvt.u64.u32 %elem, %tid;
    call.uni (%v), ultramem_table_load, (%table, %elem, %dt);
    mul.wide.u32 %a, %tid, 4;
    add.s64 %a, %out, %a;
    st.global.f32 [%a], %v;
    setp.lt.f32 %neg, %v, 0f00000000;
    add.u32 %pos, %tid, 1;
    @%neg call ultramem_status_record, (%status, %pos);
    ret;
}
"#;

#[test]
fn call_returns_a_value_and_a_void_call_updates_the_status_word() {
    let module = module(TABLE);
    let values: Vec<f32> = (0..32).map(|i| (i as f32 - 20.5) * 0.25).collect();
    let last_negative = values.iter().rposition(|&v| v < 0.0).unwrap() as u32 + 1;
    for dtype in 0..3u32 {
        let bytes: Vec<u8> = match dtype {
            0 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            1 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            _ => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        };
        let mut m = Machine::new();
        let table = m.alloc(bytes.len());
        m.write(table, &bytes).unwrap();
        let out = m.alloc(4 * 32);
        let status = m.alloc(4);
        m.launch(
            &module,
            "decode",
            [1, 1, 1],
            [32, 1, 1],
            &[
                &table.to_le_bytes(),
                &out.to_le_bytes(),
                &dtype.to_le_bytes(),
                &status.to_le_bytes(),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let got = words(&mut m, out, 32);
        for (i, (&g, &v)) in got.iter().zip(&values).enumerate() {
            // Every value is a multiple of 1/8 below 3, exact in all three types.
            assert_eq!(f32::from_bits(g), v, "dtype {dtype} element {i}");
        }
        assert_eq!(
            words(&mut m, status, 1),
            vec![last_negative],
            "dtype {dtype}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Nested calls, immediates, `call f;` without operands, a prototype before the definition.

const NESTED: &str = r#"
.func (.reg .b32 %r) outer(.reg .b32 %x);

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .b32 %v, %w;
    call (%v), outer, (%tid);
    call (%w), outer, (5);
    add.u32 %v, %v, %w;
    call nothing;
    call nothing, ();
    st.global.u32 [%a], %v;
    ret;
}

.func nothing()
{
    ret;
}

// outer(x) = 3 · inner(x) + 1
.visible .func (.reg .b32 %r) outer(.reg .b32 %x) .noinline
{
    .reg .b32 %t;
    call (%t), inner, (%x, -2);
    mad.lo.u32 %r, %t, 3, 1;
    ret;
}

// inner(x, y) = x + 10 + y (y is negative), with the callers' register names reused.
.weak .func (.reg .b32 %r) inner(.reg .b32 %x, .reg .b32 %y)
{
    .reg .b32 %v, %w, %tid;
    add.u32 %v, %x, 10;
    add.u32 %r, %v, %y;
}
"#;

#[test]
fn nested_calls_get_their_own_frames() {
    let body = NESTED.replace("PROLOGUE", PROLOGUE);
    let r = run_out(&body, 8, 8).unwrap_or_else(|e| panic!("{e}"));
    let outer = |x: u32| 3 * (x + 10 - 2) + 1;
    for tid in 0..8u32 {
        assert_eq!(r[tid as usize], outer(tid) + outer(5), "thread {tid}");
    }
}

// ---------------------------------------------------------------------------------------------
// Divergent calls and warp collectives inside functions.

const DIVERGENT: &str = r#"
.func (.reg .b32 %r) twice(.reg .b32 %x)
{
    shl.b32 %r, %x, 1;
    ret;
}

.func (.reg .b32 %r) plus_1000(.reg .b32 %x)
{
    .reg .pred %p;
    // A loop, so this lane stays apart from the others for a while.
    mov.u32 %r, %x;
    mov.u32 %x, 0;
LOOP:
    add.u32 %r, %r, 100;
    add.u32 %x, %x, 1;
    setp.lt.u32 %p, %x, 10;
    @%p bra LOOP;
    ret;
}

// A warp sum by butterfly shuffles: every lane of the mask must call it.
.func (.reg .b32 %sum) warp_sum(.reg .b32 %x)
{
    .reg .b32 %o;
    mov.u32 %sum, %x;
    shfl.sync.bfly.b32 %o, %sum, 16, 31, 0xffffffff;
    add.u32 %sum, %sum, %o;
    shfl.sync.bfly.b32 %o, %sum, 8, 31, 0xffffffff;
    add.u32 %sum, %sum, %o;
    shfl.sync.bfly.b32 %o, %sum, 4, 31, 0xffffffff;
    add.u32 %sum, %sum, %o;
    shfl.sync.bfly.b32 %o, %sum, 2, 31, 0xffffffff;
    add.u32 %sum, %sum, %o;
    shfl.sync.bfly.b32 %o, %sum, 1, 31, 0xffffffff;
    add.u32 %sum, %sum, %o;
    ret;
}

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .b32 %m, %v, %s, %t;
    .reg .pred %even, %three;
    and.b32 %m, %tid, 3;
    setp.eq.u32 %three, %m, 3;
    and.b32 %m, %tid, 1;
    setp.eq.u32 %even, %m, 0;
    mov.u32 %v, 7;
    // Even lanes call twice(tid); lanes 1 mod 4 call plus_1000(tid); lanes 3 mod 4 skip.
    @%even call (%v), twice, (%tid);
    @%even bra JOIN;
    @%three bra JOIN;
    call (%v), plus_1000, (%tid);
JOIN:
    shfl.sync.bfly.b32 %s, %v, 1, 31, 0xffffffff;
    call (%t), warp_sum, (%v);
    st.global.u32 [%a], %v;
    st.global.u32 [%a+256], %s;
    st.global.u32 [%a+512], %t;
    ret;
}
"#;

#[test]
fn divergent_calls_reconverge_for_a_shuffle() {
    let body = DIVERGENT.replace("PROLOGUE", PROLOGUE);
    let r = run_out(&body, 64, 3 * 64).unwrap_or_else(|e| panic!("{e}"));
    let v = |t: u32| match t % 4 {
        0 | 2 => 2 * t,
        1 => t + 1000,
        _ => 7,
    };
    for t in 0..64u32 {
        let i = t as usize;
        assert_eq!(r[i], v(t), "thread {t}");
        assert_eq!(r[64 + i], v(t ^ 1), "shuffle of thread {t}");
        let w0 = t & !31;
        let sum: u32 = (w0..w0 + 32).map(v).sum();
        assert_eq!(r[128 + i], sum, "warp sum of thread {t}");
    }
}

#[test]
fn a_warp_collective_in_a_function_called_by_part_of_the_warp_is_caught() {
    // Lanes 16..31 skip the call of warp_sum, whose shuffles name all 32 lanes.
    let body = DIVERGENT.replace("PROLOGUE", PROLOGUE).replace(
        "    call (%t), warp_sum, (%v);",
        "    mov.u32 %t, 0;\n    setp.lt.u32 %three, %tid, 16;\n    @%three call (%t), warp_sum, (%v);",
    );
    let e = run_out(&body, 32, 3 * 64).expect_err("a divergent warp_sum must be caught");
    assert_eq!(e.kind, ErrorKind::WarpSync, "{e}");
    assert_eq!(e.function, "warp_sum", "{e}");
    assert_eq!(
        e.line,
        line_of(&body, "shfl.sync.bfly.b32 %o, %sum, 16, 31"),
        "{e}"
    );
    assert_eq!(e.called_from.len(), 1, "{e}");
    assert_eq!(e.called_from[0].function, "k");
    assert_eq!(
        e.called_from[0].line,
        line_of(&body, "@%three call (%t), warp_sum")
    );
}

// ---------------------------------------------------------------------------------------------
// bar.sync inside a function, with module-scope shared memory.

const BARRIER: &str = r#"
.shared .align 4 .u32 ring[64];

// Writes x to this thread's slot, synchronises the block, reads the next thread's slot.
.func (.reg .b32 %r) exchange(.reg .b32 %tid, .reg .b32 %x)
{
    .reg .b32 %at, %next, %base;
    mov.u32 %base, ring;
    mad.lo.u32 %at, %tid, 4, %base;
    st.shared.u32 [%at], %x;
    bar.sync 0; // in exchange
    add.u32 %next, %tid, 1;
    and.b32 %next, %next, 63;
    mad.lo.u32 %next, %next, 4, %base;
    ld.shared.u32 %r, [%next];
    ret;
}

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .b32 %v, %x;
    .reg .pred %p;
    mul.lo.u32 %x, %tid, 10;
    mov.u32 %v, 0;
    CALL
    st.global.u32 [%a], %v;
    ret;
}
"#;

#[test]
fn a_barrier_inside_a_function_synchronises_the_block() {
    let body = BARRIER
        .replace("PROLOGUE", PROLOGUE)
        .replace("CALL", "call (%v), exchange, (%tid, %x);");
    let r = run_out(&body, 64, 64).unwrap_or_else(|e| panic!("{e}"));
    for t in 0..64u32 {
        assert_eq!(r[t as usize], ((t + 1) % 64) * 10, "thread {t}");
    }
}

#[test]
fn a_barrier_inside_a_function_called_by_half_the_block_is_divergence() {
    // The other half exits.
    let body = BARRIER.replace("PROLOGUE", PROLOGUE).replace(
        "CALL",
        "setp.lt.u32 %p, %tid, 32;\n    @%p call (%v), exchange, (%tid, %x);",
    );
    let e = run_out(&body, 64, 64).expect_err("half the block skips the barrier");
    assert_eq!(e.kind, ErrorKind::BarrierDivergence, "{e}");
    assert_eq!(e.function, "exchange", "{e}");
    assert_eq!(e.line, line_of(&body, "// in exchange"), "{e}");
    assert!(
        e.to_string()
            .contains("in function exchange of kernel k at fn.ptx:"),
        "{e}"
    );
    // The other half waits at a barrier of the entry instead: still not the same barrier.
    let body = BARRIER.replace("PROLOGUE", PROLOGUE).replace(
        "CALL",
        "setp.lt.u32 %p, %tid, 32;\n    @%p call (%v), exchange, (%tid, %x);\n    bar.sync 0;",
    );
    let e = run_out(&body, 64, 64).expect_err("the threads wait at different barriers");
    assert_eq!(e.kind, ErrorKind::BarrierDivergence, "{e}");
    assert_eq!(e.function, "exchange", "{e}");
    assert_eq!(e.line, line_of(&body, "// in exchange"), "{e}");
    assert!(e.message.contains("kernel `k`"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Uninitialised registers in functions.

const UNINIT: &str = r#"
// Forgets its return value when x > 5.
.func (.reg .b32 %r) broken(.reg .b32 %x)
{
    .reg .pred %p;
    setp.gt.u32 %p, %x, 5;
    @%p bra DONE;
    add.u32 %r, %x, 1;
DONE:
    ret; // the return
}

.func (.reg .b32 %r) reads_garbage(.reg .b32 %x)
{
    .reg .b32 %never;
    add.u32 %r, %x, %never;
    ret;
}

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .b32 %v;
    CALL
    st.global.u32 [%a], %v;
    ret;
}
"#;

#[test]
fn a_return_value_the_callee_never_wrote_is_caught_at_its_ret() {
    let body = UNINIT
        .replace("PROLOGUE", PROLOGUE)
        .replace("CALL", "call (%v), broken, (%tid);");
    let e = run_out(&body, 8, 8).expect_err("threads 6 and 7 get no return value");
    assert_eq!(e.kind, ErrorKind::UninitializedRegister, "{e}");
    assert_eq!(e.kernel, "k");
    assert_eq!(e.function, "broken", "{e}");
    assert_eq!(e.file, "fn.ptx");
    assert_eq!(e.line, line_of(&body, "ret; // the return"), "{e}");
    assert_eq!(e.thread, [6, 0, 0], "{e}");
    assert!(e.message.contains("%r"), "{e}");
    assert_eq!(
        e.called_from,
        vec![ptx_interp::CallSite {
            function: "k".into(),
            file: "fn.ptx".into(),
            line: line_of(&body, "call (%v), broken"),
        }]
    );
    let text = e.to_string();
    assert!(
        text.contains("called from k at fn.ptx:") && text.contains("thread [6, 0, 0]"),
        "{text}"
    );
    // Threads 0..5 alone are clean.
    let r = run_out(&body, 6, 6).unwrap();
    assert_eq!(r, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn an_unwritten_register_of_the_callee_is_caught() {
    let body = UNINIT
        .replace("PROLOGUE", PROLOGUE)
        .replace("CALL", "call (%v), reads_garbage, (%tid);");
    let e = run_out(&body, 1, 1).expect_err("%never is never written");
    assert_eq!(e.kind, ErrorKind::UninitializedRegister, "{e}");
    assert_eq!(e.function, "reads_garbage");
    assert_eq!(e.line, line_of(&body, "add.u32 %r, %x, %never;"));
    assert!(e.message.contains("%never"), "{e}");
}

#[test]
fn an_unwritten_argument_is_caught_at_the_call() {
    let body = UNINIT.replace("PROLOGUE", PROLOGUE).replace(
        "CALL",
        ".reg .b32 %unset;\n    call (%v), broken, (%unset);",
    );
    let e = run_out(&body, 1, 1).expect_err("%unset is never written");
    assert_eq!(e.kind, ErrorKind::UninitializedRegister, "{e}");
    assert_eq!(e.function, "k");
    assert_eq!(e.line, line_of(&body, "call (%v), broken, (%unset);"));
}

// ---------------------------------------------------------------------------------------------
// `.param`-space parameters and return values, as nvcc emits them.

const PARAMS: &str = r#"
.func (.param .b32 func_retval0) mul_add(.param .b32 mul_add_param_0, .param .b64 mul_add_param_1)
{
    .reg .b32 %r<4>;
    .reg .b64 %rd<2>;
    ld.param.u32 %r1, [mul_add_param_0];
    ld.param.u64 %rd1, [mul_add_param_1];
    cvt.u32.u64 %r2, %rd1;
    mad.lo.u32 %r3, %r1, 3, %r2;
    st.param.b32 [func_retval0+0], %r3;
    ret;
}

// A by-value struct { u32 a; u32 b; u64 c; } in, its sum out.
.func (.param .b64 func_retval0) struct_sum(.param .align 8 .b8 s[16])
{
    .reg .b32 %a, %b;
    .reg .b64 %c, %w;
    ld.param.v2.u32 {%a, %b}, [s];
    ld.param.u64 %c, [s+8];
    add.u32 %a, %a, %b;
    cvt.u64.u32 %w, %a;
    add.u64 %w, %w, %c;
    st.param.b64 [func_retval0], %w;
    ret;
}

// Forgets to store its .param return value.
.func (.param .b32 func_retval0) forgets()
{
    ret; // forgets
}

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .b32 %r<8>;
    .reg .b64 %rd<4>;
    mul.wide.u32 %rd1, %tid, 100;
    { // callseq 0, 0
    .reg .b32 temp_param_reg;
    .param .b32 param0;
    st.param.b32 [param0+0], %tid;
    .param .b64 param1;
    st.param.b64 [param1+0], %rd1;
    .param .b32 retval0;
    call.uni (retval0), mul_add, (param0, param1);
    ld.param.b32 %r5, [retval0+0];
    } // callseq 0
    { // callseq 1, 0: the same names again, in a new scope
    .reg .b32 temp_param_reg;
    .param .b32 param0;
    st.param.b32 [param0+0], %r5;
    .param .b64 param1;
    st.param.b64 [param1+0], 7;
    .param .b32 retval0;
    call.uni (retval0), mul_add, (param0, param1);
    ld.param.b32 %r6, [retval0+0];
    }
    {
    .param .align 8 .b8 param0[16];
    st.param.v2.b32 [param0], {%tid, %r6};
    st.param.b64 [param0+8], %rd1;
    .param .b64 retval0;
    call.uni (retval0), struct_sum, (param0);
    ld.param.b64 %rd2, [retval0];
    }
    // Registers and immediates for .param parameters, a register for a .param return value.
    call (%r7), mul_add, (%r6, 1);
    st.global.u32 [%a+768], %r7;
    BADCALL
    st.global.u32 [%a], %r5;
    st.global.u32 [%a+256], %r6;
    cvt.u32.u64 %r7, %rd2;
    st.global.u32 [%a+512], %r7;
    CALL
    ret;
}
"#;

#[test]
fn param_space_arguments_and_return_values() {
    let body = PARAMS
        .replace("PROLOGUE", PROLOGUE)
        .replace("BADCALL", "")
        .replace("CALL", "");
    let r = run_out(&body, 64, 4 * 64).unwrap_or_else(|e| panic!("{e}"));
    for t in 0..64u32 {
        let r5 = 3 * t + 100 * t;
        let r6 = 3 * r5 + 7;
        assert_eq!(r[t as usize], r5, "thread {t}");
        assert_eq!(r[64 + t as usize], r6, "thread {t}");
        assert_eq!(r[128 + t as usize], t + r6 + 100 * t, "thread {t}");
        assert_eq!(r[192 + t as usize], 3 * r6 + 1, "thread {t}");
    }
}

#[test]
fn param_space_mismatches_and_unwritten_values_are_errors() {
    // A 4-byte register for a 16-byte .param parameter is a parse error.
    let body = PARAMS
        .replace("PROLOGUE", PROLOGUE)
        .replace("BADCALL", "call (%rd3), struct_sum, (%r6);")
        .replace("CALL", "");
    let e = Module::parse("fn.ptx", &format!("{HEADER}{body}")).unwrap_err();
    assert_eq!(e.file, "fn.ptx");
    assert_eq!(
        e.line,
        line_of(&body, "call (%rd3), struct_sum, (%r6);"),
        "{e}"
    );
    assert!(e.message.contains("struct_sum"), "{e}");
    // A .param return value the callee never stored.
    let body = PARAMS
        .replace("PROLOGUE", PROLOGUE)
        .replace("BADCALL", "")
        .replace(
            "CALL",
            "{\n    .param .b32 retval0;\n    call.uni (retval0), forgets;\n    ld.param.b32 %r7, [retval0];\n    }",
        );
    let e = run_out(&body, 1, 4 * 64).expect_err("forgets stores nothing");
    assert_eq!(e.kind, ErrorKind::UninitializedRegister, "{e}");
    assert_eq!(e.function, "forgets");
    assert_eq!(e.line, line_of(&body, "ret; // forgets"));
    assert!(e.message.contains("func_retval0"), "{e}");
    // A .param variable read before it is stored.
    let body = PARAMS
        .replace("PROLOGUE", PROLOGUE)
        .replace("BADCALL", "")
        .replace(
            "CALL",
            "{\n    .param .b32 unset;\n    ld.param.b32 %r7, [unset]; // unset\n    }",
        );
    let e = run_out(&body, 1, 4 * 64).expect_err("unset is never stored");
    assert_eq!(e.kind, ErrorKind::UninitializedRegister, "{e}");
    assert_eq!(e.function, "k");
    assert_eq!(e.line, line_of(&body, "// unset"));
    assert!(e.message.contains("unset"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Labels, recursion, exit, and the signature checks.

const LABELS: &str = r#"
// sum of 1..=n by a loop
.func (.reg .b32 %r) tri(.reg .b32 %n)
{
    .reg .pred %p;
    mov.u32 %r, 0;
LOOP:
    setp.eq.u32 %p, %n, 0;
    @%p bra DONE;
    add.u32 %r, %r, %n;
    sub.u32 %n, %n, 1;
    bra LOOP;
DONE:
    ret;
}

// n! by recursion
.func (.reg .b32 %r) fact(.reg .b32 %n)
{
    .reg .pred %p;
    .reg .b32 %m;
    setp.le.u32 %p, %n, 1;
    @%p bra DONE;
    sub.u32 %m, %n, 1;
    call (%r), fact, (%m);
    mul.lo.u32 %r, %r, %n;
    ret;
DONE:
    mov.u32 %r, 1;
    ret;
}

.func quit()
{
    exit;
}

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .pred %p;
    .reg .b32 %v, %w, %n;
    mov.u32 %n, 0;
LOOP:
    add.u32 %n, %n, 1;
    setp.lt.u32 %p, %n, 3;
    @%p bra LOOP;
    call (%v), tri, (%tid);
    DEPTH
    call (%w), fact, (%n);
    add.u32 %v, %v, %w;
    st.global.u32 [%a], %v;
    setp.ne.u32 %p, %tid, 0;
    @%p call quit;
    st.global.u32 [%out+16], 99;
DONE:
    ret;
}
"#;

#[test]
fn labels_are_local_to_their_function_and_recursion_works() {
    let body = LABELS.replace("PROLOGUE", PROLOGUE).replace("DEPTH", "");
    let r = run_out(&body, 4, 5).unwrap_or_else(|e| panic!("{e}"));
    // tri(t) + 3!, and only thread 0 gets past `quit` to store 99.
    assert_eq!(r, vec![6, 7, 9, 12, 99]);
}

#[test]
fn unbounded_recursion_is_an_error_not_a_stack_overflow() {
    let body = LABELS
        .replace("PROLOGUE", PROLOGUE)
        .replace("DEPTH", "mov.u32 %n, 100;");
    let e = run_out(&body, 1, 5).expect_err("fact(100) nests 99 calls");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert_eq!(e.function, "fact");
    assert_eq!(e.called_from.len(), 64);
    assert!(e.message.contains("recursion"), "{e}");
}

#[test]
fn calls_are_checked_against_the_signature() {
    let bad = [
        (
            ".func f(.reg .b32 %x)\n{\nret;\n}\n.visible .entry k()\n{\ncall f;\nret;\n}\n",
            "takes",
        ),
        (
            ".visible .entry k()\n{\ncall missing;\nret;\n}\n",
            "undeclared function",
        ),
        (
            ".func f();\n.visible .entry k()\n{\ncall f;\nret;\n}\n",
            "no body",
        ),
        (
            ".func f()\n{\nret;\n}\n.func f()\n{\nret;\n}\n",
            "defined twice",
        ),
        (".func f()\n{\nA:\nA:\nret;\n}\n", "label `A` defined twice"),
        (
            ".func f()\n{\n.shared .u32 s[4];\nret;\n}\n",
            "module scope",
        ),
        (
            ".visible .entry k()\n{\n.reg .b32 %r;\ncall (%r), k;\nret;\n}\n",
            "cannot be called",
        ),
    ];
    for (src, want) in bad {
        let e = Module::parse("fn.ptx", &format!("{HEADER}{src}")).expect_err(src);
        assert!(e.message.contains(want), "{src}: {e}");
        assert!(e.to_string().starts_with("fn.ptx:"), "{e}");
    }
    // A .func is not a launchable entry.
    let module = module(".func f()\n{\nret;\n}\n");
    let e = Machine::new()
        .launch(&module, "f", [1, 1, 1], [1, 1, 1], &[])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Launch);
}

// ---------------------------------------------------------------------------------------------
// Modules joined from several files.

const HELPER: &str = "// helpers.ptx
.func (.reg .b32 %r) helper_div(.reg .b32 %x, .reg .b32 %y)
{
    .reg .b32 %unset;
    .reg .pred %p;
    setp.eq.u32 %p, %y, 0;
    @%p add.u32 %r, %x, %unset; // planted
    @!%p div.u32 %r, %x, %y;
    ret;
}
";

const KERNEL_REST: &str = "
.visible .entry k(.param .u64 out_ptr, .param .u32 y)
{
    .reg .b64 %out, %a;
    .reg .b32 %tid, %y, %v;
    ld.param.u64 %out, [out_ptr];
    ld.param.u32 %y, [y];
    mov.u32 %tid, %tid.x;
    call (%v), helper_div, (%tid, %y);
    mul.wide.u32 %a, %tid, 4;
    add.s64 %a, %out, %a;
    st.global.u32 [%a], %v;
    ret;
}
";

fn parts<'a>(helper: &'a str, rest: &'a str) -> [SourcePart<'a>; 3] {
    [
        SourcePart {
            file: "kernels/k.ptx",
            first_line: 1,
            text: "// k.ptx\n.version 8.0\n.target sm_80\n.address_size 64\n",
        },
        SourcePart {
            file: "kernels/helpers.ptx",
            first_line: 1,
            text: helper,
        },
        SourcePart {
            file: "kernels/k.ptx",
            first_line: 5,
            text: rest,
        },
    ]
}

#[test]
fn joined_sources_report_each_part_s_own_file_and_line() {
    let module = Module::parse_parts(&parts(HELPER, KERNEL_REST)).unwrap();
    assert_eq!(module.files, vec!["kernels/k.ptx", "kernels/helpers.ptx"]);
    let mut m = Machine::new();
    let out = m.alloc(4 * 4);
    m.launch(
        &module,
        "k",
        [1, 1, 1],
        [4, 1, 1],
        &[&out.to_le_bytes(), &2u32.to_le_bytes()],
    )
    .unwrap();
    assert_eq!(words(&mut m, out, 4), vec![0, 0, 1, 1]);
    // The planted read of %unset, in the helper part, reports helpers.ptx and its own line.
    let e = m
        .launch(
            &module,
            "k",
            [1, 1, 1],
            [4, 1, 1],
            &[&out.to_le_bytes(), &0u32.to_le_bytes()],
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UninitializedRegister, "{e}");
    assert_eq!(e.function, "helper_div");
    assert_eq!(e.file, "kernels/helpers.ptx", "{e}");
    assert_eq!(
        e.line,
        HELPER.lines().position(|l| l.contains("planted")).unwrap() as u32 + 1
    );
    // ...called from the kernel's part, at its line in k.ptx (part 3 starts at line 5).
    assert_eq!(e.called_from[0].file, "kernels/k.ptx");
    assert_eq!(
        e.called_from[0].line,
        KERNEL_REST
            .lines()
            .position(|l| l.contains("call (%v)"))
            .unwrap() as u32
            + 5
    );
    assert!(
        e.to_string()
            .contains("in function helper_div of kernel k at kernels/helpers.ptx:7"),
        "{e}"
    );
}

#[test]
fn a_parse_error_in_a_later_part_reports_its_file_and_line() {
    let rest = KERNEL_REST.replace("mul.wide.u32 %a", "mul.wide.u32 %nope");
    let e = Module::parse_parts(&parts(HELPER, &rest)).unwrap_err();
    assert_eq!(e.file, "kernels/k.ptx", "{e}");
    assert_eq!(
        e.line,
        rest.lines().position(|l| l.contains("%nope")).unwrap() as u32 + 5,
        "{e}"
    );
    assert!(e.message.contains("%nope"), "{e}");
    assert!(e.to_string().starts_with("kernels/k.ptx:14:"), "{e}");
    // In the helper part (which lacks its final newline): the helper's own line.
    let helper = HELPER.trim_end().replace("@!%p div", "@!%p frob");
    let e = Module::parse_parts(&parts(&helper, KERNEL_REST));
    // An unknown opcode parses (it is an error only if it runs); a bad operand does not.
    assert!(e.is_ok());
    let helper = HELPER.trim_end().replace("%x, %y;", "%x, %zz;");
    let e = Module::parse_parts(&parts(&helper, KERNEL_REST)).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("kernels/helpers.ptx", 8), "{e}");
    // A single part is Module::parse.
    let e = Module::parse("one.ptx", "\n\n.bogus\n").unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("one.ptx", 3));
}

// ---------------------------------------------------------------------------------------------
// Speed: straight-line code runs as fast as before, and calls are cheap.

const SPEED: &str = r#"
.func (.reg .b32 %r) step(.reg .b32 %x)
{
    mad.lo.u32 %r, %x, 1664525, 1013904223;
    ret;
}

.visible .entry k(.param .u64 out_ptr)
{
    PROLOGUE
    .reg .pred %p;
    .reg .b32 %i, %x;
    mov.u32 %x, %tid;
    mov.u32 %i, 0;
LOOP:
    BODY
    add.u32 %i, %i, 1;
    setp.lt.u32 %p, %i, 2000;
    @%p bra LOOP;
    st.global.u32 [%a], %x;
    ret;
}
"#;

fn rate(body: &str) -> (f64, u64) {
    let module = module(&SPEED.replace("PROLOGUE", PROLOGUE).replace("BODY", body));
    let mut m = Machine::new();
    let out = m.alloc(4 * 256);
    let start = std::time::Instant::now();
    // One block: every block of a larger grid would store to the same `out[tid]`, a
    // cross-block race the interpreter reports.
    let n = m
        .launch(&module, "k", [1, 1, 1], [256, 1, 1], &[&out.to_le_bytes()])
        .unwrap_or_else(|e| panic!("{e}"));
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

#[test]
fn interpreter_speed_with_and_without_calls() {
    let (straight, n) = rate("mad.lo.u32 %x, %x, 1664525, 1013904223;\n    xor.b32 %x, %x, %i;");
    let (calls, m) = rate("call (%x), step, (%x);\n    xor.b32 %x, %x, %i;");
    assert!(m > n);
    println!(
        "ptx-interp speed: straight-line {:.1} M instructions/s, with a call per iteration {:.1} M instructions/s",
        straight / 1e6,
        calls / 1e6
    );
    assert!(
        straight >= 10e6,
        "straight-line code runs at {:.1} M instructions/s, below 10 M",
        straight / 1e6
    );
}

/// The 64-bit rule through calls: a wrapped 32-bit value passed to a function that forms an
/// address from it (as `ultramem_table_load` does with its element index), and a wrapped value
/// a function returns that the caller forms an address from, are both caught; the same code
/// without the wrap runs.
#[test]
fn a_wrapped_offset_is_caught_through_call_arguments_and_return_values() {
    let body = |mul: &str| {
        format!(
            "
.func store_at(.reg .b64 %base, .reg .b64 %elem)
{{
    .reg .b64 %off, %addr;
    shl.b64 %off, %elem, 2;
    add.s64 %addr, %base, %off;
    st.global.u32 [%addr], 7;  // store in callee
    ret;
}}

.func (.reg .b32 %r) scaled(.reg .b32 %x)
{{
    .reg .b32 %even;
    and.b32 %even, %x, 2;
    {mul} %r, %even, 0x80000000;
    ret;
}}

.visible .entry k(.param .u64 out_ptr)
.maxntid 4, 1, 1
{{
{PROLOGUE}
    .reg .b32 %i, %j, %even;
    .reg .b64 %e, %o;
    // Argument: ((tid & 2) · 2^31) is 0 for threads 0 and 1 and wraps to 0 (a valid element)
    // for thread 2.
    and.b32 %even, %tid, 2;
    {mul} %i, %even, 0x80000000;
    cvt.u64.u32 %e, %i;
    call store_at, (%out, %e);
    // Return value: the same product, computed in the callee.
    call (%j), scaled, (%tid);
    mul.wide.u32 %o, %j, 1;
    add.s64 %o, %out, %o;
    st.global.u32 [%o], 8;  // store in caller
    ret;
}}
"
        )
    };
    // Thread 2 wraps (2 · 2^31 = 2^32); threads 0 and 1 do not. Through the argument:
    let wrapping = body("mul.lo.u32");
    let e = run_out(&wrapping, 3, 4).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrappedAddress, "{e}");
    assert_eq!(e.line, line_of(&wrapping, "store in callee"), "{e}");
    assert_eq!(e.thread, [2, 0, 0], "{e}");
    // Through the return value: a module whose argument path cannot wrap (a 64-bit product).
    let ret_only = wrapping.replacen(
        "mul.lo.u32 %i, %even, 0x80000000;\n    cvt.u64.u32 %e, %i;",
        "mul.wide.u32 %e, %tid, 0;",
        1,
    );
    assert_ne!(ret_only, wrapping);
    let e = run_out(&ret_only, 3, 4).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrappedAddress, "{e}");
    assert_eq!(e.line, line_of(&ret_only, "store in caller"), "{e}");
    // Two threads never wrap: both paths run.
    run_out(&wrapping, 2, 4).unwrap();
}
