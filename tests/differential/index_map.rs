//! `index_map` on the GPUs: exact equality with the reference, windows near 2^32 included.

use crate::common::{device_proptests, device_tests, on};
use proptest::prelude::*;
use ultramem::reference::index_map as reference;
use ultramem::*;

fn case() -> impl Strategy<Value = (Vec<u32>, Option<Vec<u32>>, IndexMapConfig)> {
    let map = prop_oneof![
        (1u64..50).prop_flat_map(|tot| (1..=tot, 0..tot, Just(tot))),
        // Windows and tables at the u32 limit: the sum passes 2^32.
        ((1u64 << 32) - 5..=(1u64 << 32)).prop_flat_map(|tot| (
            (1u64 << 31)..=tot,
            (tot - 7)..tot,
            Just(tot)
        )),
    ]
    .prop_map(|(l, o, t)| IndexMapConfig {
        rows_per_layer: l,
        offset: o,
        total_rows: t,
    });
    (0usize..700, any::<bool>(), map).prop_flat_map(|(len, shuffled, map)| {
        let table_len = 1 + len % 97;
        let idx = if shuffled {
            proptest::collection::vec(0..table_len as u32, len).boxed()
        } else {
            proptest::collection::vec(any::<u32>(), len).boxed()
        };
        let shuffle = if shuffled {
            proptest::option::of(proptest::collection::vec(any::<u32>(), table_len)).boxed()
        } else {
            Just(None).boxed()
        };
        (idx, shuffle, Just(map))
    })
}

fn run(
    dev: &Device,
    idx: &[u32],
    shuffle: Option<&Vec<u32>>,
    map: IndexMapConfig,
) -> ultramem::Result<Vec<u32>> {
    let idx_t = on(dev, &[idx.len()], idx);
    let sh = shuffle.map(|s| on(dev, &[s.len()], s));
    index_map(&IndexMapArgs {
        idx: &idx_t,
        shuffle: sh.as_ref(),
        map,
    })?
    .to_vec()
}

fn check(
    dev: &Device,
    idx: &[u32],
    shuffle: Option<&Vec<u32>>,
    map: IndexMapConfig,
) -> std::result::Result<(), TestCaseError> {
    let d = IndexMapDims {
        len: idx.len(),
        shuffle_len: shuffle.map(Vec::len),
        map,
    };
    let want = reference::forward(&d, idx, shuffle.map(|s| s.as_slice()));
    let got = run(dev, idx, shuffle, map);
    match (got, want) {
        (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
        (Err(g), Err(w)) => prop_assert_eq!(g.to_string(), w.to_string()),
        (g, w) => prop_assert!(
            false,
            "{} gave {:?}, the reference {:?}",
            dev,
            g.err(),
            w.err()
        ),
    }
    Ok(())
}

fn check_bad_index(dev: &Device) {
    let e = run(
        dev,
        &[0, 1, 9, 2],
        Some(&vec![5, 6, 7]),
        IndexMapConfig::plain(8),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 2,
                index: 9,
                bound: 3,
                ..
            }
        ),
        "{e}"
    );
}

device_proptests!(matches_reference, 48, (idx, shuffle, map) in case(), |dev| {
    check(dev, &idx, shuffle.as_ref(), map)?;
});

device_tests!(rejects_index_past_shuffle_table, |dev| {
    check_bad_index(dev);
});

/// A shuffle of exactly 2^32 entries (16 GiB, zero-filled lazily by the OS, so only the pages
/// read are ever touched) was passed to the kernels as length 0 — "no shuffle" — and `ν` came
/// back unshuffled. Every u32 `ν` is inside such a table.
#[test]
fn a_shuffle_of_2_32_entries_is_read_in_ptx_interpreter() {
    let dev = Device::ptx_interp().unwrap();
    let shuffle = match Tensor::<u32>::zeros(&dev, &[1 << 32]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED: no 16 GiB of address space for the shuffle table: {e}");
            return;
        }
    };
    let idx = Tensor::from_vec(&dev, &[3], vec![5u32, 7, u32::MAX]).unwrap();
    let out = index_map(&IndexMapArgs {
        idx: &idx,
        shuffle: Some(&shuffle),
        map: IndexMapConfig::plain(10),
    })
    .unwrap();
    assert_eq!(out.to_vec().unwrap(), [0, 0, 0], "every shuffle entry is 0");
}
