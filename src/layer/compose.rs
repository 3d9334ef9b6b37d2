//! The layer forward composed from the public ops on any device.
//!
//! This is how a caller wires the sparse ops together, and the quickstart's check: the dense
//! parts (query projection, RMSNorms, `W_pre`, `W_out`) run on the host in f64; the selection
//! ([`tucker_topk`], [`index_map`]) runs on `select`, the values ([`peer_ffn`]) on `values`, both
//! with f32 I/O; usually both are the same device. It uploads the parameters on every call, so
//! it is a correctness path, not a fast one.

use super::{UltraMemV2Config, UltraMemV2Params};
use crate::device::Device;
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::index_map::{index_map, IndexMapArgs};
use crate::ops::peer_ffn::{peer_ffn, PeerFfnArgs};
use crate::ops::tucker_topk::{tucker_topk, TuckerTopkArgs};
use crate::reference::ultramem_v2_layer::scoring_inputs;
use crate::reference::{check_len, dense, widen};
use crate::tensor::Tensor;

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// `o[T, D]` for `x[T, D]`, the selection on `select` and the values on `values`.
///
/// # Errors
/// Bad config or parameters, a wrong `x` length, and the errors of the ops (an op with no
/// kernel on a device is [`crate::Error::Unsupported`]).
pub fn forward_with_ops<V: Float>(
    select: &Device,
    values: &Device,
    cfg: &UltraMemV2Config,
    p: &UltraMemV2Params<f32, V>,
    x: &[f32],
) -> Result<ComposedForward> {
    p.check(cfg)?;
    let (d, h, r) = (cfg.d_model, cfg.heads, cfg.rank);
    let tokens = x.len() / d;
    check_len("forward_with_ops", "x", x, tokens * d)?;
    let xs = widen(x);
    let (_, q, khat) = scoring_inputs(cfg, &p.w_q, &p.gamma_q, &p.keys, &p.gamma_k, &xs);
    let device = select;
    let up = |shape: &[usize], v: Vec<f32>| Tensor::from_vec(device, shape, v);
    let q_t = up(&[tokens, h, 2, r, cfg.dk], f32s(&q))?;
    let keys_t = up(&[h, 2, r, cfg.n, cfg.dk], f32s(&khat))?;
    let cores_t = up(&[h, cfg.cores, r, r], p.cores.clone())?;
    let u_t = up(&[h, r], p.u.clone())?;
    let v_t = up(&[h, r], p.v.clone())?;
    let chosen = tucker_topk(&TuckerTopkArgs {
        q: &q_t,
        keys: &keys_t,
        cores: &cores_t,
        u: &u_t,
        v: &v_t,
        k1: Some(cfg.k1),
        m: cfg.m,
    })?;
    let shuffle = match &p.shuffle {
        Some(s) => Some(Tensor::from_slice(device, &[s.len()], s)?),
        None => None,
    };
    let rows = index_map(&IndexMapArgs {
        idx: &chosen.idx,
        shuffle: shuffle.as_ref(),
        map: cfg.map,
    })?;
    let slots = h * cfg.m;
    let device = values;
    let rows = rows.reshape(&[tokens, slots])?.to_device(device)?;
    let scores = chosen
        .score
        .reshape(&[tokens, slots, cfg.cores])?
        .to_device(device)?;
    let z = Tensor::from_vec(
        device,
        &[tokens, cfg.dp],
        f32s(&dense::matvec_rows(&widen(&p.w_pre), cfg.dp, d, &xs)),
    )?;
    let n_rows = cfg.rows();
    let down = Tensor::from_slice(device, &[n_rows, cfg.dp], &p.down)?;
    let up_t = Tensor::from_slice(device, &[n_rows, cfg.dv], &p.up)?;
    let y = peer_ffn(&PeerFfnArgs {
        rows: &rows,
        scores: &scores,
        z: &z,
        down: &down,
        up: &up_t,
        activation: cfg.activation,
    })?;
    let out = dense::matvec_rows(&widen(&p.w_out), d, cfg.dv, &widen(&y.to_vec()?));
    Ok(ComposedForward {
        out: f32s(&out),
        values_device: y.device(),
    })
}

/// The output of [`forward_with_ops`].
#[derive(Debug)]
pub struct ComposedForward {
    /// `o[T, D]`.
    pub out: Vec<f32>,
    /// The device the PEER values actually ran on.
    pub values_device: Device,
}
