//! An op (or any closure of device work) run on a profiling interpreter and predicted launch by
//! launch: [`Model::profile`].

use std::collections::HashMap;

use std::collections::BTreeMap;

use ptx_interp::{Latencies, Machine, Module, ProfileConfig};

use super::card::Card;
use super::compile::{resources, EntryResources};
use super::counts::LaunchCounts;
use super::launch::OpMemory;
use super::occupancy::{occupancy, Occupancy};
use super::sample::Sampling;
use super::time::{predict, Prediction};
use super::twin::{complete, has_twin, working_blocks};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::interp_backend::{InterpDevice, ProfileOptions, Record};
use crate::registry::KernelId;

/// The model: a card, how big launches are sampled, and how launches are issued.
#[derive(Clone, Debug)]
pub struct Model {
    /// The card.
    pub card: Card,
    /// Which blocks of a big grid the interpreter runs.
    pub sampling: Sampling,
    /// Launches inside a CUDA graph (their lower per-launch cost) instead of one by one.
    pub graph: bool,
}

/// One launch's prediction with everything that went into it.
#[derive(Clone, Debug)]
pub struct LaunchPrediction {
    /// The kernel file's stem (`weighted_gather`), or a test kernel's name.
    pub kernel: String,
    /// The entry.
    pub entry: &'static str,
    /// What the interpreter counted, for the whole grid.
    pub counts: LaunchCounts,
    /// What ptxas reports for the entry.
    pub resources: EntryResources,
    /// Resident blocks per SM.
    pub occupancy: Occupancy,
    /// The time.
    pub prediction: Prediction,
}

/// One step of an op on the device, predicted.
#[derive(Clone, Debug)]
pub enum Step {
    /// A kernel launch.
    Launch(Box<LaunchPrediction>),
    /// A device-to-device copy: bytes and predicted seconds.
    Copy {
        /// Bytes copied.
        bytes: usize,
        /// Predicted seconds.
        seconds: f64,
    },
    /// A blocking read back to the host: bytes and predicted seconds.
    HostRead {
        /// Bytes read.
        bytes: usize,
        /// Predicted seconds.
        seconds: f64,
    },
}

impl Step {
    /// Predicted seconds.
    pub fn seconds(&self) -> f64 {
        match self {
            Step::Launch(l) => l.prediction.seconds,
            Step::Copy { seconds, .. } | Step::HostRead { seconds, .. } => *seconds,
        }
    }

    /// DRAM bytes moved (a copy reads and writes its bytes; a host read moves no DRAM bytes
    /// the model counts).
    pub fn dram_bytes(&self) -> f64 {
        match self {
            Step::Launch(l) => l.counts.dram_bytes(),
            Step::Copy { bytes, .. } => 2.0 * *bytes as f64,
            Step::HostRead { .. } => 0.0,
        }
    }
}

/// An op's predicted steps, in order.
#[derive(Clone, Debug, Default)]
pub struct OpPrediction {
    /// Launches, copies and read-backs in the order the op issued them.
    pub steps: Vec<Step>,
}

impl OpPrediction {
    /// Predicted seconds: the steps one after another (a stream runs them in order).
    pub fn seconds(&self) -> f64 {
        self.steps.iter().map(Step::seconds).sum()
    }

    /// DRAM bytes of every step.
    pub fn dram_bytes(&self) -> f64 {
        self.steps.iter().map(Step::dram_bytes).sum()
    }

    /// The launches.
    pub fn launches(&self) -> impl Iterator<Item = &LaunchPrediction> {
        self.steps.iter().filter_map(|s| match s {
            Step::Launch(l) => Some(&**l),
            _ => None,
        })
    }

    /// Appends another op's steps (a layer is its ops one after another).
    pub fn extend(&mut self, other: OpPrediction) {
        self.steps.extend(other.steps);
    }
}

impl Model {
    /// The model of `card` with the default sampling, launches one by one.
    pub fn new(card: Card) -> Model {
        Model {
            card,
            sampling: Sampling::default(),
            graph: false,
        }
    }

    /// The clock simulation's latencies for this card, cycles.
    pub fn latencies(&self) -> Latencies {
        let c = &self.card;
        let cycles = |x: f64| x.round() as u32;
        Latencies {
            // Assumed (no Hopper measurement found): integer/logic and conversions 4-6 cycles,
            // special functions 16, f64 8, a taken branch 4 — the order the Volta and Turing
            // dissections (Jia et al., arXiv 1804.06826 and 1903.07486) report.
            alu: 4,
            conversion: 6,
            sfu: 16,
            fp64: 8,
            branch: 4,
            fp32: cycles(c.fp32_latency_cycles),
            shared: cycles(c.shared_latency_cycles),
            global_first_touch: cycles(c.dram_latency_cycles),
            global_retouch: cycles(c.l2_latency_cycles),
            global_l1_hit: cycles(c.l1_latency_cycles),
            // An atomic with a result makes a round trip to L2 and back.
            atomic: cycles(c.l2_latency_cycles),
            shuffle: cycles(c.shuffle_latency_cycles),
            barrier: cycles(c.barrier_latency_cycles),
            mma: cycles(c.mma_latency_cycles),
        }
    }

    /// A fresh profiling device for this model.
    pub fn device(&self) -> Device {
        let sampling = self.sampling;
        Device::from_ptx_interp(InterpDevice::profiling(ProfileOptions {
            sampler: Box::new(move |q| sampling.choose(q)),
            twin: Some(Box::new(|entry, params, ptrs, machine| {
                has_twin(entry).then(|| complete(entry, params, ptrs, machine))
            })),
            work: Some(Box::new(working_blocks)),
            config: ProfileConfig {
                blocks: None,
                run_others: false,
                stop: None,
                latency: self.latencies(),
            },
        }))
    }

    /// Runs `setup` (uploads; not predicted) then `run` on a fresh profiling device, and
    /// predicts every launch, copy and read-back `run` issued.
    ///
    /// # Errors
    /// The closures' errors; [`Error::BackendUnavailable`] without ptxas.
    pub fn profile<S>(
        &self,
        setup: impl FnOnce(&Device) -> Result<S>,
        run: impl FnOnce(&Device, &S) -> Result<()>,
    ) -> Result<OpPrediction> {
        self.predict(&self.record(setup, run)?)
    }

    /// [`profile`](Model::profile)'s first half: runs the closures on a profiling device and
    /// keeps what the interpreter counted, to predict on any card whose model
    /// [`counts_like`](Model::counts_like) this one.
    ///
    /// # Errors
    /// The closures' errors.
    pub fn record<S>(
        &self,
        setup: impl FnOnce(&Device) -> Result<S>,
        run: impl FnOnce(&Device, &S) -> Result<()>,
    ) -> Result<Recorded> {
        let device = self.device();
        let interp = device.as_ptx_interp().ok_or_else(|| Error::Backend {
            backend: crate::Backend::PtxInterp,
            source: "a profiling device is an interpreter".into(),
        })?;
        let state = setup(&device)?;
        interp.take_records();
        run(&device, &state)?;
        let records = interp.take_records();
        drop(state);
        Ok(Recorded {
            latencies: self.latencies(),
            sampling: self.sampling,
            records,
            device,
        })
    }

    /// Whether this model's interpreter runs count exactly as `other`'s (same latencies and
    /// sampling), so one [`Recorded`] run serves both.
    pub fn counts_like(&self, other: &Model) -> bool {
        self.latencies() == other.latencies() && self.sampling == other.sampling
    }

    /// Predicts a recorded run on this model's card.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the run was recorded with other latencies or sampling;
    /// [`Error::BackendUnavailable`] without ptxas.
    pub fn predict(&self, recorded: &Recorded) -> Result<OpPrediction> {
        if recorded.latencies != self.latencies() || recorded.sampling != self.sampling {
            return Err(Error::InvalidArgument {
                op: "Model::predict",
                arg: "recorded",
                reason: "the run was recorded for a model with other latencies or sampling".into(),
            });
        }
        let interp = recorded
            .device
            .as_ptx_interp()
            .ok_or_else(|| Error::Backend {
                backend: crate::Backend::PtxInterp,
                source: "a profiling device is an interpreter".into(),
            })?;
        let allocation_of = |addr: u64| interp.allocation_of(addr);
        self.predict_records(&recorded.records, &allocation_of)
    }

    /// Predicts recorded steps (one op: the L2 starts cold).
    ///
    /// # Errors
    /// [`Error::BackendUnavailable`] without ptxas.
    pub fn predict_records(
        &self,
        records: &[Record],
        allocation_of: &dyn Fn(u64) -> Option<(u64, usize)>,
    ) -> Result<OpPrediction> {
        let mut memory = OpMemory::new(self.card.l2_bytes);
        let mut res_cache: HashMap<KernelId, HashMap<String, EntryResources>> = HashMap::new();
        let mut steps = Vec::new();
        for r in records {
            match r {
                Record::Launch(l) => {
                    let per_entry = match res_cache.get(&l.kernel) {
                        Some(m) => m,
                        None => {
                            let m = resources(l.kernel.ptx(), "sm_90")?;
                            res_cache.entry(l.kernel).or_insert(m)
                        }
                    };
                    let res = per_entry.get(l.entry).cloned().unwrap_or_default();
                    let occ = occupancy(&self.card, &res, l.threads);
                    let counts = memory.launch_counts(
                        &l.profile,
                        l.grid_blocks,
                        l.threads,
                        occ.residency(&self.card, res.shared_bytes),
                        l.weights.as_deref(),
                        allocation_of,
                    );
                    steps.push(Step::Launch(Box::new(self.predict_counts(
                        l.kernel.stem(),
                        l.entry,
                        counts,
                        res,
                    ))));
                }
                Record::Copy { bytes } => steps.push(Step::Copy {
                    bytes: *bytes,
                    // A copy-engine or copy-kernel pass: read and write at DRAM bandwidth.
                    seconds: self.launch_seconds()
                        + 2.0 * *bytes as f64 / self.card.dram_bytes_per_s,
                }),
                Record::Download { bytes } => steps.push(Step::HostRead {
                    bytes: *bytes,
                    seconds: self.card.host_read_s,
                }),
                Record::Upload { .. } => {}
            }
        }
        Ok(OpPrediction { steps })
    }

    fn predict_counts(
        &self,
        kernel: &str,
        entry: &'static str,
        counts: LaunchCounts,
        resources: EntryResources,
    ) -> LaunchPrediction {
        let occupancy = occupancy(&self.card, &resources, counts.threads_per_block);
        let prediction = predict(
            &self.card,
            &occupancy,
            &counts,
            resources.sass_per_ptx(),
            self.graph,
        );
        LaunchPrediction {
            kernel: kernel.to_string(),
            entry,
            counts,
            resources,
            occupancy,
            prediction,
        }
    }

    /// Predicts one launch of a kernel that is not one of the crate's (the model's validation
    /// kernels): `source` is a whole PTX module, `setup` allocates and fills its buffers in
    /// `memory` and returns the launch's parameters (each one's raw bytes, in order). The
    /// launch runs `grid_blocks` blocks of `threads` threads, sampled as any other.
    ///
    /// # Errors
    /// A parse or execution error of the kernel; [`Error::BackendUnavailable`] without ptxas.
    pub fn predict_kernel(
        &self,
        name: &str,
        source: &str,
        entry: &'static str,
        grid_blocks: u32,
        threads: u32,
        setup: impl FnOnce(&mut KernelMemory) -> Vec<Vec<u8>>,
    ) -> Result<LaunchPrediction> {
        let fail = |e: String| Error::Backend {
            backend: crate::Backend::PtxInterp,
            source: e.into(),
        };
        let module = Module::parse(name, source).map_err(|e| fail(e.to_string()))?;
        let mut memory = KernelMemory::default();
        let params = setup(&mut memory);
        let params: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
        let config = ProfileConfig {
            blocks: self.sampling.blocks(entry, grid_blocks),
            run_others: false,
            stop: self.sampling.stop_rule(),
            latency: self.latencies(),
        };
        let profile = memory
            .machine
            .launch_profiled(
                &module,
                entry,
                [grid_blocks, 1, 1],
                [threads, 1, 1],
                &params,
                &config,
            )
            .map_err(|e| fail(e.to_string()))?;
        let allocations = &memory.allocations;
        let allocation_of = |addr: u64| {
            let (&start, &bytes) = allocations.range(..=addr).next_back()?;
            (addr < start + bytes as u64).then_some((start, bytes))
        };
        let res = resources(source, "sm_90")?
            .remove(entry)
            .ok_or_else(|| fail(format!("ptxas reports no entry {entry}")))?;
        let occ = occupancy(&self.card, &res, threads);
        let counts = OpMemory::new(self.card.l2_bytes).launch_counts(
            &profile,
            grid_blocks,
            threads,
            occ.residency(&self.card, res.shared_bytes),
            None,
            &allocation_of,
        );
        Ok(self.predict_counts(name, entry, counts, res))
    }

    fn launch_seconds(&self) -> f64 {
        if self.graph {
            self.card.graph_launch_s
        } else {
            self.card.launch_s
        }
    }
}

/// A run on a profiling device ([`Model::record`]): what it issued and the device (for its
/// allocation sizes).
pub struct Recorded {
    latencies: Latencies,
    sampling: Sampling,
    /// The launches, copies and read-backs, in order.
    pub records: Vec<Record>,
    device: Device,
}

/// The interpreter's memory for [`Model::predict_kernel`], with its allocations recorded.
#[derive(Default)]
pub struct KernelMemory {
    machine: Machine,
    allocations: BTreeMap<u64, usize>,
}

impl KernelMemory {
    /// A zeroed allocation of `bytes`: its device address.
    pub fn alloc(&mut self, bytes: usize) -> u64 {
        let addr = self.machine.alloc(bytes);
        self.allocations.insert(addr, bytes);
        addr
    }

    /// An allocation holding `data`: its device address.
    pub fn upload(&mut self, data: &[u8]) -> u64 {
        let addr = self.alloc(data.len());
        self.write(addr, data);
        addr
    }

    /// Writes `data` at `addr`.
    ///
    /// # Panics
    /// If the range is not inside one allocation (a bug in the caller's setup).
    pub fn write(&mut self, addr: u64, data: &[u8]) {
        if let Err(e) = self.machine.write(addr, data) {
            panic!("KernelMemory::write: {e}");
        }
    }
}
