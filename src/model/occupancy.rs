//! How many blocks of a kernel one SM holds at once, from its registers, static shared memory
//! and block size (the CUDA occupancy calculator's rules for compute capability 9.0).

use super::card::Card;
use super::compile::EntryResources;

/// Where a launch's blocks live while they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Residency {
    /// Blocks resident on the whole card at once (SMs × resident blocks per SM).
    pub resident_blocks: u64,
    /// One block's share of its SM's L1, bytes.
    pub l1_bytes_per_block: u64,
}

/// Resident blocks per SM and what limits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occupancy {
    /// Blocks one SM runs at once.
    pub blocks_per_sm: u32,
    /// Warps those blocks have, of the SM's maximum.
    pub warps_per_sm: u32,
    /// What limits `blocks_per_sm`: "warps", "registers", "shared", "blocks".
    pub limiter: &'static str,
}

impl Occupancy {
    /// Where the launch's blocks live: resident blocks on the card, and one block's share of
    /// its SM's L1 (the combined L1/shared memory less the resident blocks' shared memory).
    pub fn residency(&self, card: &Card, shared_bytes_per_block: u32) -> Residency {
        let blocks = u64::from(self.blocks_per_sm.max(1));
        let shared = blocks * u64::from(shared_bytes_per_block);
        let l1 = u64::from(card.l1_and_shared_per_sm).saturating_sub(shared);
        Residency {
            resident_blocks: blocks * u64::from(card.sms),
            l1_bytes_per_block: (l1 / blocks).max(128),
        }
    }

    /// Resident warps over the SM's maximum.
    pub fn fraction(&self, card: &Card) -> f64 {
        f64::from(self.warps_per_sm) / f64::from(card.max_warps_per_sm)
    }
}

/// The occupancy of `threads`-thread blocks of an entry with `res` on `card`.
pub fn occupancy(card: &Card, res: &EntryResources, threads: u32) -> Occupancy {
    let warps = threads.div_ceil(32).max(1);
    // Registers are allocated per warp in units of `register_unit` (per-thread counts rounded
    // up to a multiple of 8 first).
    let regs_per_thread = res.registers.max(1).div_ceil(8) * 8;
    let regs_per_warp = (regs_per_thread * 32).div_ceil(card.register_unit) * card.register_unit;
    let by_regs = card.registers_per_sm / (regs_per_warp * warps);
    let shared = res.shared_bytes.div_ceil(card.shared_unit) * card.shared_unit
        + card.shared_reserved_per_block;
    let by_shared = card.shared_per_sm / shared.max(1);
    let by_warps = card.max_warps_per_sm / warps;
    let limits = [
        (card.max_blocks_per_sm, "blocks"),
        (by_warps, "warps"),
        (by_regs, "registers"),
        (by_shared, "shared"),
    ];
    let (blocks, limiter) = limits
        .iter()
        .copied()
        .min_by_key(|&(n, _)| n)
        .unwrap_or((1, "blocks"));
    let blocks = blocks.max(1);
    Occupancy {
        blocks_per_sm: blocks,
        warps_per_sm: blocks * warps,
        limiter,
    }
}
