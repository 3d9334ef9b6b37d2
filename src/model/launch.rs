//! One profiled launch's counts for the whole grid: sampling undone, and its DRAM bytes from
//! a replay of its global accesses through the L2 ([`super::cache`]).
//!
//! # L2 traffic and DRAM bytes
//! Each sampled block's warp-level accesses are replayed, the warps interleaved access by access
//! (warp 0's first access, warp 1's first, ..., then every warp's second), through two LRU
//! caches ([`super::cache`]):
//! - **L1**: the block's share of its SM's L1 ([`Residency::l1_bytes_per_block`]: the SM's
//!   combined L1/shared memory less the resident blocks' shared memory, over those blocks).
//!   A load that hits there never reaches L2 (global loads are cached in L1 on sm_70 and later);
//!   stores and atomics always go to L2.
//! - **L2**: what reaches L2 counts in the L2-bandwidth term. Then, with `k = G/s` (`G` blocks
//!   in the grid, `s` run):
//!   - a sector's *first touch* in the launch by a load or atomic is a DRAM read (a store's is
//!     not: it is written in L2; every kernel here writes whole sectors or merges there); per
//!     allocation, first-touch bytes × `k`, capped at the allocation's size, are the launch's
//!     *compulsory* bytes (a grid whose blocks share data, as a matmul's tiles do, scales past
//!     the allocation in the sample and is capped back);
//!   - a sector only one sampled block touches (private data) that this block touched before
//!     and that has left its share of the L2 meanwhile is read again, × `k`. The block's share
//!     is the L2 over the blocks resident on the card at once (`min(G, SMs × resident blocks
//!     per SM)`), weighted by the block's footprint over the grid's mean footprint (each streams
//!     its own private data while this one runs; a block that leaves at once takes none). Data several blocks share is taken to stay in L2 for the launch (they
//!     all keep it recent);
//!   - every sector written goes back to DRAM once (distinct written bytes × `k`, capped);
//!   - within an op, what earlier launches read or wrote is in L2 while the op's footprint
//!     fits: per allocation, the op keeps the bytes it holds (capped at the allocation, and all
//!     scaled down together when they pass the L2 size), and a launch's compulsory reads of an
//!     allocation are cut by the fraction of it held. Every op starts with a cold L2 (its
//!     inputs in DRAM), which is conservative for a layer whose ops follow each other.

use std::collections::{HashMap, HashSet};

use ptx_interp::AccessKind;

use super::cache::{SectorCache, SECTOR_BYTES};
use super::counts::LaunchCounts;
use super::occupancy::Residency;
use ptx_interp::LaunchProfile;

/// The L2 state an op carries from launch to launch.
#[derive(Clone, Debug)]
pub struct OpMemory {
    l2_bytes: u64,
    /// Allocation start → bytes of it held in L2.
    held: HashMap<u64, f64>,
}

#[derive(Default)]
struct PerAllocation {
    size: u64,
    /// First-touch read sectors, each weighted by the blocks its block stands for.
    first_read_sectors: f64,
    /// Distinct written sectors, weighted likewise.
    written_sectors: f64,
}

impl OpMemory {
    /// A cold L2 of `l2_bytes`.
    pub fn new(l2_bytes: u64) -> OpMemory {
        OpMemory {
            l2_bytes,
            held: HashMap::new(),
        }
    }

    /// The whole grid's counts of a launch of `grid_blocks` blocks of `threads` threads whose
    /// sampled blocks the interpreter profiled, resident on the card as `residency` says;
    /// `weights` gives how many grid blocks each profiled block stands for, by block id
    /// (stratified samples; `None`: `grid / profiled` each); `allocation_of` maps a device
    /// address to its allocation's start and size.
    pub fn launch_counts(
        &mut self,
        profile: &LaunchProfile,
        grid_blocks: u32,
        threads: u32,
        residency: Residency,
        weights: Option<&[(u32, f64)]>,
        allocation_of: &dyn Fn(u64) -> Option<(u64, usize)>,
    ) -> LaunchCounts {
        let blocks = &profile.blocks;
        let grid = u64::from(grid_blocks);
        let ran = blocks.len().max(1) as u64;
        let uniform = grid as f64 / ran as f64;
        let weight_of: HashMap<u32, f64> = weights.unwrap_or(&[]).iter().copied().collect();
        let weight = |block: u32| weight_of.get(&block).copied().unwrap_or(uniform);
        let total_weight: f64 = blocks
            .iter()
            .map(|b| weight(b.block))
            .sum::<f64>()
            .max(1e-300);
        let mut c = LaunchCounts {
            blocks: grid,
            sampled_blocks: blocks.len() as u64,
            threads_per_block: threads,
            issues: vec![0.0; ptx_interp::InstrClass::COUNT],
            ..LaunchCounts::default()
        };
        let mut waits = 0u64;
        let mut bytes_at_waits = 0u64;
        for b in blocks {
            let k = weight(b.block);
            for (i, &n) in b.issues.iter().enumerate() {
                c.issues[i] += n as f64 * k;
            }
            for (name, n) in &b.mma {
                match c.mma.iter_mut().find(|(m, _)| m == name) {
                    Some((_, total)) => *total += *n as f64 * k,
                    None => c.mma.push((name.clone(), *n as f64 * k)),
                }
            }
            c.shared_requests += b.shared_requests as f64 * k;
            c.shared_wavefronts += b.shared_wavefronts as f64 * k;
            waits += b.inflight.waits;
            bytes_at_waits += b.inflight.total_warp_bytes_at_wait;
            c.critical_path_cycles = c.critical_path_cycles.max(b.critical_path_cycles as f64);
            c.mean_critical_path_cycles += b.critical_path_cycles as f64 * k / total_weight;
        }
        c.warp_bytes_in_flight = if waits == 0 {
            0.0
        } else {
            bytes_at_waits as f64 / waits as f64
        };
        c.sampling_error = sampling_error(
            blocks
                .iter()
                .map(|b| (weight(b.block), b.total_issues() as f64)),
        );

        // How many sampled blocks touch each sector (data several share stays in L2), and each
        // block's footprint (its distinct sectors).
        let mut sharers: HashMap<u64, u32> = HashMap::new();
        let mut block_sectors: HashSet<u64> = HashSet::new();
        let mut footprints = Vec::with_capacity(blocks.len());
        for b in blocks {
            block_sectors.clear();
            for access in b.global.iter().flatten() {
                block_sectors.extend(access.sectors.iter().copied());
            }
            for &s in &block_sectors {
                *sharers.entry(s).or_insert(0) += 1;
            }
            footprints.push(block_sectors.len() as f64);
        }
        // Over the grid: each sampled block's footprint weighted by the blocks it stands for.
        let mean_footprint = blocks
            .iter()
            .zip(&footprints)
            .map(|(b, f)| weight(b.block) * f)
            .sum::<f64>()
            / total_weight;
        // A block's share of the L2 while it runs: the L2 over the resident blocks, in
        // proportion to its footprint (blocks with little to do leave the rest to the others).
        let resident = residency.resident_blocks.clamp(1, grid.max(1)) as f64;
        let l2_share = |footprint: f64| {
            let weight = if mean_footprint > 0.0 {
                footprint / mean_footprint
            } else {
                1.0
            };
            (self.l2_bytes as f64 * weight / resident) as u64
        };
        let mut seen: HashSet<u64> = HashSet::new();
        let mut block_seen: HashSet<u64> = HashSet::new();
        let mut written: HashSet<u64> = HashSet::new();
        let mut per: HashMap<u64, PerAllocation> = HashMap::new();
        let mut refetch_sectors = 0.0;
        let mut sector_accesses = 0.0;
        let mut all_sectors = 0.0;
        let mut all_lines = 0.0;
        let mut useful = 0.0;
        let mut requested = 0.0;
        for (b, &footprint) in blocks.iter().zip(&footprints) {
            let k = weight(b.block);
            let mut l1 = SectorCache::new(residency.l1_bytes_per_block);
            let mut l2 = SectorCache::new(l2_share(footprint));
            block_seen.clear();
            let longest = b.global.iter().map(Vec::len).max().unwrap_or(0);
            for j in 0..longest {
                for access in b.global.iter().filter_map(|w| w.get(j)) {
                    useful += f64::from(access.useful_bytes) * k;
                    requested += f64::from(access.lanes) * f64::from(access.bytes_per_lane) * k;
                    let reads = access.kind != AccessKind::Store;
                    let writes = access.kind != AccessKind::Load;
                    all_sectors += access.sectors.len() as f64 * k;
                    all_lines += f64::from(access.lines) * k;
                    for &s in &access.sectors {
                        let l1_hit = l1.access(s);
                        if l1_hit && access.kind == AccessKind::Load {
                            continue;
                        }
                        sector_accesses += k;
                        let private = sharers.get(&s).copied().unwrap_or(0) <= 1;
                        let l2_hit = !private || l2.access(s);
                        let first = seen.insert(s);
                        let first_in_block = block_seen.insert(s);
                        if first && reads || writes && !written.contains(&s) {
                            let (start, size) = allocation_of(s * SECTOR_BYTES)
                                .map_or((u64::MAX, 0), |(a, n)| (a, n as u64));
                            let p = per.entry(start).or_default();
                            p.size = size;
                            if first && reads {
                                p.first_read_sectors += k;
                            }
                            if writes && written.insert(s) {
                                p.written_sectors += k;
                            }
                        } else if !first_in_block && !l2_hit && reads {
                            refetch_sectors += k;
                        }
                    }
                }
            }
        }
        c.l2_sectors = sector_accesses;
        c.requested_sectors = all_sectors;
        c.l1_lines = all_lines;
        c.useful_bytes = useful;
        c.request_bytes = requested;
        c.dram_read_bytes = refetch_sectors * SECTOR_BYTES as f64;
        for (start, p) in &per {
            let cap = |sectors: f64| {
                let bytes = sectors * SECTOR_BYTES as f64;
                if *start == u64::MAX {
                    bytes
                } else {
                    bytes.min(p.size as f64)
                }
            };
            let (read, write) = (cap(p.first_read_sectors), cap(p.written_sectors));
            let held = self.held.get(start).copied().unwrap_or(0.0);
            let held_fraction = if p.size == 0 {
                0.0
            } else {
                (held / p.size as f64).min(1.0)
            };
            c.compulsory_bytes += read + write;
            c.dram_read_bytes += read * (1.0 - held_fraction);
            c.dram_write_bytes += write;
            if *start != u64::MAX {
                let now = (held.max(read + write)).min(p.size as f64);
                self.held.insert(*start, now);
            }
        }
        let total: f64 = self.held.values().sum();
        if total > self.l2_bytes as f64 {
            let f = self.l2_bytes as f64 / total;
            self.held.values_mut().for_each(|v| *v *= f);
        }
        c
    }
}

/// The relative standard error of the estimated total `Σ weight × value` over a stratified
/// sample without replacement: blocks of equal weight form a stratum of `weight × count` blocks,
/// sampled `count` times (0 when every block ran, or a stratum has one sample and no spread to
/// measure).
fn sampling_error(samples: impl Iterator<Item = (f64, f64)>) -> f64 {
    let mut strata: Vec<(f64, Vec<f64>)> = Vec::new();
    for (w, v) in samples {
        match strata
            .iter_mut()
            .find(|(sw, _)| (*sw - w).abs() <= 1e-9 * w.max(1.0))
        {
            Some((_, vs)) => vs.push(v),
            None => strata.push((w, vec![v])),
        }
    }
    let mut total = 0.0;
    let mut variance = 0.0;
    for (w, vs) in &strata {
        let n = vs.len() as f64;
        let population = w * n;
        let mean = vs.iter().sum::<f64>() / n;
        total += population * mean;
        if vs.len() >= 2 && population > n + 0.5 {
            let var = vs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            variance += population * population * (1.0 - n / population) * var / n;
        }
    }
    if total == 0.0 {
        0.0
    } else {
        variance.sqrt() / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampling_error_is_zero_for_identical_blocks_and_grows_with_spread() {
        let one = |vs: &[f64], grid: f64| {
            let w = grid / vs.len() as f64;
            sampling_error(vs.iter().map(|&v| (w, v)))
        };
        assert_eq!(one(&[5.0, 5.0, 5.0], 100.0), 0.0);
        assert_eq!(one(&[1.0, 9.0], 2.0), 0.0);
        // Four of 1000: the textbook standard error of the mean, with the finite correction.
        let e = one(&[1.0, 9.0, 1.0, 9.0], 1000.0);
        assert!((e - (16.0f64 * 4.0 / 3.0 / 4.0 * (1.0 - 0.004)).sqrt() / 5.0).abs() < 1e-12);
        // Two strata: the idle one (all equal) adds nothing.
        let two =
            sampling_error([(10.0, 1.0), (10.0, 9.0), (500.0, 0.0), (500.0, 0.0)].into_iter());
        assert!((two - (20.0f64 * 20.0 * 0.9 * 32.0 / 2.0).sqrt() / 100.0).abs() < 1e-12);
    }
}
