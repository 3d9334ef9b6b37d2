//! The MoE expert FFN on a GPU: `kernels/moe_ffn.ptx`, `shaders/moe_ffn.wgsl`.
//!
//! The routed entries are sorted by expert with the row sort, then `up` and `down` run one
//! workgroup per run of equal experts and 16 weight rows (each expert's weights are read about
//! once per call, whatever the batch), and `combine` sums each token's gated expert outputs in
//! slot order (deterministic).

use super::params::MoeParams;
use super::{
    check_status, fits_binding, fits_u32, grid, row_sort, status_word, table_dtype, Fill, Gpu,
    Launch,
};
use crate::dims::moe_ffn::MoeFfnDims;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "moe_ffn";
const THREADS: u32 = 128;
const ROWS_PER_GROUP: usize = 16;

/// The device buffers of one MoE call: `x[T, D]` (f32), `experts[T, k]` (u32), `gates[T, k]`
/// (f32), `w1`, `w3` `[E, F, D]` and `w2` `[E, D, F]` (of the table dtype).
pub struct MoeBuffers<'a, B> {
    /// Tokens.
    pub x: &'a B,
    /// Expert ids.
    pub experts: &'a B,
    /// Gates.
    pub gates: &'a B,
    /// Gate projections.
    pub w1: &'a B,
    /// Up projections.
    pub w3: &'a B,
    /// Down projections.
    pub w2: &'a B,
}

/// The forward on device buffers: a new `out[T, D]` (f32).
///
/// # Errors
/// An expert id `>= E` ([`crate::Error::IndexOutOfRange`]), sizes past the kernels' 32-bit
/// counters or one binding, and the backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &MoeFfnDims,
    dtype: DType,
    b: &MoeBuffers<'_, G::Buffer>,
) -> Result<G::Buffer> {
    let entries = d.tokens * d.k;
    let weight_bytes = d.experts * d.ffn * d.d_model * dtype.size_bytes();
    fits_u32(OP, G::BACKEND, "T·k·F", entries * d.ffn)?;
    fits_u32(OP, G::BACKEND, "T·k·D", entries * d.d_model)?;
    fits_u32(OP, G::BACKEND, "E·F·D", d.experts * d.ffn * d.d_model)?;
    fits_binding(gpu, OP, "an expert weight tensor", weight_bytes)?;
    fits_binding(
        gpu,
        OP,
        "the per-entry expert outputs",
        entries * d.d_model * 4,
    )?;
    let out = gpu.alloc(d.tokens * d.d_model * 4, Fill::Output)?;
    if entries == 0 {
        return Ok(out);
    }
    let status = status_word(gpu)?;
    let hidden = gpu.alloc(entries * d.ffn * 4, Fill::Output)?;
    let partial = gpu.alloc(entries * d.d_model * 4, Fill::Output)?;
    let order = row_sort::sort_rows(gpu, OP, b.experts, d.experts as u32, entries as u32)?;
    let params = |chunks: usize| MoeParams {
        entries: entries as u32,
        k: d.k as u32,
        d_model: d.d_model as u32,
        ffn: d.ffn as u32,
        experts: d.experts as u32,
        chunks: chunks as u32,
        table_dtype: 0,
        grid_x: 0,
        tokens: d.tokens as u32,
        ..MoeParams::default()
    };
    let run = |entry: &'static str,
               mut params: MoeParams,
               workgroups: usize,
               w_a: &G::Buffer,
               w_b: &G::Buffer|
     -> Result<()> {
        let (gx, gy) = grid::<G>(OP, workgroups)?;
        params.grid_x = gx;
        params.table_dtype = table_dtype::<G>(OP, dtype)?;
        gpu.launch(&Launch {
            kernel: KernelId::MoeFfn,
            entry,
            table_dtype: dtype,
            params: bytemuck::bytes_of(&params),
            args: &[
                Some(b.x),
                Some(b.experts),
                Some(b.gates),
                Some(&order),
                Some(w_a),
                Some(w_b),
                Some(&hidden),
                Some(&partial),
                Some(&out),
                Some(&status),
            ],
            grid: (gx, gy),
            threads: THREADS,
            overrides: &[],
        })
    };
    let up_chunks = d.ffn.div_ceil(ROWS_PER_GROUP);
    run(
        "moe_ffn_up",
        params(up_chunks),
        entries * up_chunks,
        b.w1,
        b.w3,
    )?;
    let down_chunks = d.d_model.div_ceil(ROWS_PER_GROUP);
    // down reads only w_a; w2 fills the w_b slot so every binding is bound.
    run(
        "moe_ffn_down",
        params(down_chunks),
        entries * down_chunks,
        b.w2,
        b.w2,
    )?;
    let elems = d.tokens * d.d_model;
    run(
        "moe_ffn_combine",
        params(1),
        elems.div_ceil(THREADS as usize),
        b.w2,
        b.w2,
    )?;
    check_status(
        gpu,
        status,
        OP,
        "experts",
        b.experts,
        entries,
        d.experts as u64,
    )?;
    Ok(out)
}
