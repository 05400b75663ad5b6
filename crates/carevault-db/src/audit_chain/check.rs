//! Finding and naming the breaks of one tenant's chain: pure, over the links as stored.

use std::collections::HashMap;

use super::canonical::{CanonicalRow, GENESIS, row_hash};

/// How a stored row relates to its chain entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowState {
    /// The entry's audit row is gone.
    Missing,
    /// The row hashes to the entry's hash.
    Matches,
    /// The row hashes to something else (kept to see whether it belongs at another place).
    Differs(Box<CanonicalRow>),
}

/// One entry of a tenant's chain as stored, and what its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Sequence number.
    pub seq: i64,
    /// The predecessor's hash, as the entry records it.
    pub prev_hash: [u8; 32],
    /// The entry's hash.
    pub hash: [u8; 32],
    /// The row against the entry.
    pub row: RowState,
}

impl Link {
    /// The link of `row` at `seq` after `prev_hash`, with `hash` as stored.
    pub fn new(seq: i64, prev_hash: [u8; 32], hash: [u8; 32], row: Option<CanonicalRow>) -> Link {
        let row = match row {
            None => RowState::Missing,
            Some(row) if row_hash(&prev_hash, seq, &row) == hash => RowState::Matches,
            Some(row) => RowState::Differs(Box::new(row)),
        };
        Link { seq, prev_hash, hash, row }
    }
}

/// The kind of a break, as `carevault audit verify` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A row no longer hashes to its entry, and belongs at no other place.
    AlteredRow,
    /// A row, or its entry, is gone.
    MissingRow,
    /// An entry that links back past its predecessor (something was put in between), or a row
    /// the sealer should have chained and did not.
    InsertedRow,
    /// Entries or rows that belong at another place of the chain.
    ReorderedRows,
}

impl BreakKind {
    /// The words of the report.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::AlteredRow => "altered row",
            BreakKind::MissingRow => "missing row",
            BreakKind::InsertedRow => "inserted row",
            BreakKind::ReorderedRows => "reordered rows",
        }
    }
}

/// A break: where the chain stops being what was sealed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    /// The first sequence number concerned.
    pub seq: i64,
    /// What happened there.
    pub kind: BreakKind,
}

/// How many differing rows are compared with each other to recognise a swap: beyond that, the
/// first breaks are named and the rest reported as altered (a swap is pairwise, so the cost would
/// be quadratic).
const SWAP_SEARCH_LIMIT: usize = 256;

/// Every break of a tenant's chain, in sequence order (`links` sorted by `seq`), at most one per
/// entry.
pub fn breaks(links: &[Link]) -> Vec<Break> {
    let position: HashMap<[u8; 32], usize> = links.iter().enumerate().map(|(i, l)| (l.hash, i)).collect();
    let differing: Vec<&Link> =
        links.iter().filter(|l| matches!(l.row, RowState::Differs(_))).take(SWAP_SEARCH_LIMIT).collect();
    let mut found = Vec::new();
    let (mut expected_seq, mut expected_prev) = (1, GENESIS);
    for (i, link) in links.iter().enumerate() {
        let kind = if link.seq > expected_seq {
            // Entries removed without renumbering: a gap.
            Some(Break { seq: expected_seq, kind: BreakKind::MissingRow })
        } else if link.seq < expected_seq {
            Some(Break { seq: link.seq, kind: BreakKind::InsertedRow })
        } else if link.prev_hash != expected_prev {
            Some(match position.get(&link.prev_hash) {
                // It links to an earlier entry: the entries between were put in.
                Some(&j) if j < i => Break { seq: links[j + 1].seq, kind: BreakKind::InsertedRow },
                // It links to a later entry: entries swapped.
                Some(_) => Break { seq: link.seq, kind: BreakKind::ReorderedRows },
                // Its predecessor is nowhere: removed (and the rest renumbered).
                None => Break { seq: link.seq, kind: BreakKind::MissingRow },
            })
        } else {
            match &link.row {
                RowState::Matches => None,
                RowState::Missing => Some(Break { seq: link.seq, kind: BreakKind::MissingRow }),
                RowState::Differs(row) => {
                    let elsewhere = differing
                        .iter()
                        .any(|other| other.seq != link.seq && row_hash(&other.prev_hash, other.seq, row) == other.hash);
                    let kind = if elsewhere { BreakKind::ReorderedRows } else { BreakKind::AlteredRow };
                    Some(Break { seq: link.seq, kind })
                }
            }
        };
        found.extend(kind);
        (expected_seq, expected_prev) = (link.seq + 1, link.hash);
    }
    found
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn row(n: u128) -> CanonicalRow {
        CanonicalRow {
            tenant_id: Uuid::from_u128(1),
            id: Uuid::from_u128(100 + n),
            created_at_micros: 1_764_000_000_000_000 + n as i64,
            user_id: None,
            action: "document.read".into(),
            resource_type: "document".into(),
            resource_id: Uuid::from_u128(7),
            ip_address: None,
            user_agent: None,
            metadata: Some("{}".into()),
        }
    }

    /// A sealed chain of `n` rows, as (seq, prev, hash, row).
    fn sealed(n: u128) -> Vec<(i64, [u8; 32], [u8; 32], CanonicalRow)> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|k| {
                let hash = row_hash(&prev, k as i64, &row(k));
                let entry = (k as i64, prev, hash, row(k));
                prev = hash;
                entry
            })
            .collect()
    }

    fn links(entries: &[(i64, [u8; 32], [u8; 32], CanonicalRow)]) -> Vec<Link> {
        entries.iter().map(|(s, p, h, r)| Link::new(*s, *p, *h, Some(r.clone()))).collect()
    }

    fn first(entries: &[(i64, [u8; 32], [u8; 32], CanonicalRow)]) -> Option<(i64, BreakKind)> {
        breaks(&links(entries)).first().map(|b| (b.seq, b.kind))
    }

    #[test]
    fn an_untouched_chain_has_no_break() {
        assert_eq!(first(&sealed(50)), None);
    }

    #[test]
    fn an_edited_row_is_an_altered_row() {
        let mut chain = sealed(10);
        chain[4].3.action = "document.update".into();
        assert_eq!(first(&chain), Some((5, BreakKind::AlteredRow)));
    }

    #[test]
    fn a_deleted_row_is_a_missing_row_with_or_without_its_entry_and_renumbering() {
        let mut row_gone = links(&sealed(10));
        row_gone[4].row = RowState::Missing;
        assert_eq!(breaks(&row_gone)[0], Break { seq: 5, kind: BreakKind::MissingRow });

        let mut gap = sealed(10);
        gap.remove(4);
        assert_eq!(first(&gap), Some((5, BreakKind::MissingRow)));

        let mut renumbered = sealed(10);
        renumbered.remove(4);
        for entry in &mut renumbered[4..] {
            entry.0 -= 1;
        }
        assert_eq!(first(&renumbered), Some((5, BreakKind::MissingRow)));
    }

    #[test]
    fn a_forged_row_between_two_is_an_inserted_row() {
        let mut chain = sealed(10);
        let forged = row(99);
        let hash = row_hash(&chain[3].2, 5, &forged);
        chain.insert(4, (5, chain[3].2, hash, forged));
        for entry in &mut chain[5..] {
            entry.0 += 1;
        }
        assert_eq!(first(&chain), Some((5, BreakKind::InsertedRow)));
    }

    #[test]
    fn swapped_entries_or_swapped_rows_are_reordered_rows() {
        let mut entries = sealed(10);
        entries.swap(3, 6);
        let (a, b) = (entries[3].0, entries[6].0);
        (entries[3].0, entries[6].0) = (b, a);
        assert_eq!(first(&entries), Some((4, BreakKind::ReorderedRows)));

        let mut rows = sealed(10);
        let (a, b) = (rows[3].3.clone(), rows[6].3.clone());
        (rows[3].3, rows[6].3) = (b, a);
        assert_eq!(first(&rows), Some((4, BreakKind::ReorderedRows)));
    }
}
