//! `row_sort` on the GPUs: the order must equal the reference's stable order exactly.

use crate::common::{device_proptests, on};
use proptest::prelude::*;
use ultramem::{row_sort, Device, RowSortArgs};

fn check(dev: &Device, rows: &[u32], n: usize) -> std::result::Result<(), TestCaseError> {
    let cpu = Device::cpu();
    let want = row_sort(&RowSortArgs {
        rows: &on(&cpu, &[rows.len()], rows),
        table_rows: n,
    })
    .unwrap()
    .to_vec()
    .unwrap();
    let got = row_sort(&RowSortArgs {
        rows: &on(dev, &[rows.len()], rows),
        table_rows: n,
    })
    .unwrap()
    .to_vec()
    .unwrap();
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

device_proptests!(matches_reference, 32, (rows, n) in case(), |dev| {
    check(dev, &rows, n)?;
});
