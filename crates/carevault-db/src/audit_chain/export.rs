//! The export of one tenant's chain as JSON lines, and its verification without a database
//! (docs/AUDIT_FORMAT.md, "The export").

use super::canonical::{CanonicalRow, micros_as_rfc3339};
use super::check::{Break, BreakKind, Link};
use super::checkpoint::{AuditPublicKey, Checkpoint};
use super::sink::CheckpointSink;
use super::verify::{
    SeqRange, StoredLink, TenantVerdict, VerifyError, begin_reading, judge, read_checkpoints, read_links,
};
use crate::domain::TenantId;
use crate::{PlatformPool, hex};

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// A chain entry and its row.
    Entry(ExportEntry),
    /// A signed checkpoint.
    Checkpoint(Checkpoint),
}

/// A chain entry as exported: every value the hash covers, as text where the format hashes text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportEntry {
    /// Sequence number.
    pub seq: i64,
    /// When it was sealed (in JSON: RFC 3339, six fractional digits, `Z`; `null` when out of range).
    #[serde(rename = "sealed_at", with = "micros_as_rfc3339")]
    pub sealed_at_micros: i64,
    /// The predecessor's hash (hex).
    pub prev_hash: String,
    /// The entry's hash (hex).
    pub hash: String,
    /// The audit row (`null` when it is gone).
    pub row: Option<CanonicalRow>,
}

/// Why an export could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A line is not one of the export's objects.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The export holds entries of more than one tenant, or none.
    #[error("an export holds the chain of exactly one tenant")]
    Tenants,
}

/// The entries of `tenant`'s chain in `range`, then its checkpoints in that range: the
/// database's, and the sink's that the database lacks.
pub async fn export(
    pool: &PlatformPool,
    tenant: TenantId,
    range: SeqRange,
    sink: Option<&CheckpointSink>,
) -> Result<Vec<ExportLine>, VerifyError> {
    let mut tx = begin_reading(pool).await?;
    let links = read_links(pool, &mut tx, tenant, range).await?;
    let mut checkpoints = read_checkpoints(pool, &mut tx, tenant, range).await?;
    tx.rollback().await.map_err(crate::DbError::from)?;
    if let Some(sink) = sink {
        let kept = sink.read(tenant)?;
        let missing: Vec<Checkpoint> =
            kept.into_iter().filter(|c| (range.from..=range.to).contains(&c.seq) && !checkpoints.contains(c)).collect();
        checkpoints.extend(missing);
    }
    let entries = links.into_iter().map(|stored| {
        ExportLine::Entry(ExportEntry {
            seq: stored.link.seq,
            sealed_at_micros: stored.link.sealed_at_micros,
            prev_hash: hex::encode(&stored.link.prev_hash),
            hash: hex::encode(&stored.link.hash),
            row: stored.row,
        })
    });
    Ok(entries.chain(checkpoints.into_iter().map(ExportLine::Checkpoint)).collect())
}

/// Reads an export, one JSON object per line (blank lines skipped).
pub fn parse_export(text: &str) -> Result<Vec<ExportLine>, ExportError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| ExportError::Line { line: i + 1, reason: e.to_string() })
        })
        .collect()
}

/// Verifies an export with `keys` and nothing else: its entries from `from` (1: after 32 zero
/// bytes; a later place: after the predecessor its first entry names, which only the part's own
/// checkpoints then vouch for), its rows, and its checkpoints (signed by one of `keys`, matching
/// the entries they name). The file decides nothing else: an export that does not start at
/// `from` misses its first rows, and one whose last entry no checkpoint vouches for has a tail
/// nobody signed ([`BreakKind::Unvouched`]): `carevault audit export` ends every export at a
/// checkpoint it signs first.
pub fn verify_export(lines: &[ExportLine], keys: &[AuditPublicKey], from: i64) -> Result<TenantVerdict, ExportError> {
    let mut links = Vec::new();
    let mut checkpoints = Vec::new();
    let mut tenants = std::collections::BTreeSet::new();
    for line in lines {
        match line {
            ExportLine::Entry(entry) => {
                if let Some(row) = &entry.row {
                    tenants.insert(row.tenant_id);
                }
                // Lowercase only, as the format writes it: another spelling is another value.
                let bytes = |text: &str| {
                    Some(text)
                        .filter(|t| !t.bytes().any(|b| b.is_ascii_uppercase()))
                        .and_then(hex::decode::<32>)
                        .unwrap_or([0xff; 32])
                };
                let (prev, hash) = (bytes(&entry.prev_hash), bytes(&entry.hash));
                let link = Link::new(entry.seq, entry.sealed_at_micros, prev, hash, entry.row.clone());
                links.push(StoredLink { link, row: entry.row.clone() });
            }
            ExportLine::Checkpoint(checkpoint) => {
                tenants.insert(checkpoint.tenant_id.as_uuid());
                checkpoints.push(checkpoint.clone());
            }
        }
    }
    let tenant = match tenants.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => TenantId::from(*one),
        _ => return Err(ExportError::Tenants),
    };
    links.sort_by_key(|l| l.link.seq);
    let start = match links.first() {
        Some(first) if from > 1 && first.link.seq == from => (from, first.link.prev_hash),
        _ => (from, super::GENESIS),
    };
    let mut verdict = judge(tenant, &links, start, &checkpoints, &[], keys);
    // A tail no checkpoint vouches for, unless a checkpoint break already says why.
    let checkpoint_break = verdict.breaks.iter().any(|b| {
        matches!(b.kind, BreakKind::TruncatedTail | BreakKind::CheckpointMismatch | BreakKind::CheckpointSignature)
    });
    if let Some(head) = verdict.head
        && !checkpoint_break
        && verdict.checkpoint.is_none_or(|vouched| vouched < head)
    {
        let seq = verdict.checkpoint.map_or(from, |vouched| vouched + 1);
        verdict.breaks.push(Break { seq, kind: BreakKind::Unvouched });
        verdict.breaks.sort_by_key(|b| b.seq);
    }
    Ok(verdict)
}
