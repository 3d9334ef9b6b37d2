//! Index map: virtual slot `ν` to physical value row `ρ` (Part II §2.4, §8 A9).
//!
//! `ρ = (shuffle[ν] mod N_l + offset) mod N_tot`, with `shuffle` the identity when absent. It
//! covers a layer's own block of a shared table (`offset = layer·N_l`), cyclic cross-layer
//! windows, and a plain table (`N_l = N_tot`, `offset = 0`). Integer only: no backward.
//!
//! On a GPU this is a kernel of its own, not fused into top-k or the gather: it moves `T·H·m`
//! words, small next to the keys and value rows those ops read (see the README's backend table).

use crate::device::on_device;
use crate::dims::index_map::{IndexMapConfig, IndexMapDims};
use crate::error::Result;
#[cfg(gpu_backend)]
use crate::gpu::index_map as gpu;
use crate::ops::{host, DeviceCheck};
use crate::reference::index_map as reference;
use crate::tensor::Tensor;
#[cfg(gpu_backend)]
use crate::tensor::TensorGpu;

const OP: &str = "index_map";

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
    /// Those of [`IndexMapDims::from_shapes`], [`crate::Error::DeviceMismatch`].
    pub fn validate(&self) -> Result<IndexMapDims> {
        let dims =
            IndexMapDims::from_shapes(self.idx.len(), self.shuffle.map(|s| s.shape()), self.map)?;
        let mut dev = DeviceCheck::new(OP);
        dev.add("idx", self.idx)?;
        if let Some(s) = self.shuffle {
            dev.add("shuffle", s)?;
        }
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
/// Those of [`IndexMapArgs::validate`], and [`crate::Error::IndexOutOfRange`] for a `ν` past
/// the shuffle table.
pub fn index_map(args: &IndexMapArgs<'_>) -> Result<Tensor<u32>> {
    let dims = args.validate()?;
    let device = args.idx.device();
    on_device!(device,
    cpu => {
        let shuffle = match args.shuffle {
            Some(s) => Some(host(OP, "shuffle", s)?),
            None => None,
        };
        let rows = reference::forward(&dims, host(OP, "idx", args.idx)?, shuffle)?;
        Tensor::from_vec(&device, args.idx.shape(), rows)
    },
    gpu(g) => {
        let shuffle = match args.shuffle {
            Some(s) => Some(g.buffer(OP, "shuffle", s)?),
            None => None,
        };
        let idx = g.buffer(OP, "idx", args.idx)?;
        let out = gpu::forward(g.as_ref(), &dims, idx, shuffle, gpu::SignedIndices::default())?;
        g.wrap(args.idx.shape(), out)
    })
}
