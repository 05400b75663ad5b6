//! The audit chain's sealer: committed audit rows reach their tenant's chain within seconds
//! (`crate::audit_chain`). The chain's triggers, functions and role are the manifest's and are
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

/// WARN when a committed row has waited longer than [`MAX_UNSEALED_SECONDS`] for the chain: no
/// sealer runs, or it fails (its log says why).
pub fn evaluate_audit_sealer(facts: &SealerLag) -> Check {
    const NAME: &str = "audit_sealer";
    match facts.oldest_seconds {
        Some(age) if age > MAX_UNSEALED_SECONDS => Check::warn(
            NAME,
            format!(
                "{} audit rows are not in the hash chain, the oldest for {age:.0} s: no sealer is running, or it fails",
                facts.unsealed
            ),
            "carevault audit seal   (carevault serve runs it every AUDIT_SEAL_INTERVAL_SECONDS unless that is 0; \
             its log says why a pass failed)",
        ),
        Some(age) => {
            Check::pass(NAME, format!("{} audit rows wait for the chain, the oldest for {age:.1} s", facts.unsealed))
        }
        None => Check::pass(NAME, "every committed audit row is in the hash chain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn a_sealer_that_falls_behind_is_a_warning() {
        let lag = |unsealed, oldest_seconds| evaluate_audit_sealer(&SealerLag { unsealed, oldest_seconds }).status;
        assert_eq!(lag(0, None), Status::Pass);
        assert_eq!(lag(12, Some(1.5)), Status::Pass);
        assert_eq!(lag(12, Some(MAX_UNSEALED_SECONDS + 1.0)), Status::Warn);
    }
}
