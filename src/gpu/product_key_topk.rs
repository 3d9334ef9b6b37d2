//! The product-key top-k on a GPU, additive and Tucker: `kernels/product_key_topk.ptx`,
//! `shaders/product_key_topk.wgsl`. The backward's dense parts are weighted gathers
//! (`kernels/weighted_gather.ptx`): `dq` gathers key rows, `dkeys` scatters query rows.
#![cfg_attr(
    not(gpu_backend),
    allow(
        dead_code,
        reason = "the buffer-level entry points serve the ops' GPU paths and the C ABI's, which a build without a GPU backend lacks"
    )
)]

use super::params::TopkParams;
use super::weighted_gather::Gather;
use super::{
    fits_u32, grid, recorded, report, row_sort, table_dtype, Decode, Fill, Gpu, IndexSource, Launch,
};
use crate::dims::additive_topk::AdditiveTopkDims;
use crate::dims::tucker_topk::TuckerTopkDims;
use crate::dims::BackwardMode;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::registry::KernelId;

const THREADS: u32 = 256;
/// Largest supported sizes: the PTX's static workgroup arrays and the WGSL list are built for them.
const MAX_N: usize = 4096;
const MAX_K1: usize = 128;
const MAX_M: usize = 1024;
const MAX_RANK: usize = 4;
const MAX_CORE_WORDS: usize = 64;

/// One call's sizes in the kernels' common layout: `q[T, H, 2, R, dim]`, `keys[H, 2, R, n, dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopkShape {
    /// Tokens.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Sub-keys per side.
    pub n: usize,
    /// Length of one query–key dot product.
    pub dim: usize,
    /// Tucker rank (1 for additive).
    pub rank: usize,
    /// Cores (1 for additive).
    pub cores: usize,
    /// Stage-1 width.
    pub k1: usize,
    /// Results per token and head.
    pub m: usize,
    /// Additive scores instead of the Tucker grid.
    pub additive: bool,
}

impl TopkShape {
    /// The additive op's sizes: `R = 1`, `dim = Dk/2`.
    pub fn additive(d: &AdditiveTopkDims) -> TopkShape {
        TopkShape {
            tokens: d.tokens,
            heads: d.heads,
            n: d.n,
            dim: d.dk / 2,
            rank: 1,
            cores: 1,
            k1: d.k1,
            m: d.k,
            additive: true,
        }
    }

    /// The Tucker op's sizes.
    pub fn tucker(d: &TuckerTopkDims) -> TopkShape {
        TopkShape {
            tokens: d.tokens,
            heads: d.heads,
            n: d.n,
            dim: d.dk,
            rank: d.rank,
            cores: d.cores,
            k1: d.k1,
            m: d.m,
            additive: false,
        }
    }

    fn op(&self) -> &'static str {
        if self.additive {
            "additive_topk"
        } else {
            "tucker_topk"
        }
    }

    /// Workgroup words for the stage-1 keys or the two selections, in multiples of 256.
    fn pool_words(&self) -> usize {
        self.n.max(2 * self.k1 * (1 + self.rank)).div_ceil(256) * 256
    }

    /// Checks the supported range and the device's limits.
    fn check<G: Gpu>(&self, gpu: &G) -> Result<()> {
        let unsupported = |reason: String| Error::Unsupported {
            op: self.op(),
            backend: G::BACKEND,
            reason,
        };
        for (what, v, max) in [
            ("n", self.n, MAX_N),
            ("K1", self.k1, MAX_K1),
            ("m", self.m, MAX_M),
            ("R", self.rank, MAX_RANK),
            ("Cn·R²", self.cores * self.rank * self.rank, MAX_CORE_WORDS),
        ] {
            if v > max {
                return Err(unsupported(format!(
                    "{what} = {v} is above the kernels' {max}"
                )));
            }
        }
        let entries = self.tokens * self.heads * 2 * self.rank * self.m;
        fits_u32(
            self.op(),
            G::BACKEND,
            "T·H·2·R·Dk",
            self.tokens * self.heads * 2 * self.rank * self.dim,
        )?;
        fits_u32(self.op(), G::BACKEND, "T·H·2·R·m", entries)?;
        let core_terms = self.tokens * self.heads * self.m * self.cores * self.rank * self.rank;
        fits_u32(self.op(), G::BACKEND, "T·H·m·Cn·R²", core_terms)?;
        // The kernels index these buffers with 32-bit element offsets: stage 1's selections
        // `sel_s[2·T·H·R·K1]` (and `sel_idx[2·T·H·K1]`, smaller), and the backward's
        // `weights_and_cores`, whose core terms start after the `T·H·2·R·m` weights.
        fits_u32(
            self.op(),
            G::BACKEND,
            "2·T·H·R·K1",
            2 * self.tokens * self.heads * self.rank * self.k1,
        )?;
        fits_u32(
            self.op(),
            G::BACKEND,
            "T·H·2·R·m + T·H·m·Cn·R²",
            entries + core_terms,
        )?;
        let workgroup = 4 * self.pool_words() as u64 + 4 * (256 + 1024 + 2 + 64);
        if workgroup > gpu.max_workgroup_bytes() {
            return Err(unsupported(format!(
                "n = {}, K1 = {} need {workgroup} bytes of workgroup memory, this device has {}",
                self.n,
                self.k1,
                gpu.max_workgroup_bytes()
            )));
        }
        Ok(())
    }

    fn params<G: Gpu>(&self, dtype: DType) -> Result<TopkParams> {
        let u = |v: usize| v as u32;
        Ok(TopkParams {
            tokens: u(self.tokens),
            heads: u(self.heads),
            n: u(self.n),
            dim: u(self.dim),
            rank: u(self.rank),
            cores: u(self.cores),
            k1: u(self.k1),
            m: u(self.m),
            additive: u32::from(self.additive),
            table_dtype: table_dtype::<G>(self.op(), dtype)?,
            ..TopkParams::default()
        })
    }
}

/// The device buffers of one top-k call, in the common layout. `proxy[H, 2, R]` holds `u` then
/// `v` per head (ones for additive); `cores[H, Cn, R, R]` (unread for additive).
pub struct TopkBuffers<'a, B> {
    /// Queries.
    pub q: &'a B,
    /// Keys (of the table dtype).
    pub keys: &'a B,
    /// The stage-1 proxy.
    pub proxy: &'a B,
    /// The cores.
    pub cores: &'a B,
}

/// Gradients of [`backward`], new f32 buffers in the common layout.
pub struct TopkGradBuffers<B> {
    /// `dq[T, H, 2, R, dim]`.
    pub dq: B,
    /// `dkeys[H, 2, R, n, dim]`.
    pub dkeys: B,
    /// `dcores[H, Cn, R, R]` (Tucker only).
    pub dcores: Option<B>,
}

fn launch<G: Gpu>(
    gpu: &G,
    s: &TopkShape,
    dtype: DType,
    entry: &'static str,
    mut params: TopkParams,
    groups: usize,
    args: &[Option<&G::Buffer>],
) -> Result<()> {
    let (gx, gy) = grid::<G>(s.op(), groups)?;
    params.grid_x = gx;
    params.groups = groups as u32;
    gpu.launch(&Launch {
        kernel: KernelId::ProductKeyTopk,
        entry,
        table_dtype: dtype,
        params: bytemuck::bytes_of(&params),
        args,
        grid: (gx, gy),
        threads: THREADS,
        overrides: &[("POOL", s.pool_words() as u32)],
    })
}

/// Reports the four status words as the op's error: a bad index, then a non-finite query,
/// core, or proxy entry (the reference's order). `idx` (with its u32 count) is the index
/// buffer the backward read.
fn check_status<G: Gpu>(
    gpu: &G,
    s: &TopkShape,
    status: G::Buffer,
    idx: Option<(&G::Buffer, usize)>,
) -> Result<()> {
    let (op, rank, bound) = (s.op(), s.rank, (s.n * s.n) as u64);
    let decode: Decode = Box::new(move |w, index| {
        if let (Some(position), Some(index)) = (recorded(w[0]), index) {
            return Err(Error::IndexOutOfRange {
                op,
                arg: "idx",
                position,
                index,
                bound,
            });
        }
        if let Some(position) = recorded(w[1]) {
            return Err(Error::NonFinite {
                op,
                arg: "q",
                position,
            });
        }
        if let Some(position) = recorded(w[3]) {
            return Err(Error::NonFinite {
                op,
                arg: "cores",
                position,
            });
        }
        if let Some(p) = recorded(w[2]) {
            let (h, side, r) = (p / (2 * rank), (p / rank) % 2, p % rank);
            return Err(Error::NonFinite {
                op,
                arg: if side == 0 { "u" } else { "v" },
                position: h * rank + r,
            });
        }
        Ok(())
    });
    report(
        gpu,
        status,
        4,
        idx.map(|(b, len)| IndexSource::u32(b, len)),
        decode,
    )
}

/// The forward on device buffers: new `(idx[T, H, m]` (u32), `score[T, H, m, Cn]` (f32)`)`.
///
/// # Errors
/// Sizes past the kernels' range or the device's limits, a table dtype they cannot read, a
/// non-finite query, proxy or core entry, and the backend's errors.
pub fn forward<G: Gpu>(
    gpu: &G,
    s: &TopkShape,
    dtype: DType,
    b: &TopkBuffers<'_, G::Buffer>,
) -> Result<(G::Buffer, G::Buffer)> {
    s.check(gpu)?;
    let params = s.params::<G>(dtype)?;
    let th = s.tokens * s.heads;
    let status = gpu.alloc(16, Fill::Zero)?;
    let sel_idx = gpu.alloc(th * 2 * s.k1 * 4, Fill::Output)?;
    let sel_s = gpu.alloc(th * 2 * s.rank * s.k1 * 4, Fill::Output)?;
    let idx = gpu.alloc(th * s.m * 4, Fill::Output)?;
    let score = gpu.alloc(th * s.m * s.cores * 4, Fill::Output)?;
    if th > 0 {
        let args = [
            Some(b.q),
            Some(b.keys),
            Some(b.proxy),
            Some(b.cores),
            Some(&sel_idx),
            Some(&sel_s),
            Some(&idx),
            Some(&score),
            Some(&status),
        ];
        launch(
            gpu,
            s,
            dtype,
            "product_key_topk_stage1",
            params,
            th * 2,
            &args,
        )?;
        launch(gpu, s, dtype, "product_key_topk_grid", params, th, &args)?;
    }
    check_status(gpu, s, status, None)?;
    Ok((idx, score))
}

/// The backward on device buffers from the chosen `idx[T, H, m]` and `dscore[T, H, m, Cn]`.
///
/// # Errors
/// As [`forward`], and [`Error::IndexOutOfRange`] for an index `>= n²`.
pub fn backward<G: Gpu>(
    gpu: &G,
    s: &TopkShape,
    dtype: DType,
    mode: BackwardMode,
    b: &TopkBuffers<'_, G::Buffer>,
    idx: &G::Buffer,
    dscore: &G::Buffer,
) -> Result<TopkGradBuffers<G::Buffer>> {
    s.check(gpu)?;
    let mut params = s.params::<G>(dtype)?;
    let th = s.tokens * s.heads;
    let ncore = s.cores * s.rank * s.rank;
    let entries = th * 2 * s.rank * s.m;
    let status = gpu.alloc(16, Fill::Zero)?;
    // Gather entries: rows and weights at [t, h, side, rank, slot]; then the per-slot dcores.
    let key_row_of_entry = gpu.alloc(entries * 4, Fill::Output)?;
    let weights_and_cores = gpu.alloc((entries + th * s.m * ncore) * 4, Fill::Output)?;
    params.offset = entries as u32;
    let dcores = if s.additive {
        None
    } else {
        Some(gpu.alloc(s.heads * ncore * 4, Fill::Output)?)
    };
    if th > 0 {
        let args = [
            Some(b.q),
            Some(b.keys),
            Some(dscore),
            Some(b.cores),
            Some(idx),
            None,
            Some(&key_row_of_entry),
            Some(&weights_and_cores),
            Some(&status),
        ];
        launch(
            gpu,
            s,
            dtype,
            "product_key_topk_backward_prep",
            params,
            th,
            &args,
        )?;
    }
    if let Some(dcores) = &dcores {
        let args = [
            None,
            None,
            None,
            None,
            None,
            Some(dcores),
            None,
            Some(&weights_and_cores),
            None,
        ];
        launch(
            gpu,
            s,
            dtype,
            "product_key_topk_backward_cores",
            params,
            s.heads,
            &args,
        )?;
    }
    let mut weights = gpu.alloc(entries * 4, Fill::Output)?;
    if entries > 0 {
        gpu.copy(&weights_and_cores, 0, &mut weights, 0, entries * 4)?;
    }
    // dq[(t, h, side, r)] = Σ_slot w·keys[row]; dkeys[row] = Σ w·q[(t, h, side, r)].
    let key_rows = s.heads * 2 * s.rank * s.n;
    let b32 = G::BACKEND;
    let gather = Gather::<G> {
        tokens: fits_u32(s.op(), b32, "T·H·2·R", th * 2 * s.rank)?,
        slots: s.m as u32,
        cores: 1,
        table_rows: fits_u32(s.op(), b32, "H·2·R·n", key_rows)?,
        width: s.dim as u32,
        table_dtype: dtype,
        rows: &key_row_of_entry,
        weights: &weights,
        table: b.keys,
        status: &status,
    };
    let dq = gather.forward(gpu)?;
    let dkeys = if mode == BackwardMode::Atomic && gpu.has_float_atomics() {
        let dkeys = gpu.alloc(key_rows * s.dim * 4, Fill::Zero)?;
        gather.backward_slots(gpu, b.q, Some(&dkeys))?;
        dkeys
    } else {
        let order = if entries > 0 {
            Some(row_sort::sort_rows(
                gpu,
                s.op(),
                &key_row_of_entry,
                key_rows as u32,
                entries as u32,
            )?)
        } else {
            None
        };
        gather.backward_rows(gpu, b.q, order.as_ref())?
    };
    // Checked last: the gathers above share the status buffer, but their rows come from the
    // prep kernel, which writes only in-range rows (a bad idx is recorded and skipped there).
    check_status(gpu, s, status, Some((idx, th * s.m)))?;
    Ok(TopkGradBuffers { dq, dkeys, dcores })
}

/// `[H, 2, R]`: u then v for each head, assembled on the device.
fn proxy_of<G: Gpu>(
    gpu: &G,
    heads: usize,
    rank: usize,
    u: &G::Buffer,
    v: &G::Buffer,
) -> Result<G::Buffer> {
    let mut proxy = gpu.alloc(heads * 2 * rank * 4, Fill::Zero)?;
    let row = rank * 4;
    for h in 0..heads {
        gpu.copy(u, h * row, &mut proxy, (2 * h) * row, row)?;
        gpu.copy(v, h * row, &mut proxy, (2 * h + 1) * row, row)?;
    }
    Ok(proxy)
}

fn ones<G: Gpu>(gpu: &G, len: usize) -> Result<G::Buffer> {
    gpu.upload(bytemuck::cast_slice(&vec![1.0f32; len.max(1)]))
}

/// The additive op on device buffers `q`, `keys` (of `dtype`): `(idx, score)`. The proxy and
/// core of the common layout are ones.
pub(crate) fn additive_forward_buffers<G: Gpu>(
    gpu: &G,
    d: &AdditiveTopkDims,
    dtype: DType,
    q: &G::Buffer,
    keys: &G::Buffer,
) -> Result<(G::Buffer, G::Buffer)> {
    let (proxy, cores) = (ones(gpu, d.heads * 2)?, ones(gpu, 1)?);
    let b = TopkBuffers {
        q,
        keys,
        proxy: &proxy,
        cores: &cores,
    };
    forward(gpu, &TopkShape::additive(d), dtype, &b)
}

/// The additive backward on device buffers: `(dq, dkeys)`.
#[allow(clippy::too_many_arguments, reason = "one buffer per tensor of the op")]
pub(crate) fn additive_backward_buffers<G: Gpu>(
    gpu: &G,
    d: &AdditiveTopkDims,
    dtype: DType,
    mode: BackwardMode,
    q: &G::Buffer,
    keys: &G::Buffer,
    idx: &G::Buffer,
    dscore: &G::Buffer,
) -> Result<(G::Buffer, G::Buffer)> {
    let (proxy, cores) = (ones(gpu, d.heads * 2)?, ones(gpu, 1)?);
    let b = TopkBuffers {
        q,
        keys,
        proxy: &proxy,
        cores: &cores,
    };
    let g = backward(gpu, &TopkShape::additive(d), dtype, mode, &b, idx, dscore)?;
    Ok((g.dq, g.dkeys))
}

/// The device buffers of one Tucker call, in the op's own layout.
pub(crate) struct TuckerBuffers<'a, B> {
    pub q: &'a B,
    pub keys: &'a B,
    pub cores: &'a B,
    pub u: &'a B,
    pub v: &'a B,
}

/// The Tucker op on device buffers (keys of `dtype`): `(idx, score)`.
pub(crate) fn tucker_forward_buffers<G: Gpu>(
    gpu: &G,
    d: &TuckerTopkDims,
    dtype: DType,
    t: &TuckerBuffers<'_, G::Buffer>,
) -> Result<(G::Buffer, G::Buffer)> {
    let proxy = proxy_of(gpu, d.heads, d.rank, t.u, t.v)?;
    let b = TopkBuffers {
        q: t.q,
        keys: t.keys,
        proxy: &proxy,
        cores: t.cores,
    };
    forward(gpu, &TopkShape::tucker(d), dtype, &b)
}

/// The Tucker backward on device buffers: `(dq, dkeys, dcores)`.
pub(crate) fn tucker_backward_buffers<G: Gpu>(
    gpu: &G,
    d: &TuckerTopkDims,
    dtype: DType,
    mode: BackwardMode,
    t: &TuckerBuffers<'_, G::Buffer>,
    idx: &G::Buffer,
    dscore: &G::Buffer,
) -> Result<(G::Buffer, G::Buffer, G::Buffer)> {
    let proxy = proxy_of(gpu, d.heads, d.rank, t.u, t.v)?;
    let b = TopkBuffers {
        q: t.q,
        keys: t.keys,
        proxy: &proxy,
        cores: t.cores,
    };
    let g = backward(gpu, &TopkShape::tucker(d), dtype, mode, &b, idx, dscore)?;
    let dcores = g.dcores.ok_or_else(|| Error::Backend {
        backend: G::BACKEND,
        source: "the Tucker backward returned no dcores".into(),
    })?;
    Ok((g.dq, g.dkeys, dcores))
}
