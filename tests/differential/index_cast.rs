//! `index_cast` on the GPUs: `narrow_indices` and `widen_indices` equal the reference exactly,
//! errors included (the first bad value, as written). Values are drawn around every edge the
//! narrowing checks: 0, the bound, 2^31 (int32's sign), 2^32 (the u32 limit) and negatives,
//! at lengths around the 256-entry block.

use crate::common::device_proptests;
use proptest::prelude::*;
use ultramem::reference::index_cast as reference;
use ultramem::*;

fn bound() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..300,
        Just(1 << 31),
        (1u64 << 32) - 3..=(1 << 32),
        Just(u64::MAX)
    ]
}

fn value(bound: u64) -> impl Strategy<Value = i64> {
    let top = bound.min(1 << 32) as i64;
    prop_oneof![
        12 => 0..top,
        1 => Just(top - 1),
        1 => Just(top),
        1 => Just(1i64 << 31),
        1 => Just(1i64 << 32),
        1 => Just((1i64 << 32) + 1),
        1 => Just(-1i64),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ]
}

fn case() -> impl Strategy<Value = (Vec<i64>, u64)> {
    (
        prop_oneof![0usize..5, 250usize..262, 500usize..800],
        bound(),
        0u8..4,
    )
        .prop_flat_map(|(len, bound, clean)| {
            // A quarter of the cases hold only in-range values, so the results are compared
            // too, not only the first error.
            let top = bound.min(1 << 32) as i64;
            let values = if clean == 0 {
                proptest::collection::vec(0..top, len).boxed()
            } else {
                proptest::collection::vec(value(bound), len).boxed()
            };
            (values, Just(bound))
        })
}

fn check_narrow(
    dev: &Device,
    values: &[i64],
    bound: u64,
) -> std::result::Result<(), TestCaseError> {
    let want = reference::narrow("index_cast", "values", values, bound);
    let got = narrow_indices(dev, &[values.len()], values, bound).and_then(|t| t.to_vec());
    match (got, want) {
        (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
        (Err(g), Err(w)) => prop_assert_eq!(g.to_string(), w.to_string()),
        (g, w) => prop_assert!(false, "{} gave {:?}, the reference {:?}", dev, g, w),
    }
    Ok(())
}

fn check_widen(dev: &Device, values: &[u32]) -> std::result::Result<(), TestCaseError> {
    let t = Tensor::from_slice(dev, &[values.len()], values).unwrap();
    let want = reference::widen("index_cast", values).unwrap();
    prop_assert_eq!(widen_indices(&t).unwrap(), want);
    Ok(())
}

device_proptests!(matches_reference, 48, (values, bound) in case(), |dev| {
    check_narrow(dev, &values, bound)?;
    let narrow: Vec<u32> = values.iter().map(|&v| v as u32).collect();
    check_widen(dev, &narrow)?;
});
