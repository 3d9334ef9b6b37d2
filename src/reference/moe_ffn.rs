//! Reference MoE expert FFN (SwiGLU) and softmax top-k routing.

use super::topk::top_k_of;
use super::{check_finite, check_indices, check_len, dot};
use crate::dims::moe_ffn::{GateNorm, MoeFfnDims};
use crate::dtype::Float;
use crate::error::Result;

const OP: &str = "moe_ffn";

/// Softmax top-k routing from `logits[T, E]`: returns `(experts[T,k], gates[T,k])`, the best
/// `k` by logit (ties to the lower expert) with their softmax probabilities over all `E`,
/// divided by their sum when `norm` is [`GateNorm::Renormalized`].
///
/// # Errors
/// Bad dims, a wrong slice length, a non-finite logit.
pub fn route<L: Float>(
    d: &MoeFfnDims,
    logits: &[L],
    norm: GateNorm,
) -> Result<(Vec<u32>, Vec<f64>)> {
    d.check()?;
    check_len(OP, "logits", logits, d.tokens * d.experts)?;
    check_finite(OP, "logits", logits)?;
    let mut experts = crate::alloc::with_capacity(OP, d.tokens * d.k)?;
    let mut gates = crate::alloc::with_capacity(OP, d.tokens * d.k)?;
    for row in logits.chunks_exact(d.experts) {
        let l: Vec<f64> = crate::alloc::collect(OP, row.iter().map(|x| x.to_f64()))?;
        let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = l.iter().map(|&x| (x - max).exp()).sum();
        let chosen = top_k_of(&l, d.k);
        let p: Vec<f64> = chosen.iter().map(|&e| (l[e] - max).exp() / sum).collect();
        let divisor = match norm {
            GateNorm::Renormalized => p.iter().sum(),
            GateNorm::Softmax => 1.0,
        };
        experts.extend(chosen.iter().map(|&e| e as u32));
        gates.extend(p.iter().map(|&g| g / divisor));
    }
    Ok((experts, gates))
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// `out[t] = Σ_j gates[t,j]·W2[e](silu(W1[e] x) ⊙ W3[e] x)` with `e = experts[t,j]`.
///
/// # Errors
/// Bad dims, wrong slice lengths, an expert `>= E`.
pub fn forward<X: Float, G: Float, W: Float>(
    d: &MoeFfnDims,
    x: &[X],
    experts: &[u32],
    gates: &[G],
    w1: &[W],
    w3: &[W],
    w2: &[W],
) -> Result<Vec<f64>> {
    d.check()?;
    let (dm, f) = (d.d_model, d.ffn);
    check_len(OP, "x", x, d.tokens * dm)?;
    check_len(OP, "experts", experts, d.tokens * d.k)?;
    check_len(OP, "gates", gates, experts.len())?;
    for (arg, w) in [("w1", w1), ("w3", w3), ("w2", w2)] {
        check_len(OP, arg, w, d.experts * f * dm)?;
    }
    check_indices(OP, "experts", experts, d.experts as u64)?;
    let mut out = crate::alloc::zeros(OP, d.tokens * dm)?;
    for (slot, (&e, g)) in experts.iter().zip(gates).enumerate() {
        let t = slot / d.k;
        let (e, g) = (e as usize, g.to_f64());
        let xt = &x[t * dm..(t + 1) * dm];
        let hidden: Vec<f64> = (0..f)
            .map(|i| {
                let row = (e * f + i) * dm;
                silu(dot(&w1[row..row + dm], xt)) * dot(&w3[row..row + dm], xt)
            })
            .collect();
        for o in 0..dm {
            let row = (e * dm + o) * f;
            out[t * dm + o] += g * w2[row..row + f]
                .iter()
                .zip(&hidden)
                .map(|(w, h)| w.to_f64() * h)
                .sum::<f64>();
        }
    }
    Ok(out)
}
