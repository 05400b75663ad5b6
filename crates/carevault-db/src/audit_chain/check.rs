//! Finding and naming the breaks of one tenant's chain: pure, over the links as stored.

use std::collections::HashMap;

use super::canonical::{CanonicalRow, GENESIS, row_hash};
use super::checkpoint::{AuditPublicKey, Checkpoint};

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
    /// When it was sealed (microseconds since 1970), as the entry records it.
    pub sealed_at_micros: i64,
    /// The predecessor's hash, as the entry records it.
    pub prev_hash: [u8; 32],
    /// The entry's hash.
    pub hash: [u8; 32],
    /// The row against the entry.
    pub row: RowState,
}

impl Link {
    /// The link of `row` at `seq` after `prev_hash`, sealed at `sealed_at_micros`, with `hash` as
    /// stored.
    pub fn new(
        seq: i64,
        sealed_at_micros: i64,
        prev_hash: [u8; 32],
        hash: [u8; 32],
        row: Option<CanonicalRow>,
    ) -> Link {
        let row = match row {
            None => RowState::Missing,
            Some(row) if row_hash(&prev_hash, seq, sealed_at_micros, &row) == hash => RowState::Matches,
            Some(row) => RowState::Differs(Box::new(row)),
        };
        Link { seq, sealed_at_micros, prev_hash, hash, row }
    }

    /// Whether `row` hashes to this entry's hash, at its place and time.
    fn holds(&self, row: &CanonicalRow) -> bool {
        row_hash(&self.prev_hash, self.seq, self.sealed_at_micros, row) == self.hash
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
    /// The chain ends before a checkpoint's head: its last rows were removed.
    TruncatedTail,
    /// A signed checkpoint's head hash is not the chain's hash at that place (the chain was
    /// rewritten after `seq - 1`, the last place a checkpoint still vouches for), or the
    /// database's copy of a checkpoint kept in the sink is missing or differs.
    CheckpointMismatch,
    /// A checkpoint whose signature fails (or whose key is unknown).
    CheckpointSignature,
    /// Entries of an export after the last place a signed checkpoint vouches for: nothing shows
    /// they are the chain's (offline verification only; the live chain's newest entries wait for
    /// the next checkpoint).
    Unvouched,
}

impl BreakKind {
    /// The words of the report.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::AlteredRow => "altered row",
            BreakKind::MissingRow => "missing row",
            BreakKind::InsertedRow => "inserted row",
            BreakKind::ReorderedRows => "reordered rows",
            BreakKind::TruncatedTail => "truncated tail",
            BreakKind::CheckpointMismatch => "checkpoint does not match",
            BreakKind::CheckpointSignature => "checkpoint signature fails",
            BreakKind::Unvouched => "not vouched for by a checkpoint",
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

/// Every break of a tenant's whole chain, in sequence order (`links` sorted by `seq`), at most
/// one per entry: it must start at 1 after [`GENESIS`].
pub fn breaks(links: &[Link]) -> Vec<Break> {
    breaks_after(links, 1, GENESIS)
}

/// As [`breaks`], for a part of a chain that starts at `first_seq` after `first_prev` (an export
/// of a range trusts its first entry's predecessor; the live chain starts at 1 after
/// [`GENESIS`]).
pub fn breaks_after(links: &[Link], first_seq: i64, first_prev: [u8; 32]) -> Vec<Break> {
    let position: HashMap<[u8; 32], usize> = links.iter().enumerate().map(|(i, l)| (l.hash, i)).collect();
    let differing: Vec<&Link> =
        links.iter().filter(|l| matches!(l.row, RowState::Differs(_))).take(SWAP_SEARCH_LIMIT).collect();
    let mut found = Vec::new();
    let (mut expected_seq, mut expected_prev) = (first_seq, first_prev);
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
                    // Only the first differing rows are compared with each other: beyond them,
                    // every one would cost SWAP_SEARCH_LIMIT hashes.
                    let searched = differing.iter().any(|other| other.seq == link.seq);
                    let elsewhere = searched && differing.iter().any(|other| other.seq != link.seq && other.holds(row));
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

/// The breaks the checkpoints reveal: `stored` are the database's copies, `kept` the sink's.
/// Every checkpoint must be signed by one of `keys`; each of the sink's must be in the database
/// unchanged; no signed head may lie past the chain's head; and the chain must hold, at each
/// signed head, the hash signed there.
///
/// A signed head hash that the chain holds at another place was moved by entries put in or taken
/// out before it: the exact breaks of [`breaks`] name that place, so it adds nothing. A signed
/// head hash the chain holds nowhere means the chain was rewritten (recomputed) after the last
/// checkpoint that still matches: that is reported there, whatever other break a tamperer
/// planted in the same stretch as a decoy (found by the second attacker review).
pub fn checkpoint_breaks(
    links: &[Link],
    stored: &[Checkpoint],
    kept: &[Checkpoint],
    keys: &[AuditPublicKey],
) -> Vec<Break> {
    let mut found = Vec::new();
    for checkpoint in stored.iter().chain(kept).filter(|c| !c.is_signed_by(keys)) {
        found.push(Break { seq: checkpoint.seq, kind: BreakKind::CheckpointSignature });
    }
    for checkpoint in kept.iter().filter(|c| !stored.contains(c)) {
        found.push(Break { seq: checkpoint.seq, kind: BreakKind::CheckpointMismatch });
    }
    let hash_at: HashMap<i64, [u8; 32]> = links.iter().map(|l| (l.seq, l.hash)).collect();
    let held: std::collections::HashSet<[u8; 32]> = links.iter().map(|l| l.hash).collect();
    let head = links.last().map_or(0, |l| l.seq);
    let mut signed: Vec<&Checkpoint> = stored.iter().chain(kept).filter(|c| c.is_signed_by(keys)).collect();
    signed.sort_by_key(|c| c.seq);
    let (mut vouched, mut rewritten) = (0, false);
    for checkpoint in signed {
        if checkpoint.seq > head {
            found.push(Break { seq: head + 1, kind: BreakKind::TruncatedTail });
            break;
        }
        let signed_hash = checkpoint.head_hash_bytes();
        if hash_at.get(&checkpoint.seq) == Some(&signed_hash) {
            vouched = vouched.max(checkpoint.seq);
        } else if !held.contains(&signed_hash) && !rewritten {
            found.push(Break { seq: vouched + 1, kind: BreakKind::CheckpointMismatch });
            rewritten = true;
        }
    }
    found.sort_by_key(|b| b.seq);
    found
}

/// The place of the last entry a signed checkpoint vouches for: its hash is the signed one.
pub fn vouched_head<'c>(
    links: &[Link],
    checkpoints: impl IntoIterator<Item = &'c Checkpoint>,
    keys: &[AuditPublicKey],
) -> Option<i64> {
    checkpoints
        .into_iter()
        .filter(|c| c.is_signed_by(keys) && links.iter().any(|l| l.seq == c.seq && l.hash == c.head_hash_bytes()))
        .map(|c| c.seq)
        .max()
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

    /// A stored entry, as a tamperer sees it.
    #[derive(Clone)]
    struct Entry {
        seq: i64,
        sealed_at: i64,
        prev: [u8; 32],
        hash: [u8; 32],
        row: CanonicalRow,
    }

    /// An entry of `row` sealed at `seq` after `prev`.
    fn entry(seq: i64, prev: [u8; 32], row: CanonicalRow) -> Entry {
        let sealed_at = 1_764_000_100_000_000 + seq;
        Entry { seq, sealed_at, prev, hash: row_hash(&prev, seq, sealed_at, &row), row }
    }

    /// A sealed chain of `n` rows.
    fn sealed(n: u128) -> Vec<Entry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|k| {
                let sealed = entry(k as i64, prev, row(k));
                prev = sealed.hash;
                sealed
            })
            .collect()
    }

    fn links(entries: &[Entry]) -> Vec<Link> {
        entries.iter().map(|e| Link::new(e.seq, e.sealed_at, e.prev, e.hash, Some(e.row.clone()))).collect()
    }

    fn first(entries: &[Entry]) -> Option<(i64, BreakKind)> {
        breaks(&links(entries)).first().map(|b| (b.seq, b.kind))
    }

    #[test]
    fn an_untouched_chain_has_no_break() {
        assert_eq!(first(&sealed(50)), None);
    }

    #[test]
    fn an_edited_row_is_an_altered_row() {
        let mut chain = sealed(10);
        chain[4].row.action = "document.update".into();
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
            entry.seq -= 1;
        }
        assert_eq!(first(&renumbered), Some((5, BreakKind::MissingRow)));
    }

    #[test]
    fn a_forged_row_between_two_is_an_inserted_row() {
        let mut chain = sealed(10);
        let forged = entry(5, chain[3].hash, row(99));
        chain.insert(4, forged);
        for entry in &mut chain[5..] {
            entry.seq += 1;
        }
        assert_eq!(first(&chain), Some((5, BreakKind::InsertedRow)));
    }

    #[test]
    fn a_planted_break_does_not_hide_a_rewrite_a_checkpoint_reveals() {
        let key = super::super::AuditSigningKey::parse(&"07".repeat(32)).unwrap();
        let tenant = crate::domain::TenantId::from(Uuid::from_u128(1));
        let mut chain = sealed(20);
        let checkpoints = [5, 15].map(|k| Checkpoint::sign(&key, tenant, k, &chain[k as usize - 1].hash));
        // Rewrite from 8 on (recomputed, consistent), then plant a decoy edit at 12.
        chain[7].row.action = "tenant.read".into();
        for k in 7..20 {
            let prev = if k == 0 { GENESIS } else { chain[k - 1].hash };
            chain[k] = entry(chain[k].seq, prev, chain[k].row.clone());
        }
        chain[11].row.action = "document.update".into();
        let links = links(&chain);
        let mut found = breaks(&links);
        found.extend(checkpoint_breaks(&links, &checkpoints, &[], &[key.public_key()]));
        found.sort_by_key(|b| b.seq);
        assert_eq!(found.first(), Some(&Break { seq: 6, kind: BreakKind::CheckpointMismatch }), "{found:?}");
        assert!(found.contains(&Break { seq: 12, kind: BreakKind::AlteredRow }));
    }

    #[test]
    fn swapped_entries_or_swapped_rows_are_reordered_rows() {
        let mut entries = sealed(10);
        entries.swap(3, 6);
        let (a, b) = (entries[3].seq, entries[6].seq);
        (entries[3].seq, entries[6].seq) = (b, a);
        assert_eq!(first(&entries), Some((4, BreakKind::ReorderedRows)));

        let mut rows = sealed(10);
        let (a, b) = (rows[3].row.clone(), rows[6].row.clone());
        (rows[3].row, rows[6].row) = (b, a);
        assert_eq!(first(&rows), Some((4, BreakKind::ReorderedRows)));
    }
}
