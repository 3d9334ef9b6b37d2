//! Index map: virtual slot `ν` to physical value row `ρ` (Part II §2.4, §8 A9).
//!
//! `ρ = (shuffle[ν] mod N_l + offset) mod N_tot`, with `shuffle` the identity when absent. It
//! covers a layer's own block of a shared table (`offset = layer·N_l`), cyclic cross-layer
//! windows, and a plain table (`N_l = N_tot`, `offset = 0`). Integer only: no backward.
//!
//! On a GPU this is a kernel of its own, not fused into top-k or the gather: it moves `T·H·m`
//! words, small next to the keys and value rows those ops read (see the README's backend table).

use crate::cost::expected_distinct;
use crate::cost::{Cost, U32_BYTES};
use crate::device::DeviceInner;
use crate::error::{Error, Result};
use crate::ops::{expect_shape, host, rows_fit_u32, DeviceCheck, MAX_ROWS};
use crate::reference;
use crate::tensor::Tensor;

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
            crate::ops::nonzero(OP, "shuffle", "len", len)?;
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
}

/// Arguments of [`index_map`].
#[derive(Clone, Copy, Debug)]
pub struct IndexMapArgs<'a> {
    /// Virtual indices `ν`, any shape (typically a top-k op's `idx`).
    pub idx: &'a Tensor<u32>,
    /// Optional permutation table, rank 1; every `ν` must be below its length.
    pub shuffle: Option<&'a Tensor<u32>>,
    /// The window into the table.
    pub map: IndexMapConfig,
}

impl IndexMapArgs<'_> {
    /// Checks shapes, the map and devices.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a shuffle table of rank other than 1, those of
    /// [`IndexMapDims::check`], [`Error::DeviceMismatch`].
    pub fn validate(&self) -> Result<IndexMapDims> {
        let mut dev = DeviceCheck::new(OP);
        dev.add("idx", self.idx)?;
        let shuffle_len = match self.shuffle {
            None => None,
            Some(s) => {
                expect_shape(OP, "shuffle", s.shape(), &[("V", None)])?;
                dev.add("shuffle", s)?;
                Some(s.len())
            }
        };
        let dims = IndexMapDims {
            len: self.idx.len(),
            shuffle_len,
            map: self.map,
        };
        dims.check()?;
        Ok(dims)
    }
}

/// Maps virtual indices to value rows; the output has the shape of `idx`.
///
/// ```
/// use ultramem::{index_map, Device, IndexMapArgs, IndexMapConfig, Tensor};
/// let cpu = Device::cpu();
/// let idx = Tensor::from_vec(&cpu, &[3], vec![0u32, 5, 9])?;
/// // Layer window of 4 rows starting at row 6 of a 8-row table: (ν mod 4 + 6) mod 8.
/// let map = IndexMapConfig { rows_per_layer: 4, offset: 6, total_rows: 8 };
/// let rows = index_map(&IndexMapArgs { idx: &idx, shuffle: None, map })?;
/// assert_eq!(rows.to_vec()?, vec![6, 7, 7]);
/// # Ok::<(), ultramem::Error>(())
/// ```
///
/// # Errors
/// Those of [`IndexMapArgs::validate`], and [`Error::IndexOutOfRange`] for a `ν` past the
/// shuffle table.
pub fn index_map(args: &IndexMapArgs<'_>) -> Result<Tensor<u32>> {
    let dims = args.validate()?;
    let device = args.idx.device();
    match &device.inner {
        DeviceInner::Cpu => {
            let shuffle = match args.shuffle {
                Some(s) => Some(host(OP, "shuffle", s)?),
                None => None,
            };
            let rows = reference::index_map::forward(&dims, host(OP, "idx", args.idx)?, shuffle)?;
            Tensor::from_vec(&device, args.idx.shape(), rows)
        }
        #[cfg(feature = "cuda")]
        DeviceInner::Cuda(d) => crate::gpu::index_map::forward_tensors(d, args, &dims),
        #[cfg(feature = "wgpu")]
        DeviceInner::Wgpu(d) => crate::gpu::index_map::forward_tensors(d, args, &dims),
    }
}
