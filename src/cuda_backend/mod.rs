//! The CUDA backend: hand-written PTX from `kernels/`, loaded through `cudarc`.
//!
//! libcuda is loaded at run time, so the crate builds without a CUDA toolkit; [`CudaDevice::open`]
//! asks `is_culib_present()` before any driver call (cudarc panics on the first call when the
//! library is missing) and returns a typed error instead. Modules are loaded once per kernel
//! file and cached; buffers are untyped `CudaSlice<u8>`s on the context's default stream.
//!
//! The crate's `unsafe` lives in this module (cudarc's kernel launch, the `DeviceRepr` impl
//! below, and borrowing a C ABI caller's device memory in `with_foreign`) and in the C ABI
//! (`abi/dlpack.rs` reads a caller's host descriptors and memory; `abi/mod.rs` calls those
//! readers and `with_foreign` under each exported function's contract).
#![allow(
    unsafe_code,
    reason = "the launch module: cudarc's kernel launch and its argument types are unsafe"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gpu::{poisoning, Fill, Gpu, Launch, SyncState, POISON_BITS};
use crate::registry::KernelId;

/// A CUDA context, its default stream and the loaded kernels.
pub(crate) struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    ordinal: usize,
    modules: Mutex<HashMap<KernelId, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    sync: SyncState<CudaSlice<u8>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}: {})", self.ordinal, self.name)
    }
}

fn driver_error(e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: Backend::Cuda,
        source: e.to_string().into(),
    }
}

/// A kernel's by-value parameter struct as raw bytes, aligned like the PTX `.param .align 4`.
#[repr(C, align(4))]
#[derive(Clone, Copy)]
struct ParamBlock<const N: usize>([u8; N]);

// SAFETY: a plain byte array with no pointers or padding; the kernel reads exactly N bytes
// (`.param .align 4 .b8 params[N]`, N checked against the registry before the launch).
unsafe impl<const N: usize> DeviceRepr for ParamBlock<N> {}

impl<const N: usize> ParamBlock<N> {
    /// The block of `bytes`, whose length the caller checked is `N`.
    fn of(bytes: &[u8]) -> Self {
        let mut b = [0u8; N];
        b.copy_from_slice(bytes);
        ParamBlock(b)
    }
}

impl CudaDevice {
    /// The device with this ordinal, or a typed error when there is no driver or no such device.
    pub(crate) fn open(ordinal: usize) -> Result<CudaDevice> {
        // SAFETY: only asks whether the dynamic loader finds libcuda; it calls no driver function.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::BackendUnavailable {
                backend: Backend::Cuda,
                reason: "no CUDA driver (libcuda) on this machine".into(),
            });
        }
        let count = CudaContext::device_count().map_err(driver_error)?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::BackendUnavailable {
                backend: Backend::Cuda,
                reason: format!("device {ordinal} asked for, {count} present"),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_error)?;
        let stream = ctx.default_stream();
        let name = ctx.name().map_err(driver_error)?;
        Ok(CudaDevice {
            ctx,
            stream,
            name,
            ordinal,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            sync: SyncState::default(),
        })
    }

    /// Uploads bytes into a new buffer (rounded up to whole words).
    pub(crate) fn upload_bytes(&self, bytes: &[u8]) -> Result<CudaSlice<u8>> {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(4).div_ceil(4) * 4, 0);
        self.stream.clone_htod(&padded).map_err(driver_error)
    }

    fn function(&self, kernel: KernelId, entry: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().map_err(driver_error)?.get(entry) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = self.modules.lock().map_err(driver_error)?;
            match modules.get(&kernel) {
                Some(m) => Arc::clone(m),
                None => {
                    let m = self
                        .ctx
                        .load_module(Ptx::from_src(kernel.ptx()))
                        .map_err(driver_error)?;
                    modules.insert(kernel, Arc::clone(&m));
                    m
                }
            }
        };
        let f = module.load_function(entry).map_err(driver_error)?;
        self.functions
            .lock()
            .map_err(driver_error)?
            .insert(entry, f.clone());
        Ok(f)
    }
}

impl Gpu for CudaDevice {
    type Buffer = CudaSlice<u8>;
    const BACKEND: Backend = Backend::Cuda;

    fn upload(&self, bytes: &[u8]) -> Result<CudaSlice<u8>> {
        self.upload_bytes(bytes)
    }

    fn alloc(&self, bytes: usize, fill: Fill) -> Result<CudaSlice<u8>> {
        let words = bytes.max(4).div_ceil(4);
        let pattern = match fill {
            Fill::Zero => None,
            Fill::Word(w) => Some(w),
            Fill::Output => poisoning().then_some(POISON_BITS),
        };
        match pattern {
            // Zeroed rather than uninitialised: no unsafe allocation, and a cheap memset.
            None => self
                .stream
                .alloc_zeros::<u8>(words * 4)
                .map_err(driver_error),
            Some(w) => self.upload_bytes(bytemuck::cast_slice(&vec![w; words])),
        }
    }

    fn download(&self, buf: &CudaSlice<u8>, bytes: usize) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        self.sync.count_sync();
        let out = self
            .stream
            .clone_dtoh(&buf.slice(0..bytes))
            .map_err(driver_error)?;
        self.stream.synchronize().map_err(driver_error)?;
        Ok(out)
    }

    fn copy(
        &self,
        src: &CudaSlice<u8>,
        src_offset: usize,
        dst: &mut CudaSlice<u8>,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()> {
        let from = src.slice(src_offset..src_offset + bytes);
        let mut to = dst.slice_mut(dst_offset..dst_offset + bytes);
        self.stream
            .memcpy_dtod(&from, &mut to)
            .map_err(driver_error)
    }

    fn launch(&self, l: &Launch<'_, CudaSlice<u8>>) -> Result<()> {
        let &(_, param_bytes, pointers) = l
            .kernel
            .entries()
            .iter()
            .find(|e| e.0 == l.entry)
            .ok_or_else(|| driver_error(format!("no PTX entry {}", l.entry)))?;
        if param_bytes != l.params.len() || l.args.len() > pointers {
            return Err(driver_error(format!(
                "{}: {} parameter bytes and {} buffers for params[{param_bytes}] and {pointers} pointers",
                l.entry,
                l.params.len(),
                l.args.len()
            )));
        }
        let f = self.function(l.kernel, l.entry)?;
        let (p16, p32, p48, p64);
        let null: u64 = 0;
        let mut builder = self.stream.launch_builder(&f);
        // The sizes of crate::gpu::params::PARAM_BLOCK_SIZES (a test holds every kernel to them).
        match param_bytes {
            16 => {
                p16 = ParamBlock::<16>::of(l.params);
                builder.arg(&p16);
            }
            32 => {
                p32 = ParamBlock::<32>::of(l.params);
                builder.arg(&p32);
            }
            48 => {
                p48 = ParamBlock::<48>::of(l.params);
                builder.arg(&p48);
            }
            64 => {
                p64 = ParamBlock::<64>::of(l.params);
                builder.arg(&p64);
            }
            n => return Err(driver_error(format!("{}: unexpected params[{n}]", l.entry))),
        }
        for i in 0..pointers {
            match l.args.get(i).copied().flatten() {
                Some(buf) => builder.arg(buf),
                None => builder.arg(&null),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (l.grid.0, l.grid.1, 1),
            block_dim: (l.threads, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types and order: the parameter block has exactly the byte size the
        // PTX entry declares and every one of its `pointers` pointer parameters gets a device
        // pointer or null (checked above against the registry built from the PTX). Aliasing: the
        // kernels write only their output buffers, which the host allocated for this call and
        // no other launch or host code touches until the stream has run it. Out-of-bounds: every
        // kernel bounds-checks each index it reads against sizes in the parameter block, which
        // the op validated against the buffers' lengths before launching.
        unsafe { builder.launch(cfg) }.map_err(driver_error)?;
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.sync.count_sync();
        self.stream.synchronize().map_err(driver_error)
    }

    fn max_binding_bytes(&self) -> u64 {
        u64::MAX
    }

    fn aligned(&self, buf: &CudaSlice<u8>, bytes: usize) -> bool {
        let (ptr, _record) = buf.device_ptr(&self.stream);
        ptr % bytes as u64 == 0
    }

    fn max_workgroup_bytes(&self) -> u64 {
        // Static shared memory without opting in to more.
        48 * 1024
    }

    fn has_float_atomics(&self) -> bool {
        true
    }

    fn sync_state(&self) -> &SyncState<CudaSlice<u8>> {
        &self.sync
    }

    /// `ordinal: name`.
    fn describe(&self) -> String {
        format!("{}: {}", self.ordinal, self.name)
    }
}

/// Caller-owned device memory borrowed as `CudaSlice`s for one C ABI call. Dropping it leaks
/// every borrowed slice back to a raw pointer (cudarc would otherwise free the caller's
/// memory); as a guard it runs on every path out of the call, errors and panics included.
#[cfg(feature = "abi")]
struct Borrowed {
    slices: Vec<CudaSlice<u8>>,
    foreign: Vec<bool>,
}

#[cfg(feature = "abi")]
impl Drop for Borrowed {
    fn drop(&mut self) {
        for (slice, foreign) in self.slices.drain(..).zip(&self.foreign) {
            if *foreign {
                let _ = slice.leak();
            }
        }
    }
}

/// One cached device per ordinal for the C ABI (module loads are per device).
#[cfg(feature = "abi")]
pub(crate) fn abi_device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    static DEVICES: Mutex<Vec<(usize, Arc<CudaDevice>)>> = Mutex::new(Vec::new());
    let mut devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = devices.iter().find(|(o, _)| *o == ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(CudaDevice::open(ordinal)?);
    devices.push((ordinal, d.clone()));
    Ok(d)
}

impl CudaDevice {
    /// Runs `body` over caller-owned device memory `regions` (address, bytes), ordered after
    /// the work the caller queued on `stream` and before what it queues next: an event recorded
    /// on the caller's stream is waited on by ours before `body`, and one recorded on ours
    /// after `body` is waited on by the caller's. A null `stream` is the legacy default
    /// stream, which is ours too, so no events are needed. Empty regions get a small buffer of
    /// our own (never read: the kernels skip empty ranges).
    ///
    /// # Safety
    /// Each region is a live allocation of this device's primary context (the one CUDA's
    /// runtime, and so PyTorch, uses), at least `bytes` long, that nothing else writes during
    /// the call; `stream` is null or a stream of that context.
    #[cfg(feature = "abi")]
    pub(crate) unsafe fn with_foreign<R>(
        &self,
        stream: *mut std::ffi::c_void,
        regions: &[(u64, usize)],
        body: impl FnOnce(&CudaDevice, &mut [CudaSlice<u8>]) -> Result<R>,
    ) -> Result<R> {
        use cudarc::driver::{result, sys};
        let foreign = stream as sys::CUstream;
        if !foreign.is_null() {
            let ready = self.ctx.new_event(None).map_err(driver_error)?;
            // SAFETY: `foreign` is a stream of this context (the caller's contract); recording
            // an event we own on it only enqueues a marker.
            unsafe { result::event::record(ready.cu_event(), foreign) }.map_err(driver_error)?;
            self.stream.wait(&ready).map_err(driver_error)?;
        }
        // Declared before `borrowed`, so dropped after it: on every way out (an error, a panic
        // in the body or in cudarc's `upgrade_device_ptr`), the caller's stream is ordered
        // after the copies we queued into its outputs.
        let ordering = OrderCaller {
            device: self,
            caller: foreign,
        };
        let mut borrowed = Borrowed {
            slices: Vec::with_capacity(regions.len()),
            foreign: Vec::with_capacity(regions.len()),
        };
        for &(ptr, bytes) in regions {
            let slice = if bytes == 0 {
                self.alloc(4, crate::gpu::Fill::Zero)?
            } else {
                // SAFETY: a live allocation of at least `bytes` bytes in this context (the
                // caller's contract); `Borrowed` leaks it instead of freeing it.
                unsafe { self.stream.upgrade_device_ptr::<u8>(ptr, bytes) }
            };
            borrowed.foreign.push(bytes > 0);
            borrowed.slices.push(slice);
        }
        let outcome = body(self, &mut borrowed.slices);
        drop(borrowed);
        ordering.finish()?;
        outcome
    }
}

/// Orders the caller's stream after everything queued on ours, when finished or dropped (the
/// second half of [`CudaDevice::with_foreign`], as a guard). A null caller stream is ours.
#[cfg(feature = "abi")]
struct OrderCaller<'a> {
    device: &'a CudaDevice,
    caller: cudarc::driver::sys::CUstream,
}

#[cfg(feature = "abi")]
impl OrderCaller<'_> {
    /// An event recorded on our stream, waited on by the caller's.
    fn order(&self) -> Result<()> {
        use cudarc::driver::{result, sys};
        if self.caller.is_null() {
            return Ok(());
        }
        let done = self.device.ctx.new_event(None).map_err(driver_error)?;
        done.record(&self.device.stream).map_err(driver_error)?;
        // SAFETY: `caller` is a stream of this context (`with_foreign`'s contract) and `done`
        // a live event we own; waiting only enqueues a dependency.
        unsafe {
            result::stream::wait_event(
                self.caller,
                done.cu_event(),
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .map_err(driver_error)
    }

    /// Orders the streams, or, when the events fail, waits for ours to drain (nothing of ours
    /// is then pending when the caller reads); the event's error is returned either way.
    fn finish(self) -> Result<()> {
        let ordered = self.order();
        if ordered.is_err() {
            let _ = self.device.stream.synchronize();
        }
        std::mem::forget(self);
        ordered
    }
}

#[cfg(feature = "abi")]
impl Drop for OrderCaller<'_> {
    fn drop(&mut self) {
        // Reached only on an early return or a panic (`finish` forgets the guard).
        if self.order().is_err() {
            let _ = self.device.stream.synchronize();
        }
    }
}
