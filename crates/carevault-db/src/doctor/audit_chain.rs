//! The audit chain's sealer: committed audit rows reach their tenant's chain within seconds, and
//! a signed checkpoint within minutes (`crate::audit_chain`). The chain's triggers, functions and role are the manifest's and are
//! checked with the others.

use sqlx::PgPool;

use super::Check;
use crate::audit_chain::{SealerLag, lag};
use crate::{DbError, PlatformPool};

/// How old the oldest unsealed row may be before the check warns: the service seals every
/// second by default, and a row's age also counts its transaction's time before commit.
pub const MAX_UNSEALED_SECONDS: f64 = 30.0;

pub(super) async fn sealer_facts(pool: &PgPool) -> Result<SealerLag, DbError> {
    // Under FORCE ROW LEVEL SECURITY the owner reads no audit row: read as the sealer, which the
    // login must be able to switch to.
    lag(&PlatformPool::over(pool)).await
}

/// How long the newest entries may go without a signed checkpoint before the check warns: ten
/// times the service's default `AUDIT_CHECKPOINT_INTERVAL_SECONDS`.
pub const MAX_UNSIGNED_SECONDS: f64 = 600.0;

/// WARN when a committed row has waited longer than [`MAX_UNSEALED_SECONDS`] for the chain (no
/// sealer runs, or it fails: its log says why), or when chained entries have gone longer than
/// [`MAX_UNSIGNED_SECONDS`] without a signed checkpoint (no server signs, or signing fails).
pub fn evaluate_audit_sealer(facts: &SealerLag) -> Check {
    const NAME: &str = "audit_sealer";
    const FIX: &str = "carevault audit seal   (seals and signs; carevault serve does it every AUDIT_SEAL_INTERVAL_SECONDS \
                       and AUDIT_CHECKPOINT_INTERVAL_SECONDS unless they are 0; its log says why a pass failed)";
    let mut problems = Vec::new();
    if let Some(age) = facts.oldest_seconds.filter(|&age| age > MAX_UNSEALED_SECONDS) {
        problems.push(format!(
            "{} audit rows are not in the hash chain, the oldest for {age:.0} s: no sealer is running, or it fails",
            facts.unsealed
        ));
    }
    if let Some(age) = facts.unsigned_seconds.filter(|&age| age > MAX_UNSIGNED_SECONDS) {
        problems.push(format!(
            "chained audit rows have waited {age:.0} s for a signed checkpoint: no server signs them, or signing fails"
        ));
    }
    if !problems.is_empty() {
        return Check::warn(NAME, problems.join("; "), FIX);
    }
    let unsigned = facts
        .unsigned_seconds
        .map_or_else(|| "every head signed".to_string(), |s| format!("the oldest unsigned entry {s:.0} s old"));
    match facts.oldest_seconds {
        Some(age) => Check::pass(
            NAME,
            format!("{} audit rows wait for the chain, the oldest for {age:.1} s; {unsigned}", facts.unsealed),
        ),
        None => Check::pass(NAME, format!("every committed audit row is in the hash chain; {unsigned}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn a_sealer_that_falls_behind_or_stops_signing_is_a_warning() {
        let lag = |unsealed, oldest_seconds, unsigned_seconds| {
            evaluate_audit_sealer(&SealerLag { unsealed, oldest_seconds, unsigned_seconds }).status
        };
        assert_eq!(lag(0, None, None), Status::Pass);
        assert_eq!(lag(12, Some(1.5), Some(30.0)), Status::Pass);
        assert_eq!(lag(12, Some(MAX_UNSEALED_SECONDS + 1.0), None), Status::Warn);
        assert_eq!(lag(0, None, Some(MAX_UNSIGNED_SECONDS + 1.0)), Status::Warn);
    }
}
