//! Card profiles: the numbers the time model uses, each with its public source.
//!
//! Short names of the sources cited below:
//! - **WP**: NVIDIA H100 Tensor Core GPU Architecture whitepaper v1.04, Table 3.
//! - **H200**: NVIDIA H200 product page, <https://www.nvidia.com/en-us/data-center/h200/>.
//! - **PG**: CUDA C++ Programming Guide, "Compute Capabilities" (compute capability 9.0) and
//!   the arithmetic-instruction throughput table; `cuda_occupancy.h` for the allocation rules.
//! - **J**: HPMLL's Hopper benchmark suite (the code of arXiv 2402.13499 and 2501.12084) re-run
//!   on an H100 80GB HBM3 SXM at 1.98 GHz, raw logs in github.com/Johnsonms/NVIDIA-Hopper-
//!   Benchmark, `reproduction/H100-dapperdingo/raw/` (`mem_bw.log`, `mem_lat_dram.log`,
//!   `l2_bw_*.log`, `mma_m16n8k16.log`, `MaxFlops.log`, summary).
//! - **L24**: Luo et al., "Benchmarking and Dissecting the Nvidia Hopper GPU Architecture",
//!   arXiv 2402.13499, Table IV (H800 PCIe at 1.755 GHz); **L25**: arXiv 2501.12084, Tables IV-V.
//! - **GB**: github.com/te42kyfo/gpu-benches, `gpu-stream/h200.txt`, `gpu-l2-cache/h200.txt`,
//!   `gpu-small-kernels/h200*.txt` (an H200 at 1.98 GHz).
//! - **KW**: github.com/new-TonyWang/KernelWiki, `sources/experience/hw-probes/` (H200 probes:
//!   `launch-overhead.md`, `l2-residency.md`, `shfl-sync-bfly.md`, `barrier-cost.md`).
//! - **CC**: Chips and Cheese, "Nvidia's H100: Funny L2, and Tons of Bandwidth" (2023).
//! - **HK**: Hong and Kim, "An analytical model for a GPU architecture with memory-level and
//!   thread-level parallelism awareness", ISCA 2009.
//!
//! Where the two cards share the GH100 SM and L2 design, the H200 reuses the H100 SXM's on-chip
//! latencies (no H200 measurement of them was found) and says so.

use ptx_interp::InstrClass;

/// One card's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Card {
    /// Name for reports.
    pub name: &'static str,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// SM clock the model counts cycles at, Hz.
    pub clock_hz: f64,
    /// Warp schedulers per SM, each issuing one warp instruction per clock.
    pub schedulers_per_sm: u32,
    /// Resident warps per SM at most.
    pub max_warps_per_sm: u32,
    /// Resident blocks per SM at most.
    pub max_blocks_per_sm: u32,
    /// 32-bit registers per SM.
    pub registers_per_sm: u32,
    /// Registers are allocated per warp in units of this many.
    pub register_unit: u32,
    /// Shared memory per SM, bytes.
    pub shared_per_sm: u32,
    /// The SM's combined L1 cache and shared memory, bytes (what shared memory leaves is L1).
    pub l1_and_shared_per_sm: u32,
    /// Shared memory is allocated in units of this many bytes.
    pub shared_unit: u32,
    /// Shared memory the runtime reserves per block, bytes.
    pub shared_reserved_per_block: u32,
    /// Shared-memory wavefronts (one 128-byte conflict-free warp access) per clock per SM.
    pub shared_wavefronts_per_clock: f64,
    /// 128-byte lines the L1 looks up per clock per SM: a warp's global access costs one clock
    /// per distinct line it touches.
    pub l1_lines_per_clock: f64,
    /// DRAM bandwidth a good streaming kernel sustains, bytes/s (the model's DRAM roof).
    pub dram_bytes_per_s: f64,
    /// DRAM peak from the datasheet, bytes/s (for reports).
    pub dram_peak_bytes_per_s: f64,
    /// L2 capacity, bytes.
    pub l2_bytes: u64,
    /// L2 bandwidth, bytes/s.
    pub l2_bytes_per_s: f64,
    /// Latency of a dependent global load that misses L2 (an idle memory system), cycles.
    pub dram_latency_cycles: f64,
    /// Latency of one global load round trip under load, seconds: what Little's law divides the
    /// bytes in flight by.
    pub loaded_dram_latency_s: f64,
    /// Latency of an L2 hit, cycles.
    pub l2_latency_cycles: f64,
    /// Latency of an L1 hit, cycles.
    pub l1_latency_cycles: f64,
    /// Latency of a shared-memory load, cycles.
    pub shared_latency_cycles: f64,
    /// Dependent-issue latency of an FP32 FMA, cycles.
    pub fp32_latency_cycles: f64,
    /// Latency of a warp shuffle, cycles.
    pub shuffle_latency_cycles: f64,
    /// Latency of a block barrier (128-256 threads), cycles.
    pub barrier_latency_cycles: f64,
    /// Latency of an `mma.sync` m16n8k16, cycles.
    pub mma_latency_cycles: f64,
    /// `mma.sync` m16n8k16 (f16/bf16 in, f32 accumulate) throughput, FLOP/s over the card.
    pub mma_sync_flops: f64,
    /// One kernel launch back to back on a stream, seconds.
    pub launch_s: f64,
    /// One kernel node inside a CUDA graph, seconds.
    pub graph_launch_s: f64,
    /// A small blocking read back to the host (a `cudaMemcpy` of a few bytes after the queued
    /// work), seconds beyond the work itself.
    pub host_read_s: f64,
}

impl Card {
    /// NVIDIA H100 SXM5 80 GB (HBM3).
    pub fn h100_sxm() -> Card {
        Card {
            name: "H100 SXM",
            // WP: 132 SMs; deviceQuery in J agrees.
            sms: 132,
            // WP: 1980 MHz boost for FP32/FP64 (tensor 1830 MHz); J ran and counted cycles at
            // 1.98 GHz.
            clock_hz: 1.98e9,
            // PG / cuda_occupancy.h: 4 sub-partitions, one scheduler each.
            schedulers_per_sm: 4,
            // PG, compute capability 9.0: 64 warps, 32 blocks, 64K registers per SM.
            max_warps_per_sm: 64,
            max_blocks_per_sm: 32,
            registers_per_sm: 65_536,
            // cuda_occupancy.h: registers per warp rounded up to 256.
            register_unit: 256,
            // PG: 228 KB shared memory per SM; cuda_occupancy.h: 128-byte granularity, 1 KB
            // reserved per block.
            shared_per_sm: 233_472,
            // WP: 256 KB of combined L1 data cache and shared memory per SM.
            l1_and_shared_per_sm: 262_144,
            shared_unit: 128,
            shared_reserved_per_block: 1024,
            // PG: 32 banks x 4 bytes per clock; J measured 127.5 B/clk/SM.
            shared_wavefronts_per_clock: 1.0,
            // Assumed: one tag lookup (one 128-byte line) per clock in the L1's tag stage, as
            // Nsight Compute's L1TEX pipeline counts wavefronts; no Hopper measurement of
            // uncoalesced-load throughput was found. A fully coalesced 4-byte warp load is one
            // line, a 16-byte one four.
            l1_lines_per_clock: 1.0,
            // J `mem_bw.log`: a float4 grid-stride copy reaches 3,008 GB/s = 89.8% of peak.
            dram_bytes_per_s: 3.008e12,
            // WP / datasheet: 3.35 TB/s (5120-bit HBM3).
            dram_peak_bytes_per_s: 3.352e12,
            // WP: 50 MB L2 (52,428,800 bytes from the driver in J's deviceQuery).
            l2_bytes: 52_428_800,
            // J `l2_bw` with 128-bit loads: 3,783 B/clk = 7.5 TB/s at 1.98 GHz (32-bit loads
            // reach 8.3, CC's OpenCL 5.5 on the PCIe card): the vector-load figure, which is
            // what our L2-bound kernels use.
            l2_bytes_per_s: 7.5e12,
            // J `mem_lat_dram`: 484 cycles (244 ns) for a pointer chase over >= 64 MB at
            // 1.98 GHz. (Other H100 SXM chases: 570 cycles, 834 mean; L24 H800: 478.8.)
            dram_latency_cycles: 484.0,
            // Derived from GB's H200 `read` kernel (one 8-byte load per thread, 2 blocks/SM):
            // at 256 threads per block, 4 KB in flight per SM x 132 SMs over 935 GB/s = 578 ns.
            // No H100 occupancy sweep was found; the HBM3e and HBM3 controllers share the
            // design, so the H200 figure stands for both.
            loaded_dram_latency_s: 578e-9,
            // J: 272.3 cycles (L24 H800: 263; the far L2 half costs ~475, not modelled).
            l2_latency_cycles: 272.0,
            // J's summary: 41 cycles for an L1 hit on the H100 SXM.
            l1_latency_cycles: 41.0,
            // J: 29.0 cycles (L24 H800: 29).
            shared_latency_cycles: 29.0,
            // L24 Table IV reports 4-cycle dependent FP32 FMA on Hopper (as on Ampere).
            fp32_latency_cycles: 4.0,
            // KW `shfl-sync-bfly.md`: 23.8 cycles per dependent shfl.sync.bfly (H200).
            shuffle_latency_cycles: 24.0,
            // KW `barrier-cost.md`: __syncthreads 31.8-36.4 ns at 128-256 threads (63-72
            // cycles at 1.98 GHz, loop overhead included).
            barrier_latency_cycles: 68.0,
            // J `mma_m16n8k16.log`: 24.1 cycles.
            mma_latency_cycles: 24.0,
            // J `mma_m16n8k16.log`: 713.7 TFLOPS with ILP 4 (72% of the 989 TFLOPS wgmma
            // peak, WP); the model's tensor-core roof for the mma.sync our PTX can use.
            mma_sync_flops: 713.7e12,
            // KW `launch-overhead.md`: empty kernels back to back, 1.55-1.72 us per launch
            // (H200; the H100 research notes give ~2.1 us vs ~1.3 us in a graph).
            launch_s: 1.7e-6,
            // GB `gpu-small-kernels/h200_graph.txt`: 1.26-1.37 us per kernel node.
            graph_launch_s: 1.3e-6,
            // Wu et al., "DualPath", arXiv 2602.21548, §5.2: 5-7 us per small cudaMemcpyAsync
            // (no H100/H200 figure for a blocking D2H of a status word was found; the middle).
            host_read_s: 6e-6,
        }
    }

    /// NVIDIA H200 SXM 141 GB (HBM3e): the GH100 SM with faster, larger memory.
    pub fn h200() -> Card {
        Card {
            name: "H200",
            // GB and KW report 132 SMs (the H200 page gives none; 67 TF / (2 x 128 x 1.98
            // GHz) = 132.2 agrees).
            sms: 132,
            // GB, KW: 1980 MHz under load.
            clock_hz: 1.98e9,
            // GB `gpu-l2-cache/h200.txt`: 3,888 GB/s reading >= 90 MB (81% of 4.8 TB/s); the
            // store-only kernel in `gpu-stream/h200.txt` reaches 3,898.
            dram_bytes_per_s: 3.888e12,
            // H200: 4.8 TB/s.
            dram_peak_bytes_per_s: 4.8e12,
            // KW `l2-residency.md`: 62,914,560 bytes from the driver (60 MiB: all 12 memory
            // controllers enabled, against 10 on the H100 SXM).
            l2_bytes: 62_914_560,
            // GB `gpu-l2-cache/h200.txt`: 9.7-10.2 TB/s for 5-40 MB footprints.
            l2_bytes_per_s: 9.7e12,
            // KW `launch-overhead.md`: 1.55-1.72 us per back-to-back empty launch.
            launch_s: 1.65e-6,
            // J's mma.sync figure scaled by nothing: same SM, same clock.
            ..Card::h100_sxm()
        }
    }

    /// The card called `name` (`h100`, `h100-sxm`, `h200`).
    pub fn by_name(name: &str) -> Option<Card> {
        match name.to_ascii_lowercase().as_str() {
            "h100" | "h100-sxm" | "h100_sxm" => Some(Card::h100_sxm()),
            "h200" => Some(Card::h200()),
            _ => None,
        }
    }

    /// Warp instructions one SM issues per clock for `class` (its pipe's lanes per clock over
    /// 32; 0 for classes limited only by the schedulers). PG's CC 9.0 throughput table: FP32
    /// 128 lanes/clk, FP64 64, INT32 64, conversions 16, special functions 16, shuffles 32;
    /// loads, stores and atomics go through the LSU at 32 lanes/clk (one warp instruction per
    /// clock, the shared-memory and L2 terms limit them further); mma.sync from J's throughput.
    pub fn warp_issues_per_clock(&self, class: usize) -> f64 {
        let lanes = match InstrClass::ALL.get(class) {
            Some(InstrClass::Fp32) => 128.0,
            Some(InstrClass::Fp64) => 64.0,
            Some(InstrClass::Int) => 64.0,
            Some(InstrClass::Conversion) => 16.0,
            Some(InstrClass::Sfu) => 16.0,
            Some(
                InstrClass::Shuffle
                | InstrClass::Vote
                | InstrClass::GlobalLoad
                | InstrClass::GlobalStore
                | InstrClass::GlobalAtomic
                | InstrClass::GlobalReduction
                | InstrClass::SharedLoad
                | InstrClass::SharedStore
                | InstrClass::SharedAtomic,
            ) => 32.0,
            Some(InstrClass::Mma) => {
                // One m16n8k16 is 16·8·16·2 = 4096 FLOP per warp instruction.
                return self.mma_sync_flops / f64::from(self.sms) / self.clock_hz / 4096.0;
            }
            _ => return 0.0,
        };
        lanes / 32.0
    }
}
