//! The cost model: the bytes an op or a layer must move at least and the FLOPs it does
//! (Part I §I.5, Part II §6), so a measured time can be held against the card's ceilings.
//!
//! Sparse rows are counted once per distinct row touched. Under uniform, independent selection
//! of `c` of `P` rows by each of `B` tokens the expected count is
//! `U(P, c, B) = P·(1 − (1 − c/P)^B)` ([`expected_distinct`]); with real indices use
//! [`count_distinct`].
//!
//! ```
//! use ultramem::cost::{MoeShape, UltraMemV2Shape};
//! // The spec's worked example: one UltraMemV2-1B/7B layer vs one OLMoE-1B/7B layer, bf16, B = 1.
//! // Weights read per step: ≈15.6 MB vs ≈100.9 MB.
//! let mem = UltraMemV2Shape::paper_1b_7b().step_bytes(1, 2);
//! let moe = MoeShape::olmoe_1b_7b().step_bytes(1, 2);
//! assert!((mem.weights() / 1e6 - 15.6).abs() < 0.1);
//! assert!((moe.weights() / 1e6 - 100.9).abs() < 0.1);
//! ```

use std::ops::Add;

/// Bytes of an `f32` (queries, scores, weights, outputs, gradients).
pub const F32_BYTES: usize = 4;
/// Bytes of a `u32` index.
pub const U32_BYTES: usize = 4;

/// Bytes moved and FLOPs done by one call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// Bytes read from device memory at least.
    pub bytes_read: f64,
    /// Bytes written at least.
    pub bytes_written: f64,
    /// Floating-point operations (a multiply-add counts 2).
    pub flops: f64,
}

impl Cost {
    /// Bytes read plus written.
    pub fn bytes(&self) -> f64 {
        self.bytes_read + self.bytes_written
    }

    /// Achieved bandwidth in GB/s (1e9 bytes) for a measured time.
    pub fn gbytes_per_s(&self, seconds: f64) -> f64 {
        self.bytes() / seconds / 1e9
    }

    /// Achieved GFLOP/s for a measured time.
    pub fn gflops_per_s(&self, seconds: f64) -> f64 {
        self.flops / seconds / 1e9
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
            flops: self.flops + o.flops,
        }
    }
}

/// `U(P, c, B) = P·(1 − (1 − c/P)^B)`: expected distinct items when each of `b` draws picks `c`
/// of `p` items uniformly. Bounded by `min(B·c, P)`; 0 when `p` or `b` is 0.
pub fn expected_distinct(p: f64, c: f64, b: f64) -> f64 {
    if p <= 0.0 || b <= 0.0 {
        return 0.0;
    }
    let keep = (1.0 - (c / p).min(1.0)).max(0.0);
    p * (1.0 - keep.powf(b))
}

/// The number of distinct values in `rows`.
pub fn count_distinct(rows: &[u32]) -> usize {
    let mut v = rows.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// Bytes one layer reads and writes in one forward step over `B` tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepBytes {
    /// Dense weights, read once per step.
    pub dense: f64,
    /// Sparse rows (value rows or experts), each distinct one read once.
    pub sparse: f64,
    /// Index-side tables (the shuffle table's touched entries).
    pub index: f64,
    /// Activations in and out (`2·B·D` elements).
    pub activations: f64,
    /// Tokens in the step.
    pub tokens: usize,
}

impl StepBytes {
    /// Weight bytes only (dense + sparse): what Part II §6.1's worked example counts.
    pub fn weights(&self) -> f64 {
        self.dense + self.sparse
    }

    /// All bytes of the step.
    pub fn total(&self) -> f64 {
        self.dense + self.sparse + self.index + self.activations
    }

    /// Bytes per token.
    pub fn per_token(&self) -> f64 {
        self.total() / self.tokens.max(1) as f64
    }
}

/// The shape of one UltraMemV2 layer for the cost model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UltraMemV2Shape {
    /// Model width `D`.
    pub d_model: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Query/key width `Dk`.
    pub dk: usize,
    /// Tucker rank `R`.
    pub rank: usize,
    /// Cores `Cn`.
    pub cores: usize,
    /// Sub-keys per side `n`.
    pub n: usize,
    /// Stage-1 width `K1`.
    pub k1: usize,
    /// Values per head `m`.
    pub m: usize,
    /// Pre-value width `Dp`.
    pub dp: usize,
    /// Value width `Dv`.
    pub dv: usize,
    /// Value-table rows `N`.
    pub table_rows: usize,
    /// Whether a shuffle table of `n²` entries is read.
    pub shuffle: bool,
}

impl UltraMemV2Shape {
    /// UltraMemV2-1B/7B (Part II §4.1): D 2048, Dk 512, n 528, R = Cn = 2, m = K1 = 128, Dv 768,
    /// Dp 384, N = 528².
    pub fn paper_1b_7b() -> UltraMemV2Shape {
        UltraMemV2Shape {
            d_model: 2048,
            heads: 1,
            dk: 512,
            rank: 2,
            cores: 2,
            n: 528,
            k1: 128,
            m: 128,
            dp: 384,
            dv: 768,
            table_rows: 528 * 528,
            shuffle: true,
        }
    }

    /// UltraMemV2-227M/1.2B (Part II §4.1): D 768, Dk 192, n 360, m = K1 = 32, Dv = Dp = 192.
    pub fn paper_227m_1_2b() -> UltraMemV2Shape {
        UltraMemV2Shape {
            d_model: 768,
            heads: 1,
            dk: 192,
            rank: 2,
            cores: 2,
            n: 360,
            k1: 32,
            m: 32,
            dp: 192,
            dv: 192,
            table_rows: 360 * 360,
            shuffle: true,
        }
    }

    /// Dense parameters: `2R·Dk·D·H + 2R·n·Dk·H + Cn·R²·H + 2·Dk + Dp·D + Dv·D` (query
    /// projection, keys, cores, the two norm gains, `W_pre`, `W_out`).
    pub fn dense_params(&self) -> usize {
        let (d, h, dk, r) = (self.d_model, self.heads, self.dk, self.rank);
        2 * r * dk * d * h
            + 2 * r * self.n * dk * h
            + self.cores * r * r * h
            + 2 * dk
            + self.dp * d
            + self.dv * d
    }

    /// Sparse parameters: `N·(Dp + Dv)`.
    pub fn sparse_params(&self) -> usize {
        self.table_rows * (self.dp + self.dv)
    }

    /// Bytes of one forward step over `tokens` tokens with `b`-byte weights and activations.
    pub fn step_bytes(&self, tokens: usize, b: usize) -> StepBytes {
        let slots = (self.heads * self.m) as f64;
        let bt = tokens as f64;
        let rows = expected_distinct(self.table_rows as f64, slots, bt);
        let index = if self.shuffle {
            expected_distinct((self.n * self.n) as f64, slots, bt) * U32_BYTES as f64
        } else {
            0.0
        };
        StepBytes {
            dense: (self.dense_params() * b) as f64,
            sparse: rows * ((self.dp + self.dv) * b) as f64,
            index,
            activations: 2.0 * bt * (self.d_model * b) as f64,
            tokens,
        }
    }

    /// FLOPs per token (Part II §6.2): query projection, scores, proxy, grid, `W_pre`, `α`,
    /// gather, `W_out`.
    pub fn flops_per_token(&self) -> f64 {
        let (d, h, dk, r, n) = (
            self.d_model as f64,
            self.heads as f64,
            self.dk as f64,
            self.rank as f64,
            self.n as f64,
        );
        let slots = (self.heads * self.m) as f64;
        let k1sq = (self.k1 * self.k1) as f64;
        h * (2.0 * d * 2.0 * r * dk
            + 4.0 * r * n * dk
            + 4.0 * r * n
            + 2.0 * self.cores as f64 * k1sq * (r * r + r))
            + 2.0 * d * self.dp as f64
            + 2.0 * slots * (self.dp + self.dv) as f64
            + 2.0 * self.dv as f64 * d
    }
}

/// The shape of one MoE layer for the cost model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoeShape {
    /// Model width `D`.
    pub d_model: usize,
    /// Routed experts `E`.
    pub experts: usize,
    /// Experts per token `k`.
    pub top_k: usize,
    /// Expert inner width `F_e`.
    pub ffn: usize,
    /// Shared (always-on) experts `S`.
    pub shared: usize,
}

impl MoeShape {
    /// OLMoE-1B/7B: D 2048, 64 experts, top-8, `F_e` 1024, no shared expert.
    pub fn olmoe_1b_7b() -> MoeShape {
        MoeShape {
            d_model: 2048,
            experts: 64,
            top_k: 8,
            ffn: 1024,
            shared: 0,
        }
    }

    /// Parameters: router `D·E` plus `3·D·F_e` per expert, shared ones included.
    pub fn params(&self) -> usize {
        self.d_model * self.experts + (self.experts + self.shared) * 3 * self.d_model * self.ffn
    }

    /// Bytes of one forward step over `tokens` tokens with `b`-byte weights and activations:
    /// dense `b·(D·E + S·3·D·F_e)`, sparse `U(E, k, B)·3·D·F_e·b`.
    pub fn step_bytes(&self, tokens: usize, b: usize) -> StepBytes {
        let expert = (3 * self.d_model * self.ffn * b) as f64;
        let touched = expected_distinct(self.experts as f64, self.top_k as f64, tokens as f64);
        StepBytes {
            dense: (self.d_model * self.experts * b) as f64 + self.shared as f64 * expert,
            sparse: touched * expert,
            index: 0.0,
            activations: 2.0 * tokens as f64 * (self.d_model * b) as f64,
            tokens,
        }
    }

    /// FLOPs per token: router `2·D·E` plus `6·D·F_e` per routed or shared expert.
    pub fn flops_per_token(&self) -> f64 {
        let (d, f) = (self.d_model as f64, self.ffn as f64);
        2.0 * d * self.experts as f64 + (self.top_k + self.shared) as f64 * 6.0 * d * f
    }
}
