//! The PEER per-slot FFN on a GPU: `kernels/peer_ffn.ptx`, `shaders/peer_ffn.wgsl`, with the
//! value reads done by the weighted-gather kernels.

use std::sync::Arc;

use super::params::ValueParams;
use super::weighted_gather::Gather;
use super::{
    check_status, fits_binding, fits_u32, grid, row_sort, status_word, table_dtype, Fill, Gpu,
    Launch,
};
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::peer_ffn::{Activation, PeerFfnArgs, PeerFfnDims, PeerFfnGrads};
use crate::ops::BackwardMode;
use crate::registry::KernelId;
use crate::tensor::Tensor;

const OP: &str = "peer_ffn";
const THREADS: u32 = 128;

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
    rows: u32,
    dp: u32,
    dv: u32,
}

fn sizes<G: Gpu>(gpu: &G, d: &PeerFfnDims, table_bytes: usize) -> Result<Sizes> {
    let b = G::BACKEND;
    fits_u32(OP, b, "T*M*(2Cn+1)", d.tokens * d.slots * (2 * d.cores + 1))?;
    fits_u32(OP, b, "T*Dv", d.tokens * d.dv)?;
    fits_u32(OP, b, "T*Dp", d.tokens * d.dp)?;
    for (what, bytes) in [
        ("the down table", d.rows * d.dp * table_bytes),
        ("the up table", d.rows * d.dv * table_bytes),
        ("the up gradient", d.rows * d.dv * 4),
        ("the down gradient", d.rows * d.dp * 4),
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
        rows: fits_u32(OP, b, "N", d.rows)?,
        dp: fits_u32(OP, b, "Dp", d.dp)?,
        dv: fits_u32(OP, b, "Dv", d.dv)?,
    })
}

fn launch<G: Gpu, V: Float>(
    gpu: &G,
    entry: &'static str,
    mut params: ValueParams,
    args: &[Option<&G::Buffer>],
) -> Result<()> {
    let (gx, gy) = grid::<G>(OP, params.entries as usize)?;
    params.grid_x = gx;
    gpu.launch(&Launch {
        kernel: KernelId::PeerFfn,
        entry,
        table_dtype: V::DTYPE,
        params: bytemuck::bytes_of(&params),
        args,
        grid: (gx, gy),
        threads: THREADS,
    })
}

fn params<G: Gpu, V: Float>(s: &Sizes, activation: Activation) -> Result<ValueParams> {
    Ok(ValueParams {
        tokens: s.tokens,
        slots: s.slots,
        cores: s.cores,
        rows: s.rows,
        width: s.dv,
        slice_width: s.dv / s.cores,
        entries: s.tokens * s.slots,
        activation: activation_code(activation),
        dp: s.dp,
        dv: s.dv,
        table_dtype: table_dtype::<G>(OP, V::DTYPE)?,
        ..ValueParams::default()
    })
}

pub(crate) fn forward<G: Gpu, V: Float>(
    gpu: &Arc<G>,
    args: &PeerFfnArgs<'_, V>,
    d: &PeerFfnDims,
) -> Result<Tensor<f32>> {
    let s = sizes(gpu.as_ref(), d, V::DTYPE.size_bytes())?;
    let p = params::<G, V>(&s, args.activation)?;
    let status = status_word(gpu.as_ref())?;
    let rows = G::buffer(OP, "rows", args.rows)?;
    let up = G::buffer(OP, "up", args.up)?;
    // weights[s, c] = scores[s, c]·φ(<down[ρ], z[t]>), then a weighted gather of the up rows.
    let weights = gpu.alloc(p.entries as usize * d.cores * 4, Fill::Output)?;
    if p.entries > 0 {
        let a = [
            Some(rows),
            Some(G::buffer(OP, "scores", args.scores)?),
            Some(G::buffer(OP, "down", args.down)?),
            None,
            Some(G::buffer(OP, "z", args.z)?),
            None,
            Some(&weights),
            Some(&status),
        ];
        launch::<G, V>(gpu.as_ref(), "peer_ffn_alpha", p, &a)?;
    }
    let gather = Gather::<G> {
        tokens: s.tokens,
        slots: s.slots,
        cores: s.cores,
        rows: s.rows,
        width: s.dv,
        table_dtype: V::DTYPE,
        row_buf: rows,
        weights: &weights,
        table: up,
        status: &status,
    };
    let out = gather.forward(gpu.as_ref())?;
    check_status(gpu.as_ref(), &status, OP, "rows", rows, u64::from(s.rows))?;
    gpu.wrap(&[d.tokens, d.dv], out)
}

pub(crate) fn backward<G: Gpu, V: Float>(
    gpu: &Arc<G>,
    args: &PeerFfnArgs<'_, V>,
    dout: &Tensor<f32>,
    mode: BackwardMode,
    d: &PeerFfnDims,
) -> Result<PeerFfnGrads> {
    let s = sizes(gpu.as_ref(), d, V::DTYPE.size_bytes())?;
    let mut p = params::<G, V>(&s, args.activation)?;
    let status = status_word(gpu.as_ref())?;
    let rows = G::buffer(OP, "rows", args.rows)?;
    let down = G::buffer(OP, "down", args.down)?;
    let z = G::buffer(OP, "z", args.z)?;
    let g = G::buffer(OP, "dout", dout)?;
    let entries = p.entries as usize;
    let per_core = entries * d.cores * 4;
    // Atomic is a request: a backend without float atomics (wgpu) runs the deterministic path.
    let atomic = mode == BackwardMode::Atomic && gpu.has_float_atomics();
    let atomic_grads = if atomic {
        Some((
            gpu.alloc(d.rows * d.dv * 4, Fill::Zero)?,
            gpu.alloc(d.rows * d.dp * 4, Fill::Zero)?,
        ))
    } else {
        None
    };
    p.flags = u32::from(atomic);
    // Per slot: [ds | wv = s·φ(α) | dα].
    let slots_out = gpu.alloc(2 * per_core + entries * 4, Fill::Output)?;
    if entries > 0 {
        let a = [
            Some(rows),
            Some(G::buffer(OP, "scores", args.scores)?),
            Some(down),
            Some(G::buffer(OP, "up", args.up)?),
            Some(z),
            Some(g),
            Some(&slots_out),
            Some(&status),
            atomic_grads.as_ref().map(|(dup, _)| dup),
            atomic_grads.as_ref().map(|(_, ddown)| ddown),
        ];
        launch::<G, V>(gpu.as_ref(), "peer_ffn_backward_slots", p, &a)?;
    }
    let region = |offset: usize, bytes: usize| -> Result<G::Buffer> {
        let mut buf = gpu.alloc(bytes, Fill::Output)?;
        if bytes > 0 {
            gpu.copy(&slots_out, offset, &mut buf, 0, bytes)?;
        }
        Ok(buf)
    };
    let ds = region(0, per_core)?;
    let wv = region(per_core, per_core)?;
    let dalpha = region(2 * per_core, entries * 4)?;
    // dz[t] = Σ_k dα·down[ρ]: a weighted gather of the down rows with one core.
    let down_gather = Gather::<G> {
        tokens: s.tokens,
        slots: s.slots,
        cores: 1,
        rows: s.rows,
        width: s.dp,
        table_dtype: V::DTYPE,
        row_buf: rows,
        weights: &dalpha,
        table: down,
        status: &status,
    };
    let dz = down_gather.forward(gpu.as_ref())?;
    let (dup, ddown) = match atomic_grads {
        Some(grads) => grads,
        None => {
            let order = if entries > 0 {
                Some(row_sort::sort(gpu.as_ref(), OP, rows, s.rows, p.entries)?)
            } else {
                None
            };
            let up_scatter = Gather::<G> {
                cores: s.cores,
                width: s.dv,
                weights: &wv,
                ..down_gather
            };
            let dup = up_scatter.backward_rows(gpu.as_ref(), g, order.as_ref())?;
            let ddown = down_gather.backward_rows(gpu.as_ref(), z, order.as_ref())?;
            (dup, ddown)
        }
    };
    check_status(gpu.as_ref(), &status, OP, "rows", rows, u64::from(s.rows))?;
    Ok(PeerFfnGrads {
        dz: gpu.wrap(&[d.tokens, d.dp], dz)?,
        dscores: gpu.wrap(&[d.tokens, d.slots, d.cores], ds)?,
        ddown: gpu.wrap(&[d.rows, d.dp], ddown)?,
        dup: gpu.wrap(&[d.rows, d.dv], dup)?,
    })
}
