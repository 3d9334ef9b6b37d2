//! The time of one launch from what the interpreter counted, the card, and the occupancy: the
//! largest of the times each resource needs (issue, DRAM, L2, shared memory, bandwidth by
//! Little's law, the critical path), plus the launch overhead. This is the roofline-with-
//! latency view of Hong & Kim (ISCA 2009): a kernel is as slow as its most saturated resource,
//! and memory bandwidth is only reached when enough bytes are in flight (their MWP); with too
//! few warps the dependent chain of one warp decides (their CWP/MWP-limited case).

use super::card::Card;
use super::counts::LaunchCounts;
use super::occupancy::Occupancy;

/// The resource that decides a launch's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Instruction issue (all classes, or the busiest pipe).
    Issue,
    /// DRAM bandwidth.
    Dram,
    /// The L1's line lookups (uncoalesced accesses).
    L1,
    /// L2 bandwidth.
    L2,
    /// Shared-memory wavefronts.
    Shared,
    /// Too few bytes in flight to reach DRAM bandwidth (Little's law).
    InFlight,
    /// One block's chain of dependent latencies.
    Latency,
    /// The launch overhead itself (an empty or tiny kernel).
    Launch,
}

impl Limit {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Issue => "issue",
            Limit::Dram => "dram",
            Limit::L1 => "l1",
            Limit::L2 => "l2",
            Limit::Shared => "shared",
            Limit::InFlight => "in-flight",
            Limit::Latency => "latency",
            Limit::Launch => "launch",
        }
    }
}

/// A launch's predicted time and why.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Predicted seconds, launch overhead included.
    pub seconds: f64,
    /// The largest term.
    pub limit: Limit,
    /// Every term, seconds (the launch overhead is `Limit::Launch`).
    pub terms: Vec<(Limit, f64)>,
    /// Waves of blocks over the card's SMs at this occupancy.
    pub waves: u64,
    /// Bytes in flight per SM at this occupancy.
    pub bytes_in_flight_per_sm: f64,
}

/// Predicts one launch on `card`. `sass_per_ptx` scales the interpreter's PTX issue counts to
/// the SASS the card runs (static ratio per entry, from `cuobjdump`); `graph` uses the launch
/// cost inside a CUDA graph instead of a plain launch.
pub fn predict(
    card: &Card,
    occ: &Occupancy,
    c: &LaunchCounts,
    sass_per_ptx: f64,
    graph: bool,
) -> Prediction {
    let clock = card.clock_hz;
    let blocks = c.blocks.max(1);
    let sms = u64::from(card.sms);
    // The busiest SM runs this many blocks, `resident` at a time.
    let blocks_per_sm = blocks.div_ceil(sms);
    let resident = u64::from(occ.blocks_per_sm.max(1));
    let waves = blocks.div_ceil(sms * resident);
    let per_block = |total: f64| total / blocks as f64;
    let sm_share = blocks_per_sm as f64;

    // Issue: 4 schedulers each issue one warp instruction per clock (the PTX issues scaled to
    // SASS); a class whose pipe is narrower than that is limited by its own throughput (the
    // class's PTX issues as they are: an `fma`, an `mma.sync`, a `ld` is one SASS instruction).
    let mut issue_cycles =
        per_block(c.total_issues()) * sass_per_ptx * sm_share / f64::from(card.schedulers_per_sm);
    for (class, &n) in c.issues.iter().enumerate() {
        let per_clock = card.warp_issues_per_clock(class);
        if per_clock > 0.0 {
            issue_cycles = issue_cycles.max(per_block(n) * sm_share / per_clock);
        }
    }
    let t_issue = issue_cycles / clock;
    let t_shared =
        per_block(c.shared_wavefronts) * sm_share / card.shared_wavefronts_per_clock / clock;
    let t_dram = c.dram_bytes() / card.dram_bytes_per_s;
    let t_l1 = per_block(c.l1_lines) * sm_share / card.l1_lines_per_clock / clock;
    let t_l2 = c.l2_sectors * 32.0 / card.l2_bytes_per_s;

    // Little's law: the bandwidth the resident warps can pull is the bytes they have in flight
    // over the latency of one round trip. Bytes in flight are counted in sectors (a lane's 4
    // bytes alone in a sector still move 32): the lanes' bytes scaled by the launch's sector
    // bytes over requested bytes. The round trip is the loaded latency when the launch fills
    // every SM (the memory system is busy, as in the measurement it was fitted to), the idle
    // latency when it does not.
    let warps_per_block = u64::from(c.threads_per_block.div_ceil(32));
    let resident_blocks_per_sm = blocks_per_sm.min(resident);
    let warps_per_sm = (resident_blocks_per_sm * warps_per_block) as f64;
    let sector_scale = if c.request_bytes > 0.0 {
        (c.requested_sectors * 32.0 / c.request_bytes).max(1.0)
    } else {
        1.0
    };
    let bytes_in_flight_per_sm = warps_per_sm * c.warp_bytes_in_flight * sector_scale;
    let active_sms = blocks.min(sms) as f64;
    let in_flight = bytes_in_flight_per_sm * active_sms;
    let round_trip = if blocks >= sms {
        card.loaded_dram_latency_s
    } else {
        card.dram_latency_cycles / clock
    };
    // Only loads wait; a launch that never waits on a load (stores only) has no such limit.
    let t_in_flight = if c.dram_read_bytes == 0.0 || in_flight <= 0.0 {
        0.0
    } else {
        c.dram_read_bytes / (in_flight / round_trip)
    };
    // Latency: the busiest SM runs its blocks' dependent chains `resident` at a time (their
    // mean chain, as blocks that finish early free their slot), never less than the longest.
    let slots = resident.min(blocks_per_sm) as f64;
    let t_latency = (c.mean_critical_path_cycles * blocks_per_sm as f64 / slots)
        .max(c.critical_path_cycles)
        / clock;
    let t_launch = if graph {
        card.graph_launch_s
    } else {
        card.launch_s
    };
    let terms = vec![
        (Limit::Issue, t_issue),
        (Limit::Dram, t_dram),
        (Limit::L1, t_l1),
        (Limit::L2, t_l2),
        (Limit::Shared, t_shared),
        (Limit::InFlight, t_in_flight),
        (Limit::Latency, t_latency),
        (Limit::Launch, t_launch),
    ];
    let (limit, body) =
        terms[..terms.len() - 1]
            .iter()
            .copied()
            .fold(
                (Limit::Launch, 0.0),
                |a, (l, t)| if t > a.1 { (l, t) } else { a },
            );
    let limit = if body < t_launch {
        Limit::Launch
    } else {
        limit
    };
    Prediction {
        seconds: body + t_launch,
        limit,
        terms,
        waves,
        bytes_in_flight_per_sm,
    }
}
