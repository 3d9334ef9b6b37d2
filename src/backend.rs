//! [`Backend`]: the kinds of device, named in errors and by [`crate::Device::backend`].

use std::fmt;

/// The kind of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// The CPU reference (f64 accumulation).
    Cpu,
    /// NVIDIA GPUs through hand-written PTX and `cudarc`.
    Cuda,
    /// Any WebGPU adapter (Vulkan, Metal, DX12, GL) through WGSL and `wgpu`.
    Wgpu,
    /// The PTX kernels run by the repo's PTX interpreter with its sanitizer checks (cargo
    /// feature `ptx-interp`, for tests): the CUDA backend's launch sequences without a GPU.
    PtxInterp,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Wgpu => "wgpu",
            Backend::PtxInterp => "ptx-interp",
        })
    }
}
