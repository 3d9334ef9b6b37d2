//! `row_sort` on the GPUs: the order must equal the reference's stable order exactly.

use crate::common::{cuda, on, wgpu};
use crate::interp::Interp;
use crate::runner::Runner;
use proptest::prelude::*;
use ultramem::{row_sort, Device, RowSortArgs, RowSortDims};

fn check(r: Runner<'_>, rows: &[u32], n: usize) -> std::result::Result<(), TestCaseError> {
    let cpu = Device::cpu();
    let want = row_sort(&RowSortArgs {
        rows: &on(&cpu, &[rows.len()], rows),
        n_rows: n,
    })
    .unwrap()
    .to_vec()
    .unwrap();
    let got = match r {
        Runner::Device(dev) => row_sort(&RowSortArgs {
            rows: &on(dev, &[rows.len()], rows),
            n_rows: n,
        })
        .unwrap()
        .to_vec()
        .unwrap(),
        Runner::Interp => {
            let ip = Interp::new();
            let buf = ip.upload_pod(rows);
            let d = RowSortDims {
                len: rows.len(),
                rows: n,
            };
            let order =
                ultramem::gpu::row_sort::sort(&ip, &d, &buf).unwrap_or_else(|e| panic!("{e}"));
            ip.read_u32(&order, rows.len())
        }
    };
    prop_assert_eq!(got, want);
    Ok(())
}

/// Rows below N with heavy duplication, some past N (they sort last), and lengths around the
/// 256-entry tile.
fn case() -> impl Strategy<Value = (Vec<u32>, usize)> {
    (
        1usize..70_000,
        prop_oneof![0usize..20, 250usize..262, 500usize..1100],
    )
        .prop_flat_map(|(n, len)| {
            let row =
                prop_oneof![8 => 0..n as u32, 1 => Just(n as u32 - 1), 1 => n as u32..u32::MAX];
            (proptest::collection::vec(row, len), Just(n))
        })
}

proptest! {
    #![proptest_config(crate::common::cases(32))]

    #[test]
    fn row_sort_matches_reference_on_wgpu((rows, n) in case()) {
        if let Some(dev) = wgpu() { check(Runner::Device(dev), &rows, n)?; }
    }

    #[test]
    fn row_sort_matches_reference_on_cuda((rows, n) in case()) {
        if let Some(dev) = cuda() { check(Runner::Device(dev), &rows, n)?; }
    }

    #[test]
    fn row_sort_matches_reference_in_ptx_interpreter((rows, n) in case()) {
        check(Runner::Interp, &rows, n)?;
    }
}
