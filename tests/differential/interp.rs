//! The third device of the differential tests: the PTX kernels run by the repo's interpreter
//! (`ptx-interp`), through the same launch sequences the CUDA backend uses
//! (`ultramem::gpu::<op>`), with its sanitizer checks on. Every run counts its instructions so
//! the suite can report the interpreter's speed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use ptx_interp::{Machine, Module};
use ultramem::gpu::{poisoning, Fill, Gpu, Launch, POISON_BITS};
use ultramem::registry::KernelId;
use ultramem::{Backend, Error, Result};

/// PTX instructions and seconds spent in the interpreter by this test binary.
pub static INSTRUCTIONS: AtomicU64 = AtomicU64::new(0);
pub static NANOS: AtomicU64 = AtomicU64::new(0);

/// A device buffer of the interpreter.
pub struct Buf {
    addr: u64,
    bytes: usize,
}

/// One interpreter "device": its memory and the parsed kernel files.
pub struct Interp {
    machine: RefCell<Machine>,
    modules: RefCell<HashMap<KernelId, Module>>,
}

impl Interp {
    pub fn new() -> Interp {
        Interp {
            machine: RefCell::new(Machine::new()),
            modules: RefCell::new(HashMap::new()),
        }
    }

    /// Runs every launch's blocks in an order shuffled by `seed`.
    pub fn with_block_order(seed: u64) -> Interp {
        let ip = Interp::new();
        ip.machine.borrow_mut().block_order_seed = Some(seed);
        ip
    }

    pub fn read_f32(&self, b: &Buf, len: usize) -> Vec<f64> {
        let bytes = self.download(b, len * 4).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    }

    pub fn read_u32(&self, b: &Buf, len: usize) -> Vec<u32> {
        let bytes = self.download(b, len * 4).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn upload_pod<T: bytemuck::Pod>(&self, data: &[T]) -> Buf {
        self.upload(bytemuck::cast_slice(data)).unwrap()
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend {
        backend: Backend::Cuda,
        source: Box::new(e),
    }
}

fn host(msg: String) -> Error {
    Error::Backend {
        backend: Backend::Cuda,
        source: msg.into(),
    }
}

impl Gpu for Interp {
    type Buffer = Buf;
    const BACKEND: Backend = Backend::Cuda;

    fn alloc(&self, bytes: usize, fill: Fill) -> Result<Buf> {
        let padded = bytes.max(4).div_ceil(4) * 4;
        let addr = self.machine.borrow_mut().alloc(padded);
        let word = match fill {
            Fill::Zero => None,
            Fill::Word(w) => Some(w),
            Fill::Output => poisoning().then_some(POISON_BITS),
        };
        if let Some(w) = word {
            let data: Vec<u32> = vec![w; padded / 4];
            self.machine
                .borrow_mut()
                .write(addr, bytemuck::cast_slice(&data))
                .map_err(host)?;
        }
        Ok(Buf {
            addr,
            bytes: padded,
        })
    }

    fn upload(&self, bytes: &[u8]) -> Result<Buf> {
        let b = self.alloc(bytes.len(), Fill::Zero)?;
        self.machine
            .borrow_mut()
            .write(b.addr, bytes)
            .map_err(host)?;
        Ok(b)
    }

    fn download(&self, buf: &Buf, bytes: usize) -> Result<Vec<u8>> {
        assert!(bytes <= buf.bytes, "download past the buffer");
        self.machine
            .borrow_mut()
            .read(buf.addr, bytes)
            .map_err(host)
    }

    fn copy(
        &self,
        src: &Buf,
        src_offset: usize,
        dst: &mut Buf,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()> {
        let mut m = self.machine.borrow_mut();
        let data = m.read(src.addr + src_offset as u64, bytes).map_err(host)?;
        m.write(dst.addr + dst_offset as u64, &data).map_err(host)
    }

    fn launch(&self, l: &Launch<'_, Buf>) -> Result<()> {
        let mut modules = self.modules.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(slot) = modules.entry(l.kernel) {
            let file = format!("kernels/{}.ptx", l.kernel.stem());
            let m =
                Module::parse(&file, l.kernel.ptx()).map_err(|e| host(format!("{file}: {e}")))?;
            slot.insert(m);
        }
        let module = &modules[&l.kernel];
        let &(_, _, pointers) = l
            .kernel
            .entries()
            .iter()
            .find(|e| e.0 == l.entry)
            .expect("registry entry");
        let ptrs: Vec<[u8; 8]> = (0..pointers)
            .map(|i| {
                l.args
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(0, |b| b.addr)
                    .to_le_bytes()
            })
            .collect();
        let mut params: Vec<&[u8]> = vec![l.params];
        params.extend(ptrs.iter().map(|p| &p[..]));
        let start = std::time::Instant::now();
        let count = self
            .machine
            .borrow_mut()
            .launch(
                module,
                l.entry,
                [l.grid.0, l.grid.1, 1],
                [l.threads, 1, 1],
                &params,
            )
            .map_err(backend)?;
        NANOS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        INSTRUCTIONS.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn max_binding_bytes(&self) -> u64 {
        u64::MAX
    }

    fn max_workgroup_bytes(&self) -> u64 {
        48 * 1024
    }

    fn has_float_atomics(&self) -> bool {
        true
    }
}

/// The interpreter's speed on a real kernel: a weighted gather forward and backward (bf16
/// table, 64 tokens × 32 slots, Dv 256), which must run at 10 million PTX instructions per
/// second or more so the interpreter suite stays within minutes in CI.
#[test]
fn ptx_interpreter_runs_at_least_10m_instructions_per_second() {
    use ultramem::gpu::weighted_gather::{backward, forward, GatherBuffers};
    use ultramem::{bf16, BackwardMode, DType, WeightedGatherDims};
    let d = WeightedGatherDims {
        tokens: 64,
        slots: 32,
        cores: 2,
        rows: 4096,
        dv: 256,
    };
    let ip = Interp::new();
    let rows: Vec<u32> = (0..64 * 32u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % 4096)
        .collect();
    let rows_b = ip.upload_pod(&rows);
    let w_b = ip.upload_pod(&vec![0.5f32; 64 * 32 * 2]);
    let table_b = ip.upload_pod(&vec![bf16::from_f32(0.25); 4096 * 256]);
    let dout_b = ip.upload_pod(&vec![1.0f32; 64 * 256]);
    let b = GatherBuffers {
        rows: &rows_b,
        weights: &w_b,
        table: &table_b,
    };
    let (n0, t0) = (
        INSTRUCTIONS.load(Ordering::Relaxed),
        NANOS.load(Ordering::Relaxed),
    );
    let start = std::time::Instant::now();
    forward(&ip, &d, DType::BF16, &b).unwrap();
    backward(
        &ip,
        &d,
        DType::BF16,
        BackwardMode::Deterministic,
        &b,
        &dout_b,
    )
    .unwrap();
    let wall = start.elapsed().as_secs_f64();
    // The counters also see launches of tests running alongside; their ratio is still
    // instructions per second of interpreter time.
    let n = INSTRUCTIONS.load(Ordering::Relaxed) - n0;
    let kernel_s = (NANOS.load(Ordering::Relaxed) - t0) as f64 / 1e9;
    let rate = n as f64 / kernel_s.max(1e-9);
    crate::common::loud(&format!(
        "ptx-interp speed: {n} PTX instructions in {kernel_s:.3} s of kernel time ({wall:.3} s wall) = {:.1} M instructions/s",
        rate / 1e6
    ));
    assert!(
        rate >= 10e6,
        "the interpreter runs {:.1} M instructions/s, below the 10 M target",
        rate / 1e6
    );
}

/// The deterministic backward does not depend on the order blocks are scheduled in: the same
/// inputs under differently shuffled block orders give bitwise identical gradients. (The atomic
/// mode's order is the scheduler's, so only its values are compared, elsewhere.)
#[test]
fn deterministic_backward_is_bitwise_identical_under_shuffled_block_orders() {
    use ultramem::gpu::peer_ffn::{self, PeerBuffers};
    use ultramem::gpu::weighted_gather::{self, GatherBuffers};
    use ultramem::rng::SplitMix64;
    use ultramem::{Activation, BackwardMode, DType, PeerFfnDims, WeightedGatherDims};
    let (t, m, n) = (24usize, 16usize, 37usize);
    let mut rng = SplitMix64::new(5);
    // Few rows, many slots: long runs of equal rows whose sums could reorder.
    let rows: Vec<u32> = (0..t * m).map(|_| rng.below(n as u64) as u32).collect();
    let mut floats = |len: usize| -> Vec<f32> {
        rng.normals(len, 1.0)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    };
    let (w, table, dout, z, down) = (
        floats(t * m * 2),
        floats(n * 96),
        floats(t * 96),
        floats(t * 40),
        floats(n * 40),
    );
    let gd = WeightedGatherDims {
        tokens: t,
        slots: m,
        cores: 2,
        rows: n,
        dv: 96,
    };
    let pd = PeerFfnDims {
        tokens: t,
        slots: m,
        cores: 2,
        rows: n,
        dp: 40,
        dv: 96,
    };
    let run = |seed: u64| -> Vec<Vec<u32>> {
        let ip = Interp::with_block_order(seed);
        let (rb, wb, tb, gb, zb, db) = (
            ip.upload_pod(&rows),
            ip.upload_pod(&w),
            ip.upload_pod(&table),
            ip.upload_pod(&dout),
            ip.upload_pod(&z),
            ip.upload_pod(&down),
        );
        let b = GatherBuffers {
            rows: &rb,
            weights: &wb,
            table: &tb,
        };
        let (dw, dt) =
            weighted_gather::backward(&ip, &gd, DType::F32, BackwardMode::Deterministic, &b, &gb)
                .unwrap();
        let pb = PeerBuffers {
            rows: &rb,
            scores: &wb,
            z: &zb,
            down: &db,
            up: &tb,
        };
        let g = peer_ffn::backward(
            &ip,
            &pd,
            DType::F32,
            Activation::Gelu,
            BackwardMode::Deterministic,
            &pb,
            &gb,
        )
        .unwrap();
        vec![
            ip.read_u32(&dw, t * m * 2),
            ip.read_u32(&dt, n * 96),
            ip.read_u32(&g.dz, t * 40),
            ip.read_u32(&g.dscores, t * m * 2),
            ip.read_u32(&g.ddown, n * 40),
            ip.read_u32(&g.dup, n * 96),
        ]
    };
    let first = run(1);
    for seed in [2, 3, 99] {
        assert_eq!(
            run(seed),
            first,
            "block order {seed} changed a deterministic gradient"
        );
    }
    // The shuffle does reorder work: the atomic mode's float sums change in their last bits.
    let atomic = |seed: u64| -> Vec<u32> {
        let ip = Interp::with_block_order(seed);
        let (rb, wb, tb, gb) = (
            ip.upload_pod(&rows),
            ip.upload_pod(&w),
            ip.upload_pod(&table),
            ip.upload_pod(&dout),
        );
        let b = GatherBuffers {
            rows: &rb,
            weights: &wb,
            table: &tb,
        };
        let (_, dt) =
            weighted_gather::backward(&ip, &gd, DType::F32, BackwardMode::Atomic, &b, &gb).unwrap();
        ip.read_u32(&dt, n * 96)
    };
    assert_ne!(
        atomic(1),
        atomic(2),
        "shuffled block orders should reorder the atomic sums"
    );
}
