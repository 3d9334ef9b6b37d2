//! What the interpreter counted for one launch, for the whole grid: the input of the time model
//! ([`super::time`]), made by [`super::launch`].

/// What the interpreter counted for one launch, sampling undone (totals for the whole grid).
#[derive(Clone, Debug, Default)]
pub struct LaunchCounts {
    /// Blocks in the grid.
    pub blocks: u64,
    /// Blocks the interpreter ran.
    pub sampled_blocks: u64,
    /// Threads per block.
    pub threads_per_block: u32,
    /// Warp-level instruction issues by class, PTX (before the SASS calibration), indexed by
    /// `InstrClass as usize`.
    pub issues: Vec<f64>,
    /// Warp-level `mma.sync` issues by opcode.
    pub mma: Vec<(String, f64)>,
    /// Warp-level shared-memory requests.
    pub shared_requests: f64,
    /// Wavefronts of those requests (bank conflicts make more than one per request).
    pub shared_wavefronts: f64,
    /// 32-byte sectors the warp-level global accesses touch, summed over the accesses.
    pub requested_sectors: f64,
    /// Those that reach L2 (loads that hit L1 do not).
    pub l2_sectors: f64,
    /// 128-byte lines the warp-level global accesses touch, summed over the accesses: the L1's
    /// tag lookups.
    pub l1_lines: f64,
    /// Distinct bytes each warp-level access uses, summed over the accesses.
    pub useful_bytes: f64,
    /// Bytes the lanes request (lanes × bytes per lane, summed over the accesses).
    pub request_bytes: f64,
    /// Distinct bytes the launch touches (reads and writes), what a perfect cache would move.
    pub compulsory_bytes: f64,
    /// DRAM bytes read, from the L2 model.
    pub dram_read_bytes: f64,
    /// DRAM bytes written back, from the L2 model.
    pub dram_write_bytes: f64,
    /// Mean bytes a warp has in flight when it waits on a load.
    pub warp_bytes_in_flight: f64,
    /// The longest dependent chain of one block, cycles (max over the blocks that ran).
    pub critical_path_cycles: f64,
    /// The mean over the blocks that ran of their longest dependent chain, cycles.
    pub mean_critical_path_cycles: f64,
    /// Relative standard error of the scaled totals from sampling (0 when every block ran).
    pub sampling_error: f64,
}

impl LaunchCounts {
    /// DRAM bytes read and written.
    pub fn dram_bytes(&self) -> f64 {
        self.dram_read_bytes + self.dram_write_bytes
    }

    /// Total warp-level issues.
    pub fn total_issues(&self) -> f64 {
        self.issues.iter().sum()
    }

    /// Useful bytes over the bytes of the sectors the accesses touch (1 for perfectly
    /// coalesced accesses), caches aside.
    pub fn sector_efficiency(&self) -> f64 {
        if self.requested_sectors == 0.0 {
            1.0
        } else {
            self.useful_bytes / (self.requested_sectors * 32.0)
        }
    }
}
