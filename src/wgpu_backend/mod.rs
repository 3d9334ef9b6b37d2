//! The WebGPU backend: WGSL from `shaders/`, run through `wgpu` on any adapter (Vulkan, Metal,
//! DX12, GL; Mesa's lavapipe where there is no GPU).
//!
//! Buffers are untyped storage buffers whose size is rounded up to whole 32-bit words (16-bit
//! tables are read as packed `u32` pairs). Pipelines are built once per (kernel, entry, table
//! dtype) and cached. Every call runs inside validation and out-of-memory error scopes, so a
//! wgpu error is a typed [`Error::Backend`], never wgpu's default panic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{mpsc, Mutex};

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{poisoning, Fill, Gpu, Launch, SyncState, POISON_BITS};
use crate::registry::KernelId;

/// The shaders index their bindings with `u32` element offsets (`r * width + col`, a word
/// index times 2 for 16-bit tables, …). A binding below 2^32 bytes holds fewer than 2^31
/// elements of 2 bytes, so every offset into it, and twice it, fits `u32`: this is the bound
/// the host proves for the WGSL, whatever the adapter allows (Metal lets a binding pass
/// 4 GiB, where wrapped offsets would read the wrong rows).
pub(crate) const WGSL_MAX_BINDING_BYTES: u64 = (1 << 32) - 4;
const _: () = assert!(
    WGSL_MAX_BINDING_BYTES / 2 < 1 << 31,
    "16-bit elements index below 2^31"
);

/// The most bytes one storage binding may hold here: the adapter's limits, capped by the
/// shaders' 32-bit offsets.
pub(crate) fn binding_limit(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
        .min(WGSL_MAX_BINDING_BYTES)
}

/// A pipeline: kernel, entry, table dtype code and the other overrides' values.
type PipelineKey = (KernelId, &'static str, u32, Vec<(&'static str, u32)>);

/// A wgpu device and queue with its compiled pipelines.
pub(crate) struct WgpuDevice {
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Held by every call on the OpenGL backend (see `open`); `None` elsewhere.
    serial: Option<Mutex<()>>,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<KernelId, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    sync: SyncState<wgpu::Buffer>,
}

impl std::fmt::Debug for WgpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuDevice({})", self.describe())
    }
}

fn backend_error(e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: Backend::Wgpu,
        source: e.to_string().into(),
    }
}

fn unavailable(reason: String) -> Error {
    Error::BackendUnavailable {
        backend: Backend::Wgpu,
        reason,
    }
}

impl WgpuDevice {
    /// The default adapter (high-performance preference) with its own limits requested and no
    /// optional feature. Vulkan, Metal or DX12 first; OpenGL only when none of those has an
    /// adapter, or when `WGPU_BACKEND` asks for it (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
    /// friends are honoured).
    pub(crate) fn open() -> Result<WgpuDevice> {
        let from_env = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let tries = if wgpu::Backends::from_env().is_some() {
            vec![from_env.backends]
        } else {
            vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY]
        };
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        let mut last_error = String::from("no backend tried");
        let mut found = None;
        for backends in tries {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
            });
            match pollster::block_on(instance.request_adapter(&options)) {
                Ok(adapter) => {
                    found = Some(adapter);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let adapter = found.ok_or_else(|| unavailable(format!("no adapter: {last_error}")))?;
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("ultramem"),
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| unavailable(format!("the adapter refused a device: {e}")))?;
        let info = adapter.get_info();
        // wgpu-hal's OpenGL device has one context, locked for every call with a 6 s timeout
        // that panics ("Could not lock adapter context"): concurrent tests queued on it did.
        // On GL this device's calls take turns on a lock of its own, which has no timeout.
        let serial = (info.backend == wgpu::Backend::Gl).then(|| Mutex::new(()));
        Ok(WgpuDevice {
            device,
            queue,
            serial,
            info,
            limits,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            sync: SyncState::default(),
        })
    }

    /// On OpenGL, this device's turn (held until the guard drops); nothing elsewhere.
    fn serial(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        // The guarded data is `()`: a panic while holding it leaves nothing inconsistent.
        self.serial
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` inside validation and out-of-memory error scopes.
    fn scoped<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        match validation.or(oom) {
            Some(e) => Err(backend_error(e)),
            None => Ok(out),
        }
    }

    /// Refuses a buffer larger than one binding may be (see [`binding_limit`]) before wgpu sees
    /// it, as `Unsupported` (wgpu's own validation error would come back as `Error::Backend`).
    fn check_size(&self, bytes: usize) -> Result<()> {
        let limit = binding_limit(&self.limits);
        if bytes as u64 > limit {
            return Err(Error::Unsupported {
                op: "wgpu buffer",
                backend: Backend::Wgpu,
                reason: format!(
                    "{bytes} bytes exceed the {limit} bytes one binding may hold on this adapter"
                ),
            });
        }
        Ok(())
    }

    fn storage_buffer(&self, bytes: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            // Bindings must be non-empty and whole words.
            size: (bytes.max(4).div_ceil(4) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Uploads bytes into a new storage buffer.
    pub(crate) fn upload_bytes(&self, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.check_size(bytes.len())?;
        self.scoped(|| {
            let buffer = self.storage_buffer(bytes.len());
            let whole = bytes.len() / 4 * 4;
            if whole > 0 {
                self.queue.write_buffer(&buffer, 0, &bytes[..whole]);
            }
            if whole < bytes.len() {
                let mut tail = [0u8; 4];
                tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
                self.queue.write_buffer(&buffer, whole as u64, &tail);
            }
            buffer
        })
    }

    fn pipeline(
        &self,
        kernel: KernelId,
        entry: &'static str,
        dtype_code: u32,
        overrides: &[(&'static str, u32)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = (kernel, entry, dtype_code, overrides.to_vec());
        if let Some(p) = self.pipelines.lock().map_err(backend_error)?.get(&key) {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = self.modules.lock().map_err(backend_error)?;
            match modules.get(&kernel) {
                Some(m) => m.clone(),
                None => {
                    let m = self.scoped(|| {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(kernel.stem()),
                                source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(kernel.wgsl())),
                            })
                    })?;
                    modules.insert(kernel, m.clone());
                    m
                }
            }
        };
        let mut constants: Vec<(&str, f64)> = kernel
            .wgsl_overrides()
            .iter()
            .filter(|&&name| name == "TABLE_DTYPE")
            .map(|&name| (name, f64::from(dtype_code)))
            .collect();
        constants.extend(overrides.iter().map(|&(name, v)| (name, f64::from(v))));
        let pipeline = self.scoped(|| {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: true,
                    },
                    cache: None,
                })
        })?;
        self.pipelines
            .lock()
            .map_err(backend_error)?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn submit(&self, encoder: wgpu::CommandEncoder) {
        self.queue.submit([encoder.finish()]);
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }
}

fn dtype_code(dtype: DType) -> u32 {
    match dtype {
        DType::F16 => 1,
        DType::BF16 => 2,
        _ => 0,
    }
}

impl Gpu for WgpuDevice {
    type Buffer = wgpu::Buffer;
    const BACKEND: Backend = Backend::Wgpu;

    fn upload(&self, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let _turn = self.serial();
        self.upload_bytes(bytes)
    }

    fn alloc(&self, bytes: usize, fill: Fill) -> Result<wgpu::Buffer> {
        let _turn = self.serial();
        self.check_size(bytes)?;
        self.scoped(|| {
            // wgpu zero-initialises every new buffer.
            let buffer = self.storage_buffer(bytes);
            let pattern = match fill {
                Fill::Zero => None,
                Fill::Word(w) => Some(w),
                Fill::Output => poisoning().then_some(POISON_BITS),
            };
            if let Some(w) = pattern {
                let words = bytes.max(4).div_ceil(4);
                let data: Vec<u32> = vec![w; words];
                self.queue
                    .write_buffer(&buffer, 0, bytemuck::cast_slice(&data));
            }
            buffer
        })
    }

    fn download(&self, buffer: &wgpu::Buffer, bytes: usize) -> Result<Vec<u8>> {
        let _turn = self.serial();
        if bytes == 0 {
            return Ok(Vec::new());
        }
        self.sync.count_sync();
        let padded = (bytes.div_ceil(4) * 4) as u64;
        let staging = self.scoped(|| {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("download"),
                size: padded,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self.encoder();
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded);
            self.submit(encoder);
            staging
        })?;
        let slice = staging.slice(..);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            // The receiver waits below; a send can only fail if it is gone.
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(backend_error)?;
        rx.recv().map_err(backend_error)?.map_err(backend_error)?;
        let data = slice.get_mapped_range().map_err(backend_error)?[..bytes].to_vec();
        staging.unmap();
        Ok(data)
    }

    fn copy(
        &self,
        src: &wgpu::Buffer,
        src_offset: usize,
        dst: &mut wgpu::Buffer,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()> {
        let _turn = self.serial();
        self.scoped(|| {
            let mut encoder = self.encoder();
            encoder.copy_buffer_to_buffer(
                src,
                src_offset as u64,
                dst,
                dst_offset as u64,
                bytes as u64,
            );
            self.submit(encoder);
        })
    }

    fn launch(&self, l: &Launch<'_, wgpu::Buffer>) -> Result<()> {
        let _turn = self.serial();
        let size = l.kernel.wgsl_workgroup_size(l.entry);
        if size != l.threads {
            return Err(backend_error(format!(
                "{}: launched with {} threads, the shader's workgroup has {size}",
                l.entry, l.threads
            )));
        }
        let pipeline = self.pipeline(l.kernel, l.entry, dtype_code(l.table_dtype), l.overrides)?;
        let mut missing = None;
        let result = self.scoped(|| {
            let params = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: l.params.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.queue.write_buffer(&params, 0, l.params);
            // The derived layout holds exactly the bindings the entry point uses.
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            }];
            for &binding in l.kernel.wgsl_bindings(l.entry).iter().filter(|&&b| b > 0) {
                match l.args.get(binding as usize - 1).copied().flatten() {
                    Some(buffer) => entries.push(wgpu::BindGroupEntry {
                        binding,
                        resource: buffer.as_entire_binding(),
                    }),
                    None => missing = Some(binding),
                }
            }
            if missing.is_some() {
                return;
            }
            let layout = pipeline.get_bind_group_layout(0);
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(l.entry),
                layout: &layout,
                entries: &entries,
            });
            let mut encoder = self.encoder();
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(l.entry),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(l.grid.0, l.grid.1, 1);
            }
            self.submit(encoder);
        });
        if let Some(binding) = missing {
            return Err(backend_error(format!(
                "{}: no buffer for @binding({binding})",
                l.entry
            )));
        }
        result
    }

    fn synchronize(&self) -> Result<()> {
        let _turn = self.serial();
        self.sync.count_sync();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(backend_error)
    }

    fn max_binding_bytes(&self) -> u64 {
        binding_limit(&self.limits)
    }

    fn max_workgroup_bytes(&self) -> u64 {
        u64::from(self.limits.max_compute_workgroup_storage_size)
    }

    fn has_float_atomics(&self) -> bool {
        false
    }

    fn sync_state(&self) -> &SyncState<wgpu::Buffer> {
        &self.sync
    }

    /// `adapter name (backend, device type)`.
    fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adapter that allows 16 GiB bindings (Metal does) still gets at most 4 GiB − 4 per
    /// binding, where every u32 offset of the shaders is exact; a small adapter keeps its own.
    #[test]
    fn bindings_stay_below_the_shaders_32_bit_offsets_whatever_the_adapter_allows() {
        let large = wgpu::Limits {
            max_storage_buffer_binding_size: 16 << 30,
            max_buffer_size: 16 << 30,
            ..wgpu::Limits::default()
        };
        assert_eq!(binding_limit(&large), WGSL_MAX_BINDING_BYTES);

        let small = wgpu::Limits {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            ..wgpu::Limits::default()
        };
        assert_eq!(binding_limit(&small), 128 << 20);
    }
}
