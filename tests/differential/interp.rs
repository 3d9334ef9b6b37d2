//! The PTX interpreter as a device beyond the per-op tests: its speed on a real kernel, and the
//! deterministic backward's independence from the order blocks are scheduled in. These drive
//! the interpreter (`ultramem::interp_backend::InterpDevice`) through the buffer-level launch
//! sequences of `ultramem::gpu`, as the CUDA backend does.

use ultramem::gpu::Gpu;
use ultramem::interp_backend::{InterpBuffer, InterpDevice};

/// Buffer helpers for the tests that drive the interpreter directly.
pub trait InterpExt {
    fn upload_pod<T: bytemuck::Pod>(&self, data: &[T]) -> InterpBuffer;
    fn read_f32(&self, b: &InterpBuffer, len: usize) -> Vec<f64>;
    fn read_u32(&self, b: &InterpBuffer, len: usize) -> Vec<u32>;
}

impl InterpExt for InterpDevice {
    fn upload_pod<T: bytemuck::Pod>(&self, data: &[T]) -> InterpBuffer {
        self.upload(bytemuck::cast_slice(data)).unwrap()
    }

    fn read_f32(&self, b: &InterpBuffer, len: usize) -> Vec<f64> {
        let bytes = self.download(b, len * 4).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    }

    fn read_u32(&self, b: &InterpBuffer, len: usize) -> Vec<u32> {
        let bytes = self.download(b, len * 4).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
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
        table_rows: 4096,
        dv: 256,
    };
    let ip = InterpDevice::new();
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
    // This device's own counters: launches of other tests running alongside are not counted.
    let n = ip.instructions();
    let kernel_s = ip.kernel_time().as_secs_f64();
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
        table_rows: n,
        dv: 96,
    };
    let pd = PeerFfnDims {
        tokens: t,
        slots: m,
        cores: 2,
        table_rows: n,
        dp: 40,
        dv: 96,
    };
    let run = |seed: u64| -> Vec<Vec<u32>> {
        let ip = InterpDevice::with_block_order(seed);
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
        let ip = InterpDevice::with_block_order(seed);
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

/// The shared helpers run inside the real kernels with file and line of their own file: a
/// table dtype code no helper branch handles (3) leaves `ultramem_table_load`'s return value
/// unwritten, which the sanitizer reports at its `ret` in kernels/helpers.ptx, called from
/// kernels/weighted_gather.ptx.
#[test]
fn a_sanitizer_error_inside_a_shared_helper_cites_kernels_helpers_ptx() {
    use ultramem::gpu::{Gpu, Launch};
    use ultramem::interp_backend::ExecError;
    use ultramem::registry::KernelId;
    use ultramem::{DType, Error};
    let ip = InterpDevice::new();
    // ValueParams (src/gpu/params.rs): tokens, slots, cores, table_rows, width, slice_width,
    // chunks, grid_x, entries, activation, flags, dp, dv, table_dtype, groups, vec (1: the
    // one-column path, which reads the table through the helper).
    let words: [u32; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 3, 1, 1];
    let (rows, w, table) = (
        ip.upload_pod(&[0u32]),
        ip.upload_pod(&[1.0f32]),
        ip.upload_pod(&[1.0f32]),
    );
    let out = ip.upload_pod(&[0.0f32]);
    let status = ip.upload_pod(&[0u32]);
    let e = ip
        .launch(&Launch {
            kernel: KernelId::WeightedGather,
            entry: "weighted_gather_forward",
            table_dtype: DType::F32,
            params: bytemuck::cast_slice(&words),
            args: &[
                Some(&rows),
                Some(&w),
                Some(&table),
                None,
                None,
                Some(&out),
                Some(&status),
            ],
            overrides: &[],
            grid: (1, 1),
            threads: 128,
        })
        .expect_err("dtype 3 writes no value");
    let Error::Backend { source, .. } = e else {
        panic!("not a backend error: {e}")
    };
    let x = source
        .downcast_ref::<ExecError>()
        .unwrap_or_else(|| panic!("not the interpreter's error: {source}"));
    let helpers = KernelId::WeightedGather.ptx_parts()[0].2;
    let ret_line = helpers
        .lines()
        .enumerate()
        .skip_while(|(_, l)| !l.contains("ultramem_table_load("))
        .find(|(_, l)| l.trim() == "ret;")
        .map(|(i, _)| i as u32 + 1)
        .unwrap();
    assert_eq!(
        (x.file.as_str(), x.line, x.function.as_str()),
        ("kernels/helpers.ptx", ret_line, "ultramem_table_load"),
        "{x}"
    );
    assert_eq!(x.called_from[0].file, "kernels/weighted_gather.ptx", "{x}");
    let call_line = KernelId::WeightedGather.ptx_parts()[1]
        .2
        .lines()
        .position(|l| l.contains("call (%v), ultramem_table_load"))
        .unwrap() as u32
        + 1;
    assert_eq!(x.called_from[0].line, call_line, "{x}");
    crate::common::loud(&format!(
        "shared-helper error as the interpreter reports it: {x}"
    ));
}
