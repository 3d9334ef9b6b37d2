//! The PEER per-slot FFN on a GPU: `kernels/peer_ffn.ptx`, `shaders/peer_ffn.wgsl`, with the
//! value reads done by the weighted-gather kernels.

use super::params::ValueParams;
use super::weighted_gather::Gather;
use super::{
    check_status, fits_binding, fits_u32, grid, row_sort, status_word, table_dtype, Fill, Gpu,
    Launch,
};
use crate::dims::peer_ffn::{Activation, PeerFfnDims};
use crate::dims::BackwardMode;
use crate::dtype::DType;
use crate::error::Result;
use crate::registry::KernelId;

const OP: &str = "peer_ffn";
const THREADS: u32 = 128;

/// The device buffers of one PEER call: `rows[T, M]` (u32), `scores[T, M, Cn]`, `z[T, Dp]`
/// (f32), `down[N, Dp]`, `up[N, Dv]` (of the table dtype).
pub struct PeerBuffers<'a, B> {
    /// Value rows.
    pub rows: &'a B,
    /// Per-slot, per-core scores.
    pub scores: &'a B,
    /// The pre-value input.
    pub z: &'a B,
    /// The down table.
    pub down: &'a B,
    /// The up table.
    pub up: &'a B,
}

/// The gradients of [`backward`], new f32 buffers.
pub struct PeerGradBuffers<B> {
    /// `[T, Dp]`.
    pub dz: B,
    /// `[T, M, Cn]`.
    pub dscores: B,
    /// `[N, Dp]`.
    pub ddown: B,
    /// `[N, Dv]`.
    pub dup: B,
}

fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Identity => 0,
        Activation::Relu => 1,
        Activation::Gelu => 2,
        Activation::Silu => 3,
    }
}

/// The checked 32-bit sizes of one call.
struct Sizes {
    tokens: u32,
    slots: u32,
    cores: u32,
    table_rows: u32,
    dp: u32,
    dv: u32,
}

fn sizes<G: Gpu>(gpu: &G, d: &PeerFfnDims, dtype: DType) -> Result<Sizes> {
    table_dtype::<G>(OP, dtype)?;
    let b = G::BACKEND;
    let table_bytes = dtype.size_bytes();
    fits_u32(OP, b, "T*M*(2Cn+1)", d.tokens * d.slots * (2 * d.cores + 1))?;
    fits_u32(OP, b, "T*Dv", d.tokens * d.dv)?;
    fits_u32(OP, b, "T*Dp", d.tokens * d.dp)?;
    for (what, bytes) in [
        ("the down table", d.table_rows * d.dp * table_bytes),
        ("the up table", d.table_rows * d.dv * table_bytes),
        ("the up gradient", d.table_rows * d.dv * 4),
        ("the down gradient", d.table_rows * d.dp * 4),
        (
            "the per-slot scratch",
            d.tokens * d.slots * (2 * d.cores + 1) * 4,
        ),
    ] {
        fits_binding(gpu, OP, what, bytes)?;
    }
    Ok(Sizes {
        tokens: fits_u32(OP, b, "T", d.tokens)?,
        slots: fits_u32(OP, b, "M", d.slots)?,
        cores: fits_u32(OP, b, "Cn", d.cores)?,
        table_rows: fits_u32(OP, b, "N", d.table_rows)?,
        dp: fits_u32(OP, b, "Dp", d.dp)?,
        dv: fits_u32(OP, b, "Dv", d.dv)?,
    })
}

fn launch<G: Gpu>(
    gpu: &G,
    entry: &'static str,
    dtype: DType,
    mut params: ValueParams,
    args: &[Option<&G::Buffer>],
) -> Result<()> {
    let (gx, gy) = grid::<G>(OP, params.entries as usize)?;
    params.grid_x = gx;
    gpu.launch(&Launch {
        kernel: KernelId::PeerFfn,
        entry,
        table_dtype: dtype,
        params: bytemuck::bytes_of(&params),
        args,
        grid: (gx, gy),
        threads: THREADS,
        overrides: &[],
    })
}

fn params<G: Gpu>(s: &Sizes, dtype: DType, activation: Activation) -> Result<ValueParams> {
    Ok(ValueParams {
        tokens: s.tokens,
        slots: s.slots,
        cores: s.cores,
        table_rows: s.table_rows,
        width: s.dv,
        slice_width: s.dv / s.cores,
        entries: s.tokens * s.slots,
        activation: activation_code(activation),
        dp: s.dp,
        dv: s.dv,
        table_dtype: table_dtype::<G>(OP, dtype)?,
        ..ValueParams::default()
    })
}

/// The forward on device buffers: a new `out[T, Dv]` (f32).
///
/// # Errors
/// Sizes past the kernels' limits, a table dtype they cannot read, a row `>= N`, and the
/// backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    d: &PeerFfnDims,
    dtype: DType,
    activation: Activation,
    b: &PeerBuffers<'_, G::Buffer>,
) -> Result<G::Buffer> {
    let s = sizes(gpu, d, dtype)?;
    let p = params::<G>(&s, dtype, activation)?;
    let status = status_word(gpu)?;
    // weights[s, c] = scores[s, c]·φ(<down[ρ], z[t]>), then a weighted gather of the up rows.
    let weights = gpu.alloc(p.entries as usize * d.cores * 4, Fill::Output)?;
    if p.entries > 0 {
        let a = [
            Some(b.rows),
            Some(b.scores),
            Some(b.down),
            None,
            Some(b.z),
            None,
            Some(&weights),
            Some(&status),
        ];
        launch(gpu, "peer_ffn_alpha", dtype, p, &a)?;
    }
    let gather = Gather::<G> {
        tokens: s.tokens,
        slots: s.slots,
        cores: s.cores,
        table_rows: s.table_rows,
        width: s.dv,
        table_dtype: dtype,
        rows: b.rows,
        weights: &weights,
        table: b.up,
        status: &status,
    };
    let out = gather.forward(gpu)?;
    check_status(
        gpu,
        status,
        OP,
        "rows",
        b.rows,
        (s.tokens * s.slots) as usize,
        u64::from(s.table_rows),
    )?;
    Ok(out)
}

/// The backward on device buffers, given `dout[T, Dv]`. `Atomic` on a backend without float
/// atomics runs the deterministic path.
///
/// # Errors
/// As [`forward`].
pub fn backward<G: Gpu>(
    gpu: &G,
    d: &PeerFfnDims,
    dtype: DType,
    activation: Activation,
    mode: BackwardMode,
    b: &PeerBuffers<'_, G::Buffer>,
    dout: &G::Buffer,
) -> Result<PeerGradBuffers<G::Buffer>> {
    let s = sizes(gpu, d, dtype)?;
    let mut p = params::<G>(&s, dtype, activation)?;
    let status = status_word(gpu)?;
    let entries = p.entries as usize;
    let per_core = entries * d.cores * 4;
    let atomic = mode == BackwardMode::Atomic && gpu.has_float_atomics();
    let atomic_grads = if atomic {
        Some((
            gpu.alloc(d.table_rows * d.dv * 4, Fill::Zero)?,
            gpu.alloc(d.table_rows * d.dp * 4, Fill::Zero)?,
        ))
    } else {
        None
    };
    p.flags = u32::from(atomic);
    // Per slot: [ds | wv = s·φ(α) | dα].
    let slots_out = gpu.alloc(2 * per_core + entries * 4, Fill::Output)?;
    if entries > 0 {
        let a = [
            Some(b.rows),
            Some(b.scores),
            Some(b.down),
            Some(b.up),
            Some(b.z),
            Some(dout),
            Some(&slots_out),
            Some(&status),
            atomic_grads.as_ref().map(|(dup, _)| dup),
            atomic_grads.as_ref().map(|(_, ddown)| ddown),
        ];
        launch(gpu, "peer_ffn_backward_slots", dtype, p, &a)?;
    }
    let region = |offset: usize, bytes: usize| -> Result<G::Buffer> {
        let mut buf = gpu.alloc(bytes, Fill::Output)?;
        if bytes > 0 {
            gpu.copy(&slots_out, offset, &mut buf, 0, bytes)?;
        }
        Ok(buf)
    };
    let dscores = region(0, per_core)?;
    let wv = region(per_core, per_core)?;
    let dalpha = region(2 * per_core, entries * 4)?;
    // dz[t] = Σ_k dα·down[ρ]: a weighted gather of the down rows with one core.
    let down_gather = Gather::<G> {
        tokens: s.tokens,
        slots: s.slots,
        cores: 1,
        table_rows: s.table_rows,
        width: s.dp,
        table_dtype: dtype,
        rows: b.rows,
        weights: &dalpha,
        table: b.down,
        status: &status,
    };
    let dz = down_gather.forward(gpu)?;
    let (dup, ddown) = match atomic_grads {
        Some(grads) => grads,
        None => {
            let order = if entries > 0 {
                Some(row_sort::sort_rows(
                    gpu,
                    OP,
                    b.rows,
                    s.table_rows,
                    p.entries,
                )?)
            } else {
                None
            };
            let up_scatter = Gather::<G> {
                cores: s.cores,
                width: s.dv,
                weights: &wv,
                ..down_gather
            };
            let dup = up_scatter.backward_rows(gpu, dout, order.as_ref())?;
            let ddown = down_gather.backward_rows(gpu, b.z, order.as_ref())?;
            (dup, ddown)
        }
    };
    check_status(
        gpu,
        status,
        OP,
        "rows",
        b.rows,
        (s.tokens * s.slots) as usize,
        u64::from(s.table_rows),
    )?;
    Ok(PeerGradBuffers {
        dz,
        dscores,
        ddown,
        dup,
    })
}
