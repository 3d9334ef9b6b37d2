//! The L2 cache as the model replays it: set-associative, LRU, 32-byte sectors in 128-byte
//! lines (a line's tag holds four sectors, each present or not).
//!
//! Simplifications (stated in the report): one unified cache (the GH100's two partitions and
//! their "far" hits are not modelled), 16 ways with sets indexed by the line address modulo the
//! set count (NVIDIA publishes neither the associativity nor the hash), and no L1: every global
//! access reaches L2 (L1 hits would only lower L2 traffic, never DRAM traffic).

/// Ways per set (an assumption: NVIDIA does not publish the L2 associativity).
pub const WAYS: usize = 16;
/// Bytes per sector: the unit of DRAM and L2 transfers.
pub const SECTOR_BYTES: u64 = 32;
/// Bytes per line: four sectors share a tag.
pub const LINE_BYTES: u64 = 128;

#[derive(Clone, Copy, Debug, Default)]
struct Way {
    /// Line address (byte address / 128) + 1; 0 means empty.
    tag: u64,
    /// Bit i: sector i of the line is present.
    valid: u8,
    /// Last use, for LRU.
    stamp: u64,
}

/// A set-associative LRU sector cache.
#[derive(Clone, Debug)]
pub struct SectorCache {
    sets: Vec<[Way; WAYS]>,
    clock: u64,
}

impl SectorCache {
    /// A cold cache of about `bytes` capacity (at least one set).
    pub fn new(bytes: u64) -> SectorCache {
        let sets = (bytes / LINE_BYTES / WAYS as u64).max(1) as usize;
        SectorCache {
            sets: vec![[Way::default(); WAYS]; sets],
            clock: 0,
        }
    }

    /// Its capacity, bytes.
    pub fn bytes(&self) -> u64 {
        self.sets.len() as u64 * WAYS as u64 * LINE_BYTES
    }

    /// One access to the 32-byte sector `sector` (byte address / 32); whether it hit. A miss
    /// brings the sector in, evicting the least recently used line of its set when full.
    pub fn access(&mut self, sector: u64) -> bool {
        self.clock += 1;
        let line = sector / (LINE_BYTES / SECTOR_BYTES);
        let bit = 1u8 << (sector % (LINE_BYTES / SECTOR_BYTES));
        let index = (line % self.sets.len() as u64) as usize;
        let set = &mut self.sets[index];
        let tag = line + 1;
        let way = match set.iter().position(|w| w.tag == tag) {
            Some(i) => i,
            None => {
                let victim = (0..WAYS)
                    .min_by_key(|&i| (set[i].tag != 0, set[i].stamp))
                    .unwrap_or(0);
                set[victim] = Way {
                    tag,
                    ..Way::default()
                };
                victim
            }
        };
        let w = &mut set[way];
        w.stamp = self.clock;
        let hit = w.valid & bit != 0;
        w.valid |= bit;
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn misses(cache_bytes: u64, stream_bytes: u64, passes: u32) -> u64 {
        let mut c = SectorCache::new(cache_bytes);
        let mut n = 0;
        for _ in 0..passes {
            for s in 0..stream_bytes / SECTOR_BYTES {
                n += u64::from(!c.access(s));
            }
        }
        n
    }

    #[test]
    fn a_stream_larger_than_the_cache_misses_every_time_and_a_small_one_hits() {
        let sectors = |bytes: u64| bytes / SECTOR_BYTES;
        assert_eq!(misses(1 << 20, 4 << 20, 2), 2 * sectors(4 << 20));
        assert_eq!(misses(1 << 20, 256 << 10, 2), sectors(256 << 10));
        // Exactly the capacity fits (each set holds its 16 lines).
        assert_eq!(misses(1 << 20, 1 << 20, 3), sectors(1 << 20));
    }

    #[test]
    fn sectors_of_one_line_are_separate() {
        let mut c = SectorCache::new(1 << 20);
        assert!(!c.access(0));
        assert!(!c.access(1));
        assert!(c.access(0) && c.access(1));
        assert_eq!(c.bytes(), 1 << 20);
    }
}
