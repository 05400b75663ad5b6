//! `carevault documents import`: a JSON Lines file of documents into one tenant, as one of its
//! users, on the tenant path (`carevault_app` through `TenantTx`, never a role bypassing RLS).
//!
//! Each line is checked by the rules of `POST /documents` (`CreateDocumentRequest`, then the
//! domain types) before anything is written; the good ones are inserted in batches of up to
//! [`MAX_IMPORT_BATCH`] by `Documents::create_many`, one `document.imported` audit row per batch.
//! A bad line is reported by its number only: its content may be PHI.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use carevault_api::handlers::documents::CreateDocumentRequest;
use carevault_db::repo::{MAX_IMPORT_BATCH, NewDocument};
use carevault_db::{AppPool, AuditContext, DbError, TenantId, TenantTx, UserId};

use crate::admin::{ROLE_HINT, context, tenant_id, with_app_pool};
use crate::cli::DocumentsCommand;

/// Runs a `documents` command.
pub async fn run(command: DocumentsCommand, database_url: Option<String>) -> anyhow::Result<()> {
    let DocumentsCommand::Import { tenant, user, strict, file } = command;
    let tenant = tenant_id(&tenant)?;
    let user = UserId::parse(user.trim())
        .map_err(|_| anyhow!("{user:?} is not a user id (a UUID, as printed by `carevault user create`)"))?;
    // Opened before the database, so that a wrong path fails at once.
    let reader = BufReader::new(File::open(&file).with_context(|| format!("cannot open {}", file.display()))?);
    let audit = AuditContext { user_id: Some(user), ..context() };
    let outcome = with_app_pool(database_url, async |pool| {
        check_owner(pool, tenant, user, &audit).await?;
        import(pool, tenant, user, &audit, reader, &file, strict).await
    })
    .await
    .context("documents import failed")?;
    tracing::info!(tenant = %tenant, imported = outcome.imported, skipped = outcome.skipped, "documents imported");
    println!("imported {}, skipped {}", outcome.imported, outcome.skipped);
    match (outcome.skipped, strict) {
        (0, _) => Ok(()),
        (bad, true) => bail!("{bad} bad line(s): with --strict nothing was imported"),
        (bad, false) => bail!("{bad} bad line(s) skipped"),
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    imported: usize,
    skipped: usize,
}

/// Refuses an unknown or deleted tenant or user before reading the file (the read of the user is
/// audited `user.read`, as the importer's).
async fn check_owner(pool: &AppPool, tenant: TenantId, user: UserId, audit: &AuditContext) -> anyhow::Result<()> {
    let mut tx = TenantTx::begin(pool, tenant, audit.clone()).await.context(ROLE_HINT)?;
    match tx.tenant().lookup().await? {
        None => bail!("no tenant {tenant}"),
        Some(t) if t.is_deleted() => bail!("tenant {tenant} is deleted: `carevault tenant restore {tenant}` first"),
        Some(_) => {}
    }
    match tx.users().get(user).await {
        Ok(_) => {}
        Err(DbError::NotFound) => bail!("no user {user} in tenant {tenant} (or the user is deleted)"),
        Err(other) => return Err(other.into()),
    }
    tx.commit().await?;
    Ok(())
}

/// Reads every line, inserts the good ones batch by batch: each batch in its own transaction, or
/// with `strict` all in one, rolled back when any line is bad.
async fn import(
    pool: &AppPool,
    tenant: TenantId,
    user: UserId,
    audit: &AuditContext,
    mut reader: impl BufRead,
    file: &Path,
    strict: bool,
) -> anyhow::Result<Outcome> {
    let progress = Progress { shown: std::io::stderr().is_terminal() };
    // The strict import's one transaction opens at its first insert and is dropped (rolled back)
    // at the first bad line: it is never left idle while the rest of the file is read, which the
    // login roles' idle-transaction timeout would end.
    let mut whole: Option<TenantTx> = None;
    let mut outcome = Outcome::default();
    let mut batch = Vec::with_capacity(MAX_IMPORT_BATCH);
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {}", file.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(&line, user) {
            Ok(document) => {
                // Once a strict import has a bad line nothing will be kept: only keep checking.
                if !(strict && outcome.skipped > 0) {
                    batch.push(document);
                }
            }
            Err(reason) => {
                progress.clear();
                eprintln!("line {number}: {reason}");
                outcome.skipped += 1;
                if strict {
                    // Nothing will be kept: roll back now, and only keep checking the lines.
                    batch.clear();
                    whole = None;
                }
            }
        }
        if batch.len() == MAX_IMPORT_BATCH {
            if strict && whole.is_none() {
                whole = Some(TenantTx::begin(pool, tenant, audit.clone()).await.context(ROLE_HINT)?);
            }
            let batch = std::mem::take(&mut batch);
            outcome.imported +=
                insert(pool, tenant, audit, &mut whole, batch).await.with_context(|| so_far(strict, outcome))?;
            progress.show(number, outcome);
        }
    }
    let discarded = strict && outcome.skipped > 0;
    if !batch.is_empty() && !discarded {
        if strict && whole.is_none() {
            whole = Some(TenantTx::begin(pool, tenant, audit.clone()).await.context(ROLE_HINT)?);
        }
        outcome.imported +=
            insert(pool, tenant, audit, &mut whole, batch).await.with_context(|| so_far(strict, outcome))?;
    }
    progress.finish(number, outcome);
    if discarded {
        outcome.imported = 0;
    } else if let Some(tx) = whole {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// What an error leaves behind, for the operator who resumes: a strict import keeps nothing.
fn so_far(strict: bool, outcome: Outcome) -> String {
    if strict {
        "nothing was imported (--strict)".to_string()
    } else {
        format!("{} documents were imported and committed before this error", outcome.imported)
    }
}

/// Inserts one batch: in the whole-file transaction when there is one, else in its own.
async fn insert(
    pool: &AppPool,
    tenant: TenantId,
    audit: &AuditContext,
    whole: &mut Option<TenantTx>,
    batch: Vec<NewDocument>,
) -> anyhow::Result<usize> {
    let explain = |error: DbError| match error {
        DbError::NotFound => anyhow!("the user is no longer an active user of tenant {tenant}"),
        other => anyhow::Error::new(other),
    };
    let created = match whole {
        Some(tx) => tx.documents().create_many(batch).await.map_err(explain)?.len(),
        None => {
            let mut tx = TenantTx::begin(pool, tenant, audit.clone()).await.context(ROLE_HINT)?;
            let created = tx.documents().create_many(batch).await.map_err(explain)?.len();
            tx.commit().await?;
            created
        }
    };
    Ok(created)
}

/// One line as a document of `user`, or why not, in words that never quote the line (serde's own
/// messages can: "invalid type: string \"Ann Lee\"").
fn parse_line(line: &[u8], user: UserId) -> Result<NewDocument, String> {
    let request: CreateDocumentRequest = serde_json::from_slice(line).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            "not a document: a field is missing, unknown or of the wrong type (the fields of POST /api/v1/documents)"
                .to_string()
        }
        _ => "not valid JSON (one JSON object per line, in UTF-8)".to_string(),
    })?;
    request.into_new_document(user).map_err(|refused| refused.to_string())
}

/// The progress line on stderr, only when stderr is a terminal (a log file gets the bad lines and
/// the final count only).
struct Progress {
    shown: bool,
}

impl Progress {
    fn show(&self, line: usize, outcome: Outcome) {
        if self.shown {
            eprint!("\rline {line}: imported {}, skipped {}", outcome.imported, outcome.skipped);
            let _ = std::io::stderr().flush();
        }
    }

    /// Clears the progress line so that a message starts on a clean line.
    fn clear(&self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }

    fn finish(&self, line: usize, outcome: Outcome) {
        if self.shown {
            self.show(line, outcome);
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_checked_by_the_rules_of_post_documents_without_echoing_it() {
        let user = UserId::new_random();
        let good = br#"{"filename": "a.pdf", "s3_key": "k", "s3_bucket": "b", "metadata": {"x": 1}}"#;
        let document = parse_line(good, user).unwrap();
        assert_eq!((document.user_id, document.filename.as_str()), (user, "a.pdf"));
        let cases: [(&[u8], &str); 6] = [
            (b"{\"filename\": \"Ann Lee", "not valid JSON"),
            (b"\xff\xfe Ann Lee", "not valid JSON"),
            (br#"{"filename": 12, "s3_key": "Ann Lee", "s3_bucket": "b"}"#, "not a document"),
            (br#"{"filename": "Ann Lee", "s3_key": "k", "s3_bucket": "b", "patient": "Ann Lee"}"#, "not a document"),
            (br#"{"filename": "Ann Lee", "s3_key": "k", "s3_bucket": "b", "status": "Ann Lee"}"#, "status: "),
            (br#"{"filename": "Ann Lee", "s3_key": "k", "s3_bucket": "b", "embedding": [1.5]}"#, "embedding: "),
        ];
        for (line, expected) in cases {
            let reason = parse_line(line, user).unwrap_err();
            assert!(reason.starts_with(expected), "{reason}");
            assert!(!reason.contains("Ann") && !reason.contains("1.5"), "{reason}");
        }
    }
}
