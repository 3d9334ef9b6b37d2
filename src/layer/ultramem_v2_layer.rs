//! The UltraMemV2 layer on any device, forward and backward, composed from the public ops.
//!
//! Every step is one op on the layer's device: [`matmul`] for `W_q`, `W_pre`, `W_out` and their
//! gradients, [`rmsnorm`] for the query and key norms, [`tucker_topk`], [`index_map`],
//! [`peer_ffn`]. On the CPU each op is the f64 reference with f32 inputs and outputs, so the
//! CPU layer is the GPU layer's meaning at f32 boundaries; the all-f64 reference layer is
//! [`crate::reference::ultramem_v2_layer`]. Parameters stay on the device between calls.
//!
//! ```
//! use ultramem::layer::init::{init_params, InitScheme};
//! use ultramem::layer::{UltraMemV2Config, UltraMemV2Layer};
//! use ultramem::{BackwardMode, Device, Tensor};
//!
//! let dev = Device::cpu();
//! let cfg = UltraMemV2Config::new(32, 16, 8, 4, 8, 16); // D, Dk, n, m, Dp, Dv
//! let (params, _) = init_params(&cfg, InitScheme::ReleasedCode, 7)?;
//! let layer = UltraMemV2Layer::new(&dev, &cfg, &params)?;
//! let x = Tensor::from_vec(&dev, &[3, 32], vec![0.5f32; 96])?;
//! let fwd = layer.forward(&x)?;
//! assert_eq!(fwd.out.shape(), &[3, 32]);
//! let dout = Tensor::from_vec(&dev, &[3, 32], vec![1.0f32; 96])?;
//! let grads = layer.backward(&x, &fwd.cache, &dout, BackwardMode::Deterministic)?;
//! assert_eq!(grads.up.shape(), &[64, 16]); // N = n² rows, f32 whatever the table dtype
//! # Ok::<(), ultramem::Error>(())
//! ```

use crate::device::Device;
use crate::dims::ultramem_v2_layer::{UltraMemV2Config, UltraMemV2Params};
use crate::dims::{expect_shape, BackwardMode};
use crate::dtype::Float;
use crate::error::Result;
use crate::ops::index_map::{index_map, IndexMapArgs};
use crate::ops::matmul::{matmul, MatmulArgs};
use crate::ops::peer_ffn::{peer_ffn, peer_ffn_backward, PeerFfnArgs};
use crate::ops::rmsnorm::{rmsnorm, rmsnorm_backward, RmsNormArgs};
use crate::ops::tucker_topk::{tucker_topk, tucker_topk_backward, TuckerTopkArgs};
use crate::tensor::Tensor;

const OP: &str = "UltraMemV2Layer";

/// An UltraMemV2 layer whose parameters live on one device. Dense parameters are f32; the
/// value tables are `V` (f32, f16 or bf16).
#[derive(Debug)]
pub struct UltraMemV2Layer<V: Float = f32> {
    cfg: UltraMemV2Config,
    device: Device,
    /// `W_q[H·Q·Dk, D]`.
    w_q: Tensor<f32>,
    gamma_q: Tensor<f32>,
    /// Keys `[H, 2, R, n, Dk]` before their norm.
    keys: Tensor<f32>,
    gamma_k: Tensor<f32>,
    cores: Tensor<f32>,
    u: Tensor<f32>,
    v: Tensor<f32>,
    w_pre: Tensor<f32>,
    down: Tensor<V>,
    up: Tensor<V>,
    w_out: Tensor<f32>,
    shuffle: Option<Tensor<u32>>,
}

/// What [`UltraMemV2Layer::forward`] keeps for the backward (all on the layer's device).
#[derive(Debug)]
pub struct LayerCache {
    /// Query projections before the norm, `[T·H·Q, Dk]`.
    pub q_raw: Tensor<f32>,
    /// Normalised queries as the Tucker op reads them, `[T, H, 2, R, Dk]`.
    pub q: Tensor<f32>,
    /// Normalised keys `[H, 2, R, n, Dk]`.
    pub khat: Tensor<f32>,
    /// Chosen virtual slots `[T, H, m]`.
    pub idx: Tensor<u32>,
    /// Their value rows `[T, H·m]`.
    pub rows: Tensor<u32>,
    /// Per-core scores `[T, H·m, Cn]`.
    pub scores: Tensor<f32>,
    /// `z = W_pre x`, `[T, Dp]`.
    pub z: Tensor<f32>,
    /// Gathered values before `W_out`, `[T, Dv]`.
    pub y: Tensor<f32>,
}

/// The output of [`UltraMemV2Layer::forward`].
#[derive(Debug)]
pub struct LayerForward {
    /// `o = W_out Y`, `[T, D]` (the residual branch; the caller adds it to `x`).
    pub out: Tensor<f32>,
    /// What the backward needs.
    pub cache: LayerCache,
}

/// Gradients of the input and every parameter, f32, on the layer's device (shapes of
/// [`UltraMemV2Params`]; the table gradients are dense `[N, Dp]` and `[N, Dv]`).
#[derive(Debug)]
pub struct LayerGrads {
    /// `[T, D]`.
    pub dx: Tensor<f32>,
    /// `W_q`.
    pub w_q: Tensor<f32>,
    /// `γ_q`.
    pub gamma_q: Tensor<f32>,
    /// Keys (before the norm).
    pub keys: Tensor<f32>,
    /// `γ_k`.
    pub gamma_k: Tensor<f32>,
    /// Cores.
    pub cores: Tensor<f32>,
    /// `W_pre`.
    pub w_pre: Tensor<f32>,
    /// Down table.
    pub down: Tensor<f32>,
    /// Up table.
    pub up: Tensor<f32>,
    /// `W_out`.
    pub w_out: Tensor<f32>,
}

impl<V: Float> UltraMemV2Layer<V> {
    /// Uploads `params` (checked against `cfg`) to `device`.
    ///
    /// # Errors
    /// Those of [`UltraMemV2Params::check`] and the device's upload errors.
    pub fn new(
        device: &Device,
        cfg: &UltraMemV2Config,
        params: &UltraMemV2Params<f32, V>,
    ) -> Result<Self> {
        params.check(cfg)?;
        let (h, r, dk, d) = (cfg.heads, cfg.rank, cfg.dk, cfg.d_model);
        let up = |shape: &[usize], v: &[f32]| Tensor::from_slice(device, shape, v);
        Ok(UltraMemV2Layer {
            cfg: *cfg,
            device: device.clone(),
            w_q: up(&[cfg.query_rows(), d], &params.w_q)?,
            gamma_q: up(&[dk], &params.gamma_q)?,
            keys: up(&[h, 2, r, cfg.n, dk], &params.keys)?,
            gamma_k: up(&[dk], &params.gamma_k)?,
            cores: up(&[h, cfg.cores, r, r], &params.cores)?,
            u: up(&[h, r], &params.u)?,
            v: up(&[h, r], &params.v)?,
            w_pre: up(&[cfg.dp, d], &params.w_pre)?,
            down: Tensor::from_slice(device, &[cfg.table_rows(), cfg.dp], &params.down)?,
            up: Tensor::from_slice(device, &[cfg.table_rows(), cfg.dv], &params.up)?,
            w_out: up(&[d, cfg.dv], &params.w_out)?,
            shuffle: match &params.shuffle {
                Some(s) => Some(Tensor::from_slice(device, &[s.len()], s)?),
                None => None,
            },
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &UltraMemV2Config {
        &self.cfg
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Copies the parameters back to the host.
    ///
    /// # Errors
    /// The device's download errors.
    pub fn params(&self) -> Result<UltraMemV2Params<f32, V>> {
        Ok(UltraMemV2Params {
            w_q: self.w_q.to_vec()?,
            gamma_q: self.gamma_q.to_vec()?,
            keys: self.keys.to_vec()?,
            gamma_k: self.gamma_k.to_vec()?,
            cores: self.cores.to_vec()?,
            u: self.u.to_vec()?,
            v: self.v.to_vec()?,
            w_pre: self.w_pre.to_vec()?,
            down: self.down.to_vec()?,
            up: self.up.to_vec()?,
            w_out: self.w_out.to_vec()?,
            shuffle: match &self.shuffle {
                Some(s) => Some(s.to_vec()?),
                None => None,
            },
        })
    }

    /// Recomputes `(u, v)` from the cores (reads the cores back: a host synchronisation, once
    /// per optimiser step), keeping the sign closest to the current pair.
    ///
    /// # Errors
    /// Those of [`super::tucker_proxy::tucker_proxy`], and the device's transfer errors.
    pub fn refresh_proxy(&mut self) -> Result<()> {
        let cfg = &self.cfg;
        let prev_u: Vec<f64> = self.u.to_vec()?.iter().map(|&x| f64::from(x)).collect();
        let prev_v: Vec<f64> = self.v.to_vec()?.iter().map(|&x| f64::from(x)).collect();
        let (u, v) = super::tucker_proxy::tucker_proxy(
            &self.cores.to_vec()?,
            cfg.heads,
            cfg.cores,
            cfg.rank,
            Some((&prev_u, &prev_v)),
        )?;
        let f32s = |w: Vec<f64>| w.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        self.u = Tensor::from_vec(&self.device, &[cfg.heads, cfg.rank], f32s(u))?;
        self.v = Tensor::from_vec(&self.device, &[cfg.heads, cfg.rank], f32s(v))?;
        Ok(())
    }

    fn eps(&self) -> f32 {
        self.cfg.eps as f32
    }

    /// Copies of each normalised query row: `R` for tied queries, else 1.
    fn repeat(&self) -> usize {
        match self.cfg.query_mode {
            super::QueryMode::PerRank => 1,
            super::QueryMode::Tied => self.cfg.rank,
        }
    }

    fn check_input(
        &self,
        arg: &'static str,
        t: &Tensor<f32>,
        tokens: Option<usize>,
    ) -> Result<usize> {
        super::check_activation(OP, arg, t, self.cfg.d_model, tokens, &self.w_q)
    }

    fn tucker_args<'a>(
        &'a self,
        q: &'a Tensor<f32>,
        khat: &'a Tensor<f32>,
    ) -> TuckerTopkArgs<'a, f32> {
        TuckerTopkArgs {
            q,
            keys: khat,
            cores: &self.cores,
            u: &self.u,
            v: &self.v,
            k1: Some(self.cfg.k1),
            m: self.cfg.m,
        }
    }

    fn peer_args<'a>(
        &'a self,
        rows: &'a Tensor<u32>,
        scores: &'a Tensor<f32>,
        z: &'a Tensor<f32>,
    ) -> PeerFfnArgs<'a, V> {
        PeerFfnArgs {
            rows,
            scores,
            z,
            down: &self.down,
            up: &self.up,
            activation: self.cfg.activation,
        }
    }

    /// `o[T, D]` for `x[T, D]` (on the layer's device), with the cache for the backward.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`], [`crate::Error::DeviceMismatch`], and the errors of the ops (a
    /// non-finite `x` reaches the queries and is [`crate::Error::NonFinite`]; sizes a GPU kernel does
    /// not support are [`crate::Error::Unsupported`]).
    pub fn forward(&self, x: &Tensor<f32>) -> Result<LayerForward> {
        let tokens = self.check_input("x", x, None)?;
        let cfg = &self.cfg;
        let (h, r, dk) = (cfg.heads, cfg.rank, cfg.dk);
        let q_raw = matmul(&MatmulArgs::linear(x, &self.w_q))?
            .reshape(&[tokens * h * cfg.queries_per_head(), dk])?;
        let q = rmsnorm(&RmsNormArgs {
            x: &q_raw,
            gamma: &self.gamma_q,
            eps: self.eps(),
            repeat: self.repeat(),
        })?
        .reshape(&[tokens, h, 2, r, dk])?;
        let khat = rmsnorm(&RmsNormArgs {
            x: &self.keys,
            gamma: &self.gamma_k,
            eps: self.eps(),
            repeat: 1,
        })?;
        let chosen = tucker_topk(&self.tucker_args(&q, &khat))?;
        let rows = index_map(&IndexMapArgs {
            idx: &chosen.idx,
            shuffle: self.shuffle.as_ref(),
            map: cfg.map,
        })?
        .reshape(&[tokens, h * cfg.m])?;
        let scores = chosen.score.reshape(&[tokens, h * cfg.m, cfg.cores])?;
        let z = matmul(&MatmulArgs::linear(x, &self.w_pre))?;
        let y = peer_ffn(&self.peer_args(&rows, &scores, &z))?;
        let out = matmul(&MatmulArgs::linear(&y, &self.w_out))?;
        Ok(LayerForward {
            out,
            cache: LayerCache {
                q_raw,
                q,
                khat,
                idx: chosen.idx,
                rows,
                scores,
                z,
                y,
            },
        })
    }

    /// Gradients of `x` and every parameter given `dout[T, D]` and the forward's cache.
    /// `mode` picks how the table gradients accumulate (Part I §I.3); the dense gradients are
    /// deterministic in both modes.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] for `x`, `dout` or a cache from another batch,
    /// [`crate::Error::DeviceMismatch`], and the errors of the ops.
    pub fn backward(
        &self,
        x: &Tensor<f32>,
        cache: &LayerCache,
        dout: &Tensor<f32>,
        mode: BackwardMode,
    ) -> Result<LayerGrads> {
        let tokens = self.check_input("x", x, None)?;
        self.check_input("dout", dout, Some(tokens))?;
        let cfg = &self.cfg;
        expect_shape(
            OP,
            "cache.y",
            cache.y.shape(),
            &[("T", Some(tokens)), ("Dv", Some(cfg.dv))],
        )?;
        let w_out = matmul(&MatmulArgs::linear_weight_grad(dout, &cache.y))?;
        let dy = matmul(&MatmulArgs::linear_input_grad(dout, &self.w_out, None))?;
        let peer = peer_ffn_backward(
            &self.peer_args(&cache.rows, &cache.scores, &cache.z),
            &dy,
            mode,
        )?;
        let w_pre = matmul(&MatmulArgs::linear_weight_grad(&peer.dz, x))?;
        let dx_values = matmul(&MatmulArgs::linear_input_grad(&peer.dz, &self.w_pre, None))?;
        let dscore = peer
            .dscores
            .reshape(&[tokens, cfg.heads, cfg.m, cfg.cores])?;
        let tucker = tucker_topk_backward(
            &self.tucker_args(&cache.q, &cache.khat),
            &cache.idx,
            &dscore,
            mode,
        )?;
        let dq = tucker
            .dq
            .reshape(&[cache.q_raw.shape()[0], self.repeat() * cfg.dk])?;
        let q_norm = rmsnorm_backward(
            &RmsNormArgs {
                x: &cache.q_raw,
                gamma: &self.gamma_q,
                eps: self.eps(),
                repeat: self.repeat(),
            },
            &dq,
        )?;
        let dq_raw = q_norm.dx.reshape(&[tokens, cfg.query_rows()])?;
        let w_q = matmul(&MatmulArgs::linear_weight_grad(&dq_raw, x))?;
        let dx = matmul(&MatmulArgs::linear_input_grad(
            &dq_raw,
            &self.w_q,
            Some(&dx_values),
        ))?;
        let key_norm = rmsnorm_backward(
            &RmsNormArgs {
                x: &self.keys,
                gamma: &self.gamma_k,
                eps: self.eps(),
                repeat: 1,
            },
            &tucker.dkeys,
        )?;
        Ok(LayerGrads {
            dx,
            w_q,
            gamma_q: q_norm.dgamma,
            keys: key_norm.dx,
            gamma_k: key_norm.dgamma,
            cores: tucker.dcores,
            w_pre,
            down: peer.ddown,
            up: peer.dup,
            w_out,
        })
    }
}

impl LayerGrads {
    /// Copies every gradient to the host, in the field order of [`UltraMemV2Params`].
    ///
    /// # Errors
    /// The device's download errors.
    pub fn to_host(&self) -> Result<HostGrads> {
        Ok(HostGrads {
            dx: self.dx.to_vec()?,
            w_q: self.w_q.to_vec()?,
            gamma_q: self.gamma_q.to_vec()?,
            keys: self.keys.to_vec()?,
            gamma_k: self.gamma_k.to_vec()?,
            cores: self.cores.to_vec()?,
            w_pre: self.w_pre.to_vec()?,
            down: self.down.to_vec()?,
            up: self.up.to_vec()?,
            w_out: self.w_out.to_vec()?,
        })
    }
}

/// [`LayerGrads`] on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostGrads {
    /// `[T, D]`.
    pub dx: Vec<f32>,
    /// `W_q`.
    pub w_q: Vec<f32>,
    /// `γ_q`.
    pub gamma_q: Vec<f32>,
    /// Keys.
    pub keys: Vec<f32>,
    /// `γ_k`.
    pub gamma_k: Vec<f32>,
    /// Cores.
    pub cores: Vec<f32>,
    /// `W_pre`.
    pub w_pre: Vec<f32>,
    /// Down table.
    pub down: Vec<f32>,
    /// Up table.
    pub up: Vec<f32>,
    /// `W_out`.
    pub w_out: Vec<f32>,
}

impl HostGrads {
    /// `(name, gradient)` pairs of the parameters (not `dx`), for checks and optimisers.
    pub fn params(&self) -> [(&'static str, &[f32]); 9] {
        [
            ("w_q", &self.w_q),
            ("gamma_q", &self.gamma_q),
            ("keys", &self.keys),
            ("gamma_k", &self.gamma_k),
            ("cores", &self.cores),
            ("w_pre", &self.w_pre),
            ("down", &self.down),
            ("up", &self.up),
            ("w_out", &self.w_out),
        ]
    }
}
