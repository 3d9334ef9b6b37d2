//! Host twins of the kernels that write indices or orders other launches read: the row sort's
//! scatter pass and the top-k backward's row lists. A profiling device runs only a sample of
//! such a launch's blocks (their counts), then its twin writes the launch's whole output as the
//! kernel would, so that the launches after it read real indices (the issue's "fill its buffers
//! from the reference"). Running those kernels whole in the interpreter would take minutes at
//! T = 4096; their twins take milliseconds. `tests` hold every twin equal to its kernel.
//!
//! Each twin follows the kernel file's own statement of its output (quoted below) and only the
//! index outputs: values that feed arithmetic only (the top-k backward's weights) are left as
//! the sample wrote them, since no kernel's addresses or trip counts depend on them.

use ptx_interp::Machine;

/// The blocks of a launch of `entry` that do work, ascending, for the entries where most blocks
/// leave at once (`None` for the others). Three kernels give a block a sorted position `p` and
/// let it work only when `p` heads a run of equal keys in `order` (and the key is valid):
/// - `moe_ffn_up`/`moe_ffn_down` (`kernels/moe_ffn.ptx`: "Only the first sorted position of
///   each expert's run works"): block `p * chunks + chunk`, keys the experts (`>= E` leaves);
///   params `+0 entries +16 experts +20 chunks`, buffers experts 1, order 3;
/// - `weighted_gather_backward_rows` (`kernels/weighted_gather.ptx`: "Only the head of a run of
///   equal rows works"): block `p`, keys the rows (`>= N` leaves); params `+12 table_rows
///   +32 entries`, buffers rows 0, order 4.
pub fn working_blocks(
    entry: &str,
    params: &[u8],
    ptrs: &[u64],
    grid_blocks: u32,
    m: &mut Machine,
) -> Option<Result<Vec<u32>, String>> {
    // (entries offset, key bound offset, chunks offset, keys arg, order arg)
    let layout = match entry {
        "moe_ffn_up" | "moe_ffn_down" => (0, 16, Some(20), 1, 3),
        "weighted_gather_backward_rows" => (32, 12, None, 0, 4),
        _ => return None,
    };
    Some(run_heads(params, ptrs, grid_blocks, m, layout))
}

fn run_heads(
    params: &[u8],
    ptrs: &[u64],
    grid_blocks: u32,
    m: &mut Machine,
    (entries_at, bound_at, chunks_at, keys_arg, order_arg): (
        usize,
        usize,
        Option<usize>,
        usize,
        usize,
    ),
) -> Result<Vec<u32>, String> {
    let entries = word(params, entries_at)? as usize;
    let bound = word(params, bound_at)?;
    let chunks = match chunks_at {
        Some(at) => word(params, at)?,
        None => 1,
    };
    let order = read_u32s(m, pointer(ptrs, order_arg, "order")?, entries)?;
    let keys = read_u32s(m, pointer(ptrs, keys_arg, "keys")?, entries)?;
    let key_at = |p: usize| keys.get(order[p] as usize).copied().unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for p in 0..entries {
        let key = key_at(p);
        if key < bound && (p == 0 || key_at(p - 1) != key) {
            let first = p as u64 * u64::from(chunks);
            out.extend(
                (first..first + u64::from(chunks))
                    .filter(|&b| b < u64::from(grid_blocks))
                    .map(|b| b as u32),
            );
        }
    }
    Ok(out)
}

/// The entries that have a twin.
pub fn has_twin(entry: &str) -> bool {
    matches!(entry, "row_sort_scatter" | "product_key_topk_backward_prep")
}

fn word(params: &[u8], at: usize) -> Result<u32, String> {
    params
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("parameter block too short for offset {at}"))
}

fn read_u32s(m: &mut Machine, addr: u64, len: usize) -> Result<Vec<u32>, String> {
    let bytes = m.read(addr, len * 4)?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

fn pointer(ptrs: &[u64], i: usize, name: &str) -> Result<u64, String> {
    match ptrs.get(i) {
        Some(&p) if p != 0 => Ok(p),
        _ => Err(format!("{name}: no buffer at argument {i}")),
    }
}

/// Writes the whole output of a launch of `entry` (one [`has_twin`] says has a twin) from its
/// parameter block and buffer addresses, as the kernel would.
///
/// # Errors
/// An argument the kernel needs is missing or a buffer is too small.
pub fn complete(entry: &str, params: &[u8], ptrs: &[u64], m: &mut Machine) -> Result<(), String> {
    match entry {
        "row_sort_scatter" => row_sort_scatter(params, ptrs, m),
        "product_key_topk_backward_prep" => topk_backward_rows(params, ptrs, m),
        other => Err(format!("no twin for {other}")),
    }
}

/// `kernels/row_sort.ptx`: "entry i of tile w goes to hist[digit*tiles + w] + (number of earlier
/// entries of the tile with the same digit)", keys and values moved together; params
/// `+0 entries +8 shift +12 tiles`; buffers keys_in 1, vals_in 2, keys_out 3, vals_out 4,
/// hist 5 (scanned).
fn row_sort_scatter(params: &[u8], ptrs: &[u64], m: &mut Machine) -> Result<(), String> {
    let entries = word(params, 0)? as usize;
    let shift = word(params, 8)?;
    let tiles = word(params, 12)? as usize;
    let keys = read_u32s(m, pointer(ptrs, 1, "keys_in")?, entries)?;
    let vals = read_u32s(m, pointer(ptrs, 2, "vals_in")?, entries)?;
    let hist = read_u32s(m, pointer(ptrs, 5, "hist")?, 256 * tiles)?;
    let mut keys_out = read_u32s(m, pointer(ptrs, 3, "keys_out")?, entries)?;
    let mut vals_out = read_u32s(m, pointer(ptrs, 4, "vals_out")?, entries)?;
    for w in 0..tiles {
        let mut seen = [0u32; 256];
        for i in w * 256..((w + 1) * 256).min(entries) {
            let digit = ((keys[i] >> shift) & 255) as usize;
            let at = (hist[digit * tiles + w] + seen[digit]) as usize;
            seen[digit] += 1;
            let (k, v) = (
                keys_out
                    .get_mut(at)
                    .ok_or("scatter position past the output")?,
                vals[i],
            );
            *k = keys[i];
            vals_out[at] = v;
        }
    }
    m.write(
        pointer(ptrs, 3, "keys_out")?,
        bytemuck::cast_slice(&keys_out),
    )?;
    m.write(
        pointer(ptrs, 4, "vals_out")?,
        bytemuck::cast_slice(&vals_out),
    )
}

/// `kernels/product_key_topk.ptx`, backward_prep: "e = ((g*2 + side)*R + r)*m + slot;
/// rows[e] = ((h*2 + side)*R + r)*n + row" with `g = t*H + h`, row `i` on side 0 and `j` on
/// side 1 of the chosen `idx = i*n + j` (an index `>= n²` is read as 0); params `+0 tokens
/// +4 heads +8 n +16 rank +28 m`; buffers idx 4, out_idx 6.
fn topk_backward_rows(params: &[u8], ptrs: &[u64], m: &mut Machine) -> Result<(), String> {
    let tokens = word(params, 0)? as usize;
    let heads = word(params, 4)? as usize;
    let n = word(params, 8)?;
    let rank = word(params, 16)? as usize;
    let slots = word(params, 28)? as usize;
    let groups = tokens * heads;
    let idx = read_u32s(m, pointer(ptrs, 4, "idx")?, groups * slots)?;
    let nn = u64::from(n) * u64::from(n);
    let mut rows = vec![0u32; groups * 2 * rank * slots];
    for g in 0..groups {
        let h = (g % heads) as u32;
        for slot in 0..slots {
            let nu = idx[g * slots + slot];
            let nu = if u64::from(nu) < nn { nu } else { 0 };
            let (i, j) = (nu / n, nu % n);
            for side in 0..2u32 {
                for r in 0..rank {
                    let e = ((g * 2 + side as usize) * rank + r) * slots + slot;
                    let row = if side == 0 { i } else { j };
                    rows[e] = ((h * 2 + side) * rank as u32 + r as u32) * n + row;
                }
            }
        }
    }
    m.write(pointer(ptrs, 6, "out_idx")?, bytemuck::cast_slice(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::params::TopkParams;
    use crate::interp_backend::InterpDevice;
    use crate::interp_backend::ProfileOptions;
    use crate::model::sample::Sampling;
    use crate::ops::row_sort::{row_sort, RowSortArgs};
    use crate::registry::KernelId;
    use crate::rng::SplitMix64;
    use crate::{Device, Tensor};
    use ptx_interp::{Module, SourcePart};

    #[test]
    fn the_row_sort_scatter_twin_gives_the_kernels_order() {
        // 3000 entries (12 tiles, the last partial) over 70000 rows: three 8-bit passes.
        let mut rng = SplitMix64::new(5);
        let rows: Vec<u32> = (0..3000).map(|_| rng.below(70_000) as u32).collect();
        let whole = Device::from_ptx_interp(InterpDevice::new());
        let want = row_sort(&RowSortArgs {
            rows: &Tensor::from_slice(&whole, &[rows.len()], &rows).unwrap(),
            table_rows: 70_000,
        })
        .unwrap()
        .to_vec()
        .unwrap();
        // Every scatter pass profiles 2 of its 12 blocks; the twin writes the rest.
        let sampling = Sampling {
            whole_up_to: 0,
            strata: 1,
            max_run: 1,
            ..Sampling::default()
        };
        let sampled = Device::from_ptx_interp(InterpDevice::profiling(ProfileOptions {
            sampler: Box::new(move |q| sampling.choose(q)),
            twin: Some(Box::new(|entry, params, ptrs, machine| {
                has_twin(entry).then(|| complete(entry, params, ptrs, machine))
            })),
            work: None,
            config: ptx_interp::ProfileConfig::default(),
        }));
        let got = row_sort(&RowSortArgs {
            rows: &Tensor::from_slice(&sampled, &[rows.len()], &rows).unwrap(),
            table_rows: 70_000,
        })
        .unwrap()
        .to_vec()
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn the_topk_backward_rows_twin_writes_what_the_kernel_writes() {
        let (tokens, heads, n, rank, m, dim) = (5u32, 2u32, 12u32, 2u32, 7u32, 8u32);
        let groups = tokens * heads;
        let mut rng = SplitMix64::new(9);
        let floats = |rng: &mut SplitMix64, len: u32| -> Vec<u8> {
            let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
            bytemuck::cast_slice(&v).to_vec()
        };
        // Chosen cells, one of them out of range (read as 0 by both).
        let mut idx: Vec<u32> = (0..groups * m).map(|_| rng.below(144) as u32).collect();
        idx[3] = 144;
        let parts = KernelId::ProductKeyTopk
            .ptx_parts()
            .map(|(file, first_line, text)| SourcePart {
                file,
                first_line,
                text,
            });
        let module = Module::parse_parts(&parts).unwrap();
        let mut mach = Machine::new();
        let upload = |mach: &mut Machine, bytes: &[u8]| {
            let a = mach.alloc(bytes.len().max(4));
            mach.write(a, bytes).unwrap();
            a
        };
        let q = upload(&mut mach, &floats(&mut rng, groups * 2 * rank * dim));
        let keys = upload(&mut mach, &floats(&mut rng, heads * 2 * rank * n * dim));
        let dscore = upload(&mut mach, &floats(&mut rng, groups * m * 2));
        let cores = upload(&mut mach, &floats(&mut rng, heads * 2 * rank * rank));
        let idx_buf = upload(&mut mach, bytemuck::cast_slice(&idx));
        let entries = groups * 2 * rank * m;
        let out_idx = mach.alloc((entries * 4) as usize);
        let out_f = mach.alloc(((entries + groups * m * 2 * rank * rank) * 4) as usize);
        let status = mach.alloc(16);
        let params = TopkParams {
            tokens,
            heads,
            n,
            dim,
            rank,
            cores: 2,
            k1: m,
            m,
            grid_x: groups,
            groups,
            offset: entries,
            ..TopkParams::default()
        };
        let ptrs = [q, keys, dscore, cores, idx_buf, 0, out_idx, out_f, status];
        let ptr_bytes: Vec<[u8; 8]> = ptrs.iter().map(|p| p.to_le_bytes()).collect();
        let mut args: Vec<&[u8]> = vec![bytemuck::bytes_of(&params)];
        args.extend(ptr_bytes.iter().map(|p| &p[..]));
        mach.launch(
            &module,
            "product_key_topk_backward_prep",
            [groups, 1, 1],
            [256, 1, 1],
            &args,
        )
        .unwrap();
        let want = mach.read(out_idx, (entries * 4) as usize).unwrap();
        mach.write(out_idx, &vec![0xAB; (entries * 4) as usize])
            .unwrap();
        complete(
            "product_key_topk_backward_prep",
            bytemuck::bytes_of(&params),
            &ptrs,
            &mut mach,
        )
        .unwrap();
        assert_eq!(mach.read(out_idx, (entries * 4) as usize).unwrap(), want);
    }

    #[test]
    fn the_work_maps_name_exactly_the_blocks_that_work() {
        use crate::interp_backend::{ProfileOptions, Record, SampleChoice};
        use crate::ops::moe_ffn::{moe_ffn, MoeFfnArgs, MoeRouting};
        use std::sync::{Arc, Mutex};
        // Per launch with a work map: its entry and the map.
        type Maps = Arc<Mutex<Vec<(String, Vec<u32>)>>>;
        let maps: Maps = Arc::default();
        let seen = Arc::clone(&maps);
        let device = Device::from_ptx_interp(InterpDevice::profiling(ProfileOptions {
            sampler: Box::new(move |q| {
                if let Some(w) = q.working {
                    seen.lock().unwrap().push((q.entry.to_string(), w.to_vec()));
                }
                SampleChoice::default()
            }),
            twin: None,
            work: Some(Box::new(working_blocks)),
            config: ptx_interp::ProfileConfig::default(),
        }));
        // 9 tokens x top-2 of 5 experts (one expert unused), D 16, F 20 (two up chunks).
        let (t, e, k, d, f) = (9usize, 5usize, 2usize, 16usize, 20usize);
        let mut rng = SplitMix64::new(3);
        let experts: Vec<u32> = (0..t * k).map(|i| [0, 2, 3, 4, 2, 0][i % 6]).collect();
        let x: Vec<f32> = (0..t * d).map(|_| rng.normal() as f32).collect();
        let w = |n: usize| -> Vec<f32> { (0..n).map(|i| (i % 7) as f32 * 0.01).collect() };
        let tensor = |shape: &[usize], v: Vec<f32>| Tensor::from_vec(&device, shape, v).unwrap();
        let out = moe_ffn(&MoeFfnArgs {
            x: &tensor(&[t, d], x),
            routing: MoeRouting::Explicit {
                experts: &Tensor::from_vec(&device, &[t, k], experts).unwrap(),
                gates: &tensor(&[t, k], vec![0.5; t * k]),
            },
            w1: &tensor(&[e, f, d], w(e * f * d)),
            w3: &tensor(&[e, f, d], w(e * f * d)),
            w2: &tensor(&[e, d, f], w(e * d * f)),
        });
        out.unwrap();
        // A deterministic gather backward: its rows pass has one block per sorted slot.
        use crate::ops::weighted_gather::{weighted_gather_backward, WeightedGatherArgs};
        let rows: Vec<u32> = (0..t * 4).map(|i| [3, 1, 3, 7, 1, 3][i % 6]).collect();
        weighted_gather_backward(
            &WeightedGatherArgs {
                rows: &Tensor::from_vec(&device, &[t, 4], rows).unwrap(),
                weights: &tensor(&[t, 4, 1], vec![0.25; t * 4]),
                table: &tensor(&[8, d], w(8 * d)),
            },
            &tensor(&[t, d], vec![1.0; t * d]),
            crate::BackwardMode::Deterministic,
        )
        .unwrap();
        let records = device.as_ptx_interp().unwrap().take_records();
        let maps = maps.lock().unwrap();
        let mut checked = 0;
        for r in &records {
            let Record::Launch(l) = r else { continue };
            let Some((_, working)) = maps.iter().find(|(entry, _)| entry == l.entry) else {
                continue;
            };
            // Idle blocks all take the same short path; working ones execute more.
            let idle = l
                .profile
                .blocks
                .iter()
                .map(|b| b.thread_instructions)
                .min()
                .unwrap();
            let busy: Vec<u32> = l
                .profile
                .blocks
                .iter()
                .filter(|b| b.thread_instructions > idle)
                .map(|b| b.block)
                .collect();
            assert_eq!(&busy, working, "{}", l.entry);
            assert!(!busy.is_empty() && busy.len() < l.profile.blocks.len());
            checked += 1;
        }
        assert_eq!(
            checked, 3,
            "moe_ffn_up, moe_ffn_down, weighted_gather_backward_rows"
        );
    }
}
