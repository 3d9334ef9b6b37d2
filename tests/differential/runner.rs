//! Where a differential test runs its kernels: one of the crate's devices (through the public
//! tensor API) or the PTX interpreter (through the same launch sequences on raw buffers).

use ultramem::Device;

/// A device under test.
#[derive(Clone, Copy)]
pub enum Runner<'a> {
    /// A `Device` of the crate (wgpu or CUDA).
    Device(&'a Device),
    /// The PTX kernels in `ptx-interp`.
    Interp,
}

impl Runner<'_> {
    pub fn name(&self) -> String {
        match self {
            Runner::Device(d) => d.to_string(),
            Runner::Interp => "ptx-interp".into(),
        }
    }
}
