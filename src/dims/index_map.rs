//! Index map: virtual slot `ν` to physical value row `ρ` (Part II §2.4, §8 A9).
//!
//! `ρ = (shuffle[ν] mod N_l + offset) mod N_tot`, with `shuffle` the identity when absent. It
//! covers a layer's own block of a shared table (`offset = layer·N_l`), cyclic cross-layer
//! windows, and a plain table (`N_l = N_tot`, `offset = 0`). Integer only: no backward.
//!
//! On a GPU this is a kernel of its own, not fused into top-k or the gather: it moves `T·H·m`
//! words, small next to the keys and value rows those ops read (see the README's backend table).

use super::{expect_shape, nonzero, rows_fit_u32, MAX_ROWS};
use crate::cost::{expected_distinct, Cost, U32_BYTES};
use crate::error::{Error, Result};

const OP: &str = "index_map";

/// Where a layer's virtual slots land in the value table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexMapConfig {
    /// `N_l`: the size of this layer's window into the table.
    pub rows_per_layer: u64,
    /// Where the window starts (`< N_tot`).
    pub offset: u64,
    /// `N_tot`: rows of the whole table (`<= 2^32`).
    pub total_rows: u64,
}

impl IndexMapConfig {
    /// A plain table of `rows` rows: `ρ = shuffle[ν] mod rows`.
    pub fn plain(rows: u64) -> IndexMapConfig {
        IndexMapConfig {
            rows_per_layer: rows,
            offset: 0,
            total_rows: rows,
        }
    }

    /// Checks `1 <= N_l <= N_tot <= 2^32` and `offset < N_tot`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] or [`Error::SizeOverflow`].
    pub fn check(&self, op: &'static str) -> Result<()> {
        let bad = |arg, reason: String| Err(Error::InvalidArgument { op, arg, reason });
        if self.total_rows == 0 || self.rows_per_layer == 0 {
            return bad(
                "map",
                "rows_per_layer and total_rows must be at least 1".into(),
            );
        }
        if self.total_rows > MAX_ROWS {
            return Err(Error::SizeOverflow {
                op,
                what: format!(
                    "total_rows = {} does not fit u32 row indices",
                    self.total_rows
                ),
            });
        }
        if self.rows_per_layer > self.total_rows {
            return bad(
                "map.rows_per_layer",
                format!(
                    "{} exceeds total_rows = {}",
                    self.rows_per_layer, self.total_rows
                ),
            );
        }
        if self.offset >= self.total_rows {
            return bad(
                "map.offset",
                format!(
                    "{} must be below total_rows = {}",
                    self.offset, self.total_rows
                ),
            );
        }
        Ok(())
    }

    /// `ρ` for one already-shuffled index `π`. 64-bit arithmetic: no overflow for any inputs
    /// that pass [`IndexMapConfig::check`].
    pub fn map(&self, pi: u32) -> u32 {
        ((u64::from(pi) % self.rows_per_layer + self.offset) % self.total_rows) as u32
    }
}

/// The checked sizes of one index-map call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexMapDims {
    /// Number of indices mapped.
    pub len: usize,
    /// Length of the shuffle table (`None`: identity).
    pub shuffle_len: Option<usize>,
    /// The map.
    pub map: IndexMapConfig,
}

impl IndexMapDims {
    /// Checks the map and the shuffle length.
    ///
    /// # Errors
    /// Those of [`IndexMapConfig::check`], [`Error::ZeroSized`] for an empty shuffle table,
    /// [`Error::SizeOverflow`] for one longer than `2^32`.
    pub fn check(&self) -> Result<()> {
        self.map.check(OP)?;
        if let Some(len) = self.shuffle_len {
            nonzero(OP, "shuffle", "len", len)?;
            rows_fit_u32(OP, "shuffle", len)?;
        }
        Ok(())
    }

    /// Indices read and written once, each shuffle entry touched read once (uniform indices).
    pub fn cost(&self) -> Cost {
        let shuffle = self
            .shuffle_len
            .map_or(0.0, |s| expected_distinct(s as f64, 1.0, self.len as f64));
        Cost {
            bytes_read: (self.len as f64 + shuffle) * U32_BYTES as f64,
            bytes_written: (self.len * U32_BYTES) as f64,
            flops: 0.0,
        }
    }

    /// The sizes of mapping `len` indices through a shuffle table of shape `shuffle` (`None`:
    /// no table), checked; what [`crate::IndexMapArgs::validate`] and the C ABI use.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a shuffle table of rank other than 1, and those of
    /// [`IndexMapDims::check`].
    pub fn from_shapes(
        len: usize,
        shuffle: Option<&[usize]>,
        map: IndexMapConfig,
    ) -> Result<IndexMapDims> {
        let shuffle_len = match shuffle {
            None => None,
            Some(s) => {
                expect_shape(OP, "shuffle", s, &[("V", None)])?;
                Some(s[0])
            }
        };
        let dims = IndexMapDims {
            len,
            shuffle_len,
            map,
        };
        dims.check()?;
        Ok(dims)
    }
}
