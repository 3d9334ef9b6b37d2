//! `index_map`: indices past the shuffle table and windows that do not fit the table.

use ultramem::*;

use crate::cpu;

/// Valid inputs: three virtual indices, a shuffle table of 4 and a plain table of 4 rows.
pub(crate) struct Valid {
    idx: Tensor<u32>,
    shuffle: Tensor<u32>,
}

pub(crate) fn valid() -> Valid {
    Valid {
        idx: cpu(&[3], vec![0u32, 3, 1]),
        shuffle: cpu(&[4], vec![3u32, 1, 0, 2]),
    }
}

impl Valid {
    pub(crate) fn args(&self) -> IndexMapArgs<'_> {
        IndexMapArgs {
            idx: &self.idx,
            shuffle: Some(&self.shuffle),
            map: IndexMapConfig::plain(4),
        }
    }
}

#[test]
fn the_valid_base_is_accepted() {
    let base = valid();
    assert_eq!(
        index_map(&base.args()).unwrap().to_vec().unwrap(),
        vec![3, 2, 1]
    );
}

#[test]
fn rejects_index_past_shuffle_table() {
    let base = valid();
    let idx = cpu(&[3], vec![0u32, 4, 1]);
    let e = index_map(&IndexMapArgs {
        idx: &idx,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IndexOutOfRange {
                arg: "idx",
                position: 1,
                index: 4,
                bound: 4,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_window_starting_at_table_end() {
    let base = valid();
    let e = index_map(&IndexMapArgs {
        map: IndexMapConfig {
            rows_per_layer: 4,
            offset: 8,
            total_rows: 8,
        },
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                arg: "map.offset",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_empty_window() {
    let base = valid();
    let e = index_map(&IndexMapArgs {
        map: IndexMapConfig {
            rows_per_layer: 0,
            offset: 0,
            total_rows: 8,
        },
        ..base.args()
    })
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
}

#[test]
fn rejects_window_wider_than_the_table() {
    let base = valid();
    let e = index_map(&IndexMapArgs {
        map: IndexMapConfig {
            rows_per_layer: 9,
            offset: 0,
            total_rows: 8,
        },
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                arg: "map.rows_per_layer",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_table_with_more_rows_than_u32_indices_reach() {
    let base = valid();
    let e = index_map(&IndexMapArgs {
        map: IndexMapConfig::plain((1 << 32) + 1),
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::SizeOverflow { .. }),
        "u32 rows cannot address past 2^32: {e}"
    );
}
