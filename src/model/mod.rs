//! A performance model of this crate's PTX kernels on H100 and H200, built on the PTX
//! interpreter (cargo feature `model`). It is a **model**: every figure it gives is a
//! prediction, never a measurement, until `scripts/gpu-check.sh` has held it against a card.
//!
//! How a prediction is made:
//! 1. The op runs on a profiling interpreter ([`Model::device`]): each launch runs a sample of
//!    its blocks ([`sample`]) and the interpreter counts, per block, warp-level issues by
//!    instruction class, every warp-level global access with its 32-byte sectors, shared-memory
//!    wavefronts, the bytes a warp has in flight when it waits on a load, and a latency-only
//!    clock simulation's critical path (`ptx_interp::profile`).
//! 2. [`launch`] scales the sample to the grid and replays the global accesses through an L2
//!    model ([`cache`]) for DRAM bytes.
//! 3. [`compile`] runs `ptxas -v` for registers and shared memory (hence [`occupancy`]) and
//!    `cuobjdump -sass` for the SASS/PTX instruction ratio that turns PTX issues into the
//!    instructions the card runs.
//! 4. [`time`] takes the largest of the issue, DRAM, L2, shared-memory, bytes-in-flight and
//!    critical-path times and adds the launch overhead; an op is the sum of its launches,
//!    copies and read-backs ([`Model::profile`]).
//!
//! The card parameters, each with its public source, are in [`card`].
//!
//! ```no_run
//! use ultramem::model::{Card, Model};
//! use ultramem::ops::rmsnorm::{rmsnorm, RmsNormArgs};
//! use ultramem::Tensor;
//!
//! let model = Model::new(Card::h200());
//! let op = model.profile(
//!     |dev| {
//!         Ok((
//!             Tensor::from_vec(dev, &[4096, 512], vec![1.0f32; 4096 * 512])?,
//!             Tensor::from_vec(dev, &[512], vec![1.0f32; 512])?,
//!         ))
//!     },
//!     |_, (x, gamma)| {
//!         rmsnorm(&RmsNormArgs { x, gamma, eps: 1e-6, repeat: 1 })?;
//!         Ok(())
//!     },
//! )?;
//! println!("predicted {:.1} us", op.seconds() * 1e6);
//! # Ok::<(), ultramem::Error>(())
//! ```

pub mod cache;
pub mod card;
pub mod compile;
pub mod counts;
pub mod launch;
pub mod occupancy;
mod op;
pub mod sample;
pub mod time;
pub mod twin;

pub use card::Card;
pub use counts::LaunchCounts;
pub use op::{KernelMemory, LaunchPrediction, Model, OpPrediction, Recorded, Step};
pub use sample::Sampling;
pub use time::{Limit, Prediction};
