//! PEER per-slot FFN values (UltraMemV2 values; classic PEER), Part II §2.6.
//!
//! Per token `t` and slot `k` with row `ρ = rows[t,k]`: `α = <down[ρ], z[t]>`,
//! `w_c = s[t,k,c]·φ(α)`, and `out[t, slice c] += w_c·up[ρ, slice c]`. Classic PEER is
//! `Dp = Dv = D`, `Cn = 1`, `φ = Gelu`; UltraMemV2 uses `φ = Identity` and `Cn = 2`.

use super::{check_core_split, expect_shape, mul, nonzero, rows_fit_u32};
use crate::cost::{expected_distinct, Cost, F32_BYTES, U32_BYTES};
use crate::error::Result;

const OP: &str = "peer_ffn";

/// The activation `φ` on the per-slot pre-value `α`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `φ(α) = α` (UltraMemV2, eq. 15).
    #[default]
    Identity,
    /// `max(α, 0)`.
    Relu,
    /// `α·Φ(α)` with the exact (erf) normal CDF (classic PEER).
    Gelu,
    /// `α·σ(α)`.
    Silu,
}

/// The checked sizes of one PEER call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFfnDims {
    /// Tokens `T` (may be 0).
    pub tokens: usize,
    /// Slots per token `M`.
    pub slots: usize,
    /// Cores `Cn`.
    pub cores: usize,
    /// Table rows `N` (`<= 2^32`).
    pub table_rows: usize,
    /// Down (pre-value) width `Dp`.
    pub dp: usize,
    /// Up (value) width `Dv`, a multiple of `Cn`.
    pub dv: usize,
}

impl PeerFfnDims {
    /// Checks the sizes against Part I §I.4.
    ///
    /// # Errors
    /// [`crate::Error::ZeroSized`], [`crate::Error::InvalidArgument`] (`Dv % Cn != 0`),
    /// [`crate::Error::SizeOverflow`].
    pub fn check(&self) -> Result<()> {
        nonzero(OP, "rows", "M", self.slots)?;
        nonzero(OP, "scores", "Cn", self.cores)?;
        nonzero(OP, "down", "N", self.table_rows)?;
        rows_fit_u32(OP, "down", self.table_rows)?;
        nonzero(OP, "down", "Dp", self.dp)?;
        nonzero(OP, "up", "Dv", self.dv)?;
        check_core_split(OP, "up", self.dv, self.cores)?;
        let tm = mul(OP, "T*M", self.tokens, self.slots)?;
        mul(OP, "T*M*Cn", tm, self.cores)?;
        mul(OP, "T*Dp", self.tokens, self.dp)?;
        mul(OP, "T*Dv", self.tokens, self.dv)?;
        mul(OP, "N*Dp", self.table_rows, self.dp)?;
        mul(OP, "N*Dv", self.table_rows, self.dv)?;
        Ok(())
    }

    /// Expected distinct rows touched when every slot picks a uniform random row.
    pub fn expected_distinct_rows(&self) -> f64 {
        expected_distinct(
            self.table_rows as f64,
            self.slots as f64,
            self.tokens as f64,
        )
    }

    /// Forward bytes and FLOPs at least: indices, scores and `z` read once, each distinct row
    /// of both tables read once, the output written once; `2·Dp + 2·Dv` FLOPs per slot.
    pub fn cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: tm * (U32_BYTES + self.cores * F32_BYTES) as f64
                + (self.tokens * self.dp * F32_BYTES) as f64
                + distinct_rows * ((self.dp + self.dv) * table_bytes) as f64,
            bytes_written: (self.tokens * self.dv * F32_BYTES) as f64,
            flops: tm * 2.0 * (self.dp + self.dv) as f64,
        }
    }

    /// Backward bytes and FLOPs at least: forward inputs and `dout` read, `dz`, `ds` and each
    /// touched gradient row written once (f32); `4·(Dp + Dv)` FLOPs per slot.
    pub fn backward_cost(&self, table_bytes: usize, distinct_rows: f64) -> Cost {
        let fwd = self.cost(table_bytes, distinct_rows);
        let tm = (self.tokens * self.slots) as f64;
        Cost {
            bytes_read: fwd.bytes_read + (self.tokens * self.dv * F32_BYTES) as f64,
            bytes_written: (self.tokens * self.dp * F32_BYTES) as f64
                + tm * (self.cores * F32_BYTES) as f64
                + distinct_rows * ((self.dp + self.dv) * F32_BYTES) as f64,
            flops: tm * 4.0 * (self.dp + self.dv) as f64,
        }
    }

    /// The sizes named by the shapes of `rows[T, M]`, `scores[T, M, Cn]`, `z[T, Dp]`,
    /// `down[N, Dp]` and `up[N, Dv]`, checked; what [`crate::PeerFfnArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] and those of [`PeerFfnDims::check`].
    pub fn from_shapes(
        rs: &[usize],
        ss: &[usize],
        zs: &[usize],
        ds: &[usize],
        us: &[usize],
    ) -> Result<PeerFfnDims> {
        expect_shape(OP, "rows", rs, &[("T", None), ("M", None)])?;
        let (t, m) = (Some(rs[0]), Some(rs[1]));
        expect_shape(OP, "scores", ss, &[("T", t), ("M", m), ("Cn", None)])?;
        expect_shape(OP, "down", ds, &[("N", None), ("Dp", None)])?;
        expect_shape(OP, "z", zs, &[("T", t), ("Dp", Some(ds[1]))])?;
        expect_shape(OP, "up", us, &[("N", Some(ds[0])), ("Dv", None)])?;
        let dims = PeerFfnDims {
            tokens: rs[0],
            slots: rs[1],
            cores: ss[2],
            table_rows: ds[0],
            dp: ds[1],
            dv: us[1],
        };
        dims.check()?;
        Ok(dims)
    }
}
