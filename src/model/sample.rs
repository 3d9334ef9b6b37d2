//! Which blocks of a big launch the interpreter runs, and how their counts stand for the grid.
//!
//! A launch with at most [`Sampling::whole_up_to`] blocks is profiled whole. Any other launch
//! lists [`Sampling::strata`] runs of consecutive blocks, spread evenly over the grid (the run
//! starting at block `⌊i·G/S⌋` for `i < S`), plus a run that ends at the last block (often a
//! partial tile), in an order that halves the gaps as it goes (strata 0, 8, 4, 12, 2, ...), and
//! profiles them until they have run [`Sampling::budget`] thread instructions (at least
//! [`Sampling::min_blocks`] blocks): a grid of costly blocks is profiled on fewer, still spread,
//! blocks. The blocks not profiled do not run at all. Launches that write indices or
//! orders a later launch of the same op reads must leave them whole, so that their consumers'
//! addresses are the real ones: the cheap ones ([`runs_whole`]: the row sort's init, histogram
//! and scan) run their other blocks unprofiled, and the costly ones (the row sort's scatter,
//! the top-k backward's row lists) have their whole output written by a host twin
//! ([`super::twin`]).
//!
//! The run length grows with the grid, `⌈G / (S·256)⌉` capped at [`Sampling::max_run`], and
//! everything depends only on `G`: two launches whose grids are both multiples of the tokens
//! (the top-k's stage 1 with `2·T·H` blocks and its grid select with `T·H`) run the blocks of
//! the same tokens, so the consumer reads what its producer really wrote. Blocks that did not
//! run leave their outputs zero; a consumer that reads those (a different grid shape) reads
//! zeros, which changes data-dependent branches but not the addresses of our kernels (their
//! addresses depend on indices, which come from whole launches or from the host).

use crate::interp_backend::{SampleChoice, SampleQuery};
use ptx_interp::StopRule;

/// The sampling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    /// Grids of at most this many blocks (units) are profiled whole.
    pub whole_up_to: u32,
    /// Evenly spread runs of blocks in a sampled grid.
    pub strata: u32,
    /// The longest run.
    pub max_run: u32,
    /// Thread instructions after which a sampled launch profiles no further block.
    pub budget: u64,
    /// Blocks a sampled launch profiles at least.
    pub min_blocks: usize,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            whole_up_to: 16,
            strata: 16,
            max_run: 4,
            budget: 100_000_000,
            min_blocks: 4,
        }
    }
}

/// Blocks per unit of work that a consumer launch lines up with: the top-k's stage 1 runs two
/// blocks (the two sides) per (token, head), its grid select one. Sampling picks units, then
/// every block of each, so the select runs the tokens stage 1 ran, both sides of them.
pub fn blocks_per_unit(entry: &str) -> u32 {
    match entry {
        "product_key_topk_stage1" => 2,
        _ => 1,
    }
}

/// Cheap entries that write indices or orders another launch of the same op reads: every block
/// runs, a sample is profiled.
pub fn runs_whole(entry: &str) -> bool {
    matches!(
        entry,
        "row_sort_init" | "row_sort_histogram" | "row_sort_scan"
    )
}

/// `0..n` in an order that halves the gaps: 0, n/2, n/4, 3n/4, ... (bit-reversed, then the
/// rest).
fn spread_order(n: u32) -> Vec<u32> {
    let bits = 32 - n.saturating_sub(1).leading_zeros();
    let mut order: Vec<u32> = (0..1u64 << bits)
        .map(|i| ((i as u32).reverse_bits() >> (32 - bits.max(1))) * u32::from(bits > 0))
        .filter(|&i| i < n)
        .collect();
    order.dedup();
    let mut seen = vec![false; n as usize];
    order.retain(|&i| !std::mem::replace(&mut seen[i as usize], true));
    order
}

impl Sampling {
    /// Every block profiled: no sampling.
    pub fn none() -> Sampling {
        Sampling {
            whole_up_to: u32::MAX,
            ..Sampling::default()
        }
    }

    /// The stop rule of a sampled launch.
    pub fn stop_rule(&self) -> Option<StopRule> {
        Some(StopRule {
            thread_instructions: self.budget,
            min_blocks: self.min_blocks,
        })
    }

    /// The blocks to profile for `q` and what each stands for. When the blocks that do work are
    /// known ([`super::twin::working_blocks`]: most of the grid leaves at once), the working
    /// and the idle blocks are two strata, each sampled as a grid of its own (the idle ones by
    /// at most [`Sampling::strata`] spread blocks), listed alternately and weighted by the
    /// stratum's size over its blocks that run; otherwise [`Sampling::blocks`], weighted
    /// equally.
    pub fn choose(&self, q: &SampleQuery<'_>) -> SampleChoice {
        let run_others = runs_whole(q.entry);
        let sampled = |blocks: Option<Vec<u32>>, weights| SampleChoice {
            stop: blocks.as_ref().and(self.stop_rule()),
            blocks,
            weights,
            run_others,
        };
        let Some(working) = q.working else {
            return sampled(self.blocks(q.entry, q.grid_blocks), None);
        };
        let idle: Vec<u32> = {
            let mut w = working.iter().peekable();
            (0..q.grid_blocks)
                .filter(|b| {
                    while w.peek().is_some_and(|&&x| x < *b) {
                        w.next();
                    }
                    w.peek() != Some(&b)
                })
                .collect()
        };
        let pick = |stratum: &[u32], whole: bool| -> Vec<(u32, f64)> {
            if stratum.is_empty() {
                return Vec::new();
            }
            let n = stratum.len() as u32;
            let positions: Vec<u32> = if whole {
                self.blocks("", n).unwrap_or_else(|| (0..n).collect())
            } else {
                let s = self.strata.max(1).min(n);
                spread_order(s)
                    .into_iter()
                    .map(|i| (u64::from(i) * u64::from(n) / u64::from(s)) as u32)
                    .collect()
            };
            let w = f64::from(n) / positions.len() as f64;
            positions
                .iter()
                .map(|&p| (stratum[p as usize], w))
                .collect()
        };
        let (busy, rest) = (pick(working, true), pick(&idle, false));
        if busy.len() + rest.len() >= q.grid_blocks as usize {
            return sampled(None, None);
        }
        // Alternate, so that a stop still leaves both strata profiled.
        let mut listed: Vec<(u32, f64)> = Vec::with_capacity(busy.len() + rest.len());
        for i in 0..busy.len().max(rest.len()) {
            listed.extend(rest.get(i));
            listed.extend(busy.get(i));
        }
        sampled(
            Some(listed.iter().map(|p| p.0).collect()),
            Some(listed.iter().map(|p| p.1).collect()),
        )
    }

    /// The linear block ids to profile for a grid of `blocks` blocks of `entry`, in the order
    /// to profile them, or `None` for all.
    pub fn blocks(&self, entry: &str, blocks: u32) -> Option<Vec<u32>> {
        let per_unit = blocks_per_unit(entry);
        if blocks / per_unit <= self.whole_up_to || !blocks.is_multiple_of(per_unit) {
            return None;
        }
        let units = self.units(blocks / per_unit)?;
        let ids: Vec<u32> = units
            .iter()
            .flat_map(|&u| u * per_unit..(u + 1) * per_unit)
            .collect();
        (ids.len() < blocks as usize).then_some(ids)
    }

    /// Sampled units of a grid of `units` units, in profiling order.
    fn units(&self, units: u32) -> Option<Vec<u32>> {
        let strata = self.strata.max(1);
        let g = u64::from(units);
        let run = g
            .div_ceil(u64::from(strata) * 256)
            .clamp(1, u64::from(self.max_run.max(1)));
        let starts = spread_order(strata)
            .into_iter()
            .map(|i| u64::from(i) * g / u64::from(strata))
            .chain(std::iter::once(g - run));
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<u32> = starts
            .flat_map(|start| (start..(start + run).min(g)).map(|b| b as u32))
            .filter(|b| seen.insert(*b))
            .collect();
        (ids.len() < units as usize).then_some(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_order_halves_the_gaps_and_lists_each_once() {
        assert_eq!(spread_order(8), [0, 4, 2, 6, 1, 5, 3, 7]);
        assert_eq!(spread_order(5), [0, 4, 2, 1, 3]);
        assert_eq!(spread_order(1), [0]);
        assert!(spread_order(0).is_empty());
    }

    #[test]
    fn small_grids_are_profiled_whole_and_index_writers_run_whole() {
        let s = Sampling::default();
        assert_eq!(s.blocks("k", 16), None);
        assert!(runs_whole("row_sort_scan") && !runs_whole("weighted_gather_forward"));
        assert!(
            !runs_whole("row_sort_scatter"),
            "the scatter has a twin instead"
        );
        assert_eq!(Sampling::none().blocks("k", 1 << 20), None);
    }

    #[test]
    fn samples_are_spread_runs_plus_the_last_block() {
        let s = Sampling::default();
        let mut b = s.blocks("k", 1000).unwrap();
        assert_eq!(b.len(), 17);
        // Listed gap-halving: stratum 0, then the middle, then the quarters.
        assert_eq!(&b[..4], &[0, 500, 250, 750]);
        b.sort_unstable();
        assert_eq!((b[0], b[1], *b.last().unwrap()), (0, 62, 999));
        // Runs grow with the grid, up to max_run.
        assert_eq!(s.blocks("k", 8192).unwrap().len(), 17 * 2);
        assert_eq!(s.blocks("k", 1 << 24).unwrap().len(), 17 * 4);
    }

    #[test]
    fn known_working_blocks_are_sampled_as_their_own_stratum() {
        let s = Sampling::default();
        let working: Vec<u32> = (0..64).map(|i| i * 512 + 7).collect();
        let c = s.choose(&SampleQuery {
            entry: "moe_ffn_up",
            grid_blocks: 32_768,
            working: Some(&working),
        });
        let (blocks, weights) = (c.blocks.unwrap(), c.weights.unwrap());
        assert!(c.stop.is_some());
        // Alternating idle and working blocks, so a stop leaves both.
        assert!(!working.contains(&blocks[0]) && working.contains(&blocks[1]));
        // The working stratum (64 blocks) is sampled as a grid of 64, the idle one by 16.
        let busy: Vec<(u32, f64)> = blocks
            .iter()
            .zip(&weights)
            .filter(|(b, _)| working.contains(b))
            .map(|(&b, &w)| (b, w))
            .collect();
        assert_eq!(busy.len(), 17);
        assert!(busy.iter().all(|&(_, w)| (w - 64.0 / 17.0).abs() < 1e-12));
        assert_eq!(blocks.len() - busy.len(), 16);
        let total: f64 = weights.iter().sum();
        assert!((total - 32_768.0).abs() < 1e-6, "{total}");
    }

    #[test]
    fn a_grid_twice_as_big_runs_the_blocks_of_the_same_tokens() {
        // Stage 1 has two blocks per (token, head), the grid select one.
        let s = Sampling::default();
        for tokens in [64u32, 100, 4096] {
            let select = s.blocks("product_key_topk_grid", tokens).unwrap();
            let stage1 = s.blocks("product_key_topk_stage1", 2 * tokens).unwrap();
            assert_eq!(stage1.len(), 2 * select.len());
            for t in select {
                assert!(
                    stage1.contains(&(2 * t)) && stage1.contains(&(2 * t + 1)),
                    "token {t}"
                );
            }
        }
        // Whole grids stay whole together.
        assert_eq!(s.blocks("product_key_topk_stage1", 32), None);
        assert_eq!(s.blocks("product_key_topk_grid", 16), None);
    }
}
