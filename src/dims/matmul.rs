//! Dense matrix products, the layer's projections (`W_q`, `W_pre`, `W_out`) and their gradients:
//! `C = op(A) op(B) (+ C0)` in f32 with f32 accumulation on GPUs.
//!
//! The one kernel reads its operands through strides, so the three products of a linear layer
//! — `x Wᵀ`, `dY W`, `dYᵀ X` — are the same call with other [`Transpose`] choices, and no
//! operand is ever copied into another layout. Its backward is two more products, so it has no
//! `_backward` function of its own.

use super::mul;
use crate::cost::{Cost, F32_BYTES};
use crate::error::{Error, Result};

const OP: &str = "matmul";

/// How a matmul operand is read from its row-major storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transpose {
    /// As stored: `A[M, K]`, `B[K, N]`.
    #[default]
    No,
    /// Transposed: `A` stored `[K, M]`, `B` stored `[N, K]` (a weight `W[out, in]` applied as
    /// `x Wᵀ`).
    Yes,
}

impl Transpose {
    /// Whether the operand is read transposed.
    pub fn is_transposed(self) -> bool {
        self == Transpose::Yes
    }
}

/// The checked sizes of one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    /// Rows of the result (may be 0).
    pub m: usize,
    /// Columns of the result (may be 0).
    pub n: usize,
    /// The summed dimension (may be 0: the product is then zero).
    pub k: usize,
    /// How `A` is read.
    pub transpose_a: Transpose,
    /// How `B` is read.
    pub transpose_b: Transpose,
}

fn rank2(arg: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        &[r, c] => Ok((r, c)),
        _ => Err(Error::ShapeMismatch {
            op: OP,
            arg,
            expected: "a matrix [rows, cols]".into(),
            got: shape.to_vec(),
        }),
    }
}

impl MatmulDims {
    /// Checks that every element count fits `usize`.
    ///
    /// # Errors
    /// [`Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        mul(OP, "M*K", self.m, self.k)?;
        mul(OP, "K*N", self.k, self.n)?;
        mul(OP, "M*N", self.m, self.n)?;
        Ok(())
    }

    /// Both operands read once, the result written once; `2·M·N·K` FLOPs.
    pub fn cost(&self) -> Cost {
        let (m, n, k) = (self.m as f64, self.n as f64, self.k as f64);
        Cost {
            bytes_read: (m * k + k * n) * F32_BYTES as f64,
            bytes_written: m * n * F32_BYTES as f64,
            flops: 2.0 * m * n * k,
        }
    }

    /// [`MatmulDims::cost`] plus one read of the addend `[M, N]`.
    pub fn cost_with_addend(&self) -> Cost {
        let c = self.cost();
        Cost {
            bytes_read: c.bytes_read + c.bytes_written,
            ..c
        }
    }

    /// The sizes named by the shapes of `a`, `b` (read as `transpose_a`, `transpose_b` say)
    /// and the optional addend, checked; what [`crate::MatmulArgs::validate`] uses.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless both operands are matrices whose inner sizes agree and
    /// the addend is `[M, N]`, and those of [`MatmulDims::check`].
    pub fn from_shapes(
        a: &[usize],
        b: &[usize],
        transpose_a: Transpose,
        transpose_b: Transpose,
        addend: Option<&[usize]>,
    ) -> Result<MatmulDims> {
        let (ar, ac) = rank2("a", a)?;
        let (br, bc) = rank2("b", b)?;
        let (m, k) = match transpose_a {
            Transpose::Yes => (ac, ar),
            Transpose::No => (ar, ac),
        };
        let (kb, n) = match transpose_b {
            Transpose::Yes => (bc, br),
            Transpose::No => (br, bc),
        };
        if kb != k {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "b",
                expected: format!(
                    "{} = {k} (the inner size of a{})",
                    match transpose_b {
                        Transpose::Yes => "[N, K] with K",
                        Transpose::No => "[K, N] with K",
                    },
                    if transpose_a.is_transposed() {
                        "ᵀ"
                    } else {
                        ""
                    }
                ),
                got: b.to_vec(),
            });
        }
        if let Some(c0) = addend {
            if c0 != [m, n] {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    arg: "addend",
                    expected: format!("[M, N] = [{m}, {n}]"),
                    got: c0.to_vec(),
                });
            }
        }
        let dims = MatmulDims {
            m,
            n,
            k,
            transpose_a,
            transpose_b,
        };
        dims.check()?;
        Ok(dims)
    }
}
