//! RMSNorm over the last axis (the layer's query and key norms, Part II §2.1), forward and
//! backward: `y = γ ⊙ x / sqrt(mean(x²) + ε)` per row of `dim` elements.
//!
//! `repeat > 1` writes every normalised row `repeat` times in a row, which is how tied queries
//! (one query per side) feed all `R` Tucker ranks without a copy kernel; the backward sums the
//! copies' gradients.

use super::{mul, nonzero};
use crate::cost::{Cost, F32_BYTES};
use crate::error::{Error, Result};

const OP: &str = "rmsnorm";

/// The checked sizes of one RMSNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RmsNormDims {
    /// Rows normalised independently (may be 0).
    pub chunks: usize,
    /// Elements per row.
    pub dim: usize,
    /// Copies of each output row.
    pub repeat: usize,
}

impl RmsNormDims {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::ZeroSized`] for `dim` or `repeat`, [`Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "gamma", "dim", self.dim)?;
        nonzero(OP, "repeat", "repeat", self.repeat)?;
        mul(
            OP,
            "chunks*repeat*dim",
            mul(OP, "chunks*dim", self.chunks, self.dim)?,
            self.repeat,
        )?;
        Ok(())
    }

    /// Forward: `x` and `γ` read, `repeat` copies written; about 5 FLOPs per element.
    pub fn cost(&self) -> Cost {
        let x = (self.chunks * self.dim) as f64;
        Cost {
            bytes_read: (x + self.dim as f64) * F32_BYTES as f64,
            bytes_written: x * self.repeat as f64 * F32_BYTES as f64,
            flops: 5.0 * x,
        }
    }

    /// The sizes named by the shapes of `x[..., dim]` and `gamma[dim]` with `ε = eps` and
    /// `repeat` copies per output row, checked; what [`crate::RmsNormArgs::validate`] uses.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `gamma` is `[dim]` with `dim` the last axis of `x`,
    /// [`Error::InvalidArgument`] for an `ε` that is not finite and positive, and those of
    /// [`RmsNormDims::check`].
    pub fn from_shapes(
        x: &[usize],
        gamma: &[usize],
        eps: f32,
        repeat: usize,
    ) -> Result<RmsNormDims> {
        let dim = *x.last().ok_or_else(|| Error::ShapeMismatch {
            op: OP,
            arg: "x",
            expected: "[..., dim]".into(),
            got: x.to_vec(),
        })?;
        if gamma != [dim] {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "gamma",
                expected: format!("[dim] = [{dim}] (the last axis of x)"),
                got: gamma.to_vec(),
            });
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                arg: "eps",
                reason: format!("{eps} must be finite and positive"),
            });
        }
        let dims = RmsNormDims {
            chunks: x[..x.len() - 1].iter().product(),
            dim,
            repeat,
        };
        dims.check()?;
        Ok(dims)
    }

    /// The output's shape: `x`'s with the last axis `repeat·dim`.
    pub fn out_shape(&self, x: &[usize]) -> Vec<usize> {
        let mut s = x.to_vec();
        if let Some(last) = s.last_mut() {
            *last = self.repeat * self.dim;
        }
        s
    }
}
