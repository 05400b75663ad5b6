//! The demo of the embedded default: on the first run a tenant with one user of each role and a
//! few documents with embeddings; in development, on every start, curl commands with fresh
//! development tokens that work against it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use carevault_api::auth::{AuthConfig, mint_dev_token};
use carevault_db::repo::NewDocument;
use carevault_db::repo::NewUser;
use carevault_db::{
    AppPool, AuditContext, BoundedText, Deleted, DocumentStatus, EMBEDDING_DIMENSIONS, Email, Embedding, Metadata,
    PageLimit, PlatformPool, PlatformTx, TenantId, TenantStatus, TenantTx, UserRole,
};
use serde_json::json;

/// The demo tenant's name.
pub const TENANT_NAME: &str = "Demo Clinic";

/// The demo users: `sub` (their `external_idp_id`), email, role, name.
pub const USERS: [(&str, &str, UserRole, &str); 3] = [
    ("demo-admin", "admin@demo-clinic.example", UserRole::Admin, "Demo Admin"),
    ("demo-member", "member@demo-clinic.example", UserRole::Member, "Demo Member"),
    ("demo-viewer", "viewer@demo-clinic.example", UserRole::Viewer, "Demo Viewer"),
];

/// The demo documents: file name, content type, kind (metadata). No real patient data.
const DOCUMENTS: [(&str, &str, &str); 4] = [
    ("discharge-summary-0001.pdf", "application/pdf", "discharge_summary"),
    ("lab-results-0002.pdf", "application/pdf", "lab_results"),
    ("radiology-report-0003.txt", "text/plain", "radiology_report"),
    ("referral-letter-0004.pdf", "application/pdf", "referral_letter"),
];

/// The search body's file under the data directory.
pub const SEARCH_BODY_FILE: &str = "demo-search.json";

/// The lifetime of the printed tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A deterministic, non-zero, finite 1024-d embedding; different seeds are nearly orthogonal.
pub fn embedding(seed: u32) -> Vec<f32> {
    let frequency = 0.618_034_f32 * (seed as f32 + 1.0);
    (0..EMBEDDING_DIMENSIONS).map(|i| ((i as f32 + 1.0) * frequency).sin() + 0.05).collect()
}

fn context() -> AuditContext {
    AuditContext { request_id: Some("demo-seed".into()), ..AuditContext::default() }
}

/// Seeds the demo when no tenant other than System exists (deleted ones count: a user who
/// deleted the demo does not get it back). Returns the new tenant's id when it seeded.
pub async fn seed_if_first_run(platform: &PlatformPool, app: &AppPool) -> anyhow::Result<Option<TenantId>> {
    let mut tx = PlatformTx::begin(platform, context()).await?;
    let page = tx.tenants().list(Deleted::Include, PageLimit::parse(2)?, None).await?;
    tx.rollback().await?;
    if page.items.iter().any(|t| t.id != TenantId::SYSTEM) {
        return Ok(None);
    }

    let mut tx = PlatformTx::begin(platform, context()).await?;
    let tenant = tx.tenants().create(BoundedText::parse("name", TENANT_NAME, 255)?, TenantStatus::Active).await?;
    tx.commit().await?;

    let mut tx = TenantTx::begin(app, tenant.id, context()).await?;
    let mut author = None;
    for (sub, email, role, name) in USERS {
        let user = tx
            .users()
            .create(NewUser {
                email: Email::parse(email)?,
                role,
                full_name: Some(BoundedText::parse("full_name", name, 255)?),
                external_idp_id: Some(BoundedText::parse("external_idp_id", sub, 255)?),
            })
            .await?;
        if role == UserRole::Member {
            author = Some(user.id);
        }
    }
    let author = author.context("the demo has a member")?;
    for (seed, (filename, content_type, kind)) in (0u32..).zip(DOCUMENTS) {
        tx.documents()
            .create(NewDocument {
                user_id: author,
                s3_key: BoundedText::parse("s3_key", &format!("demo/{filename}"), 1024)?,
                s3_bucket: BoundedText::parse("s3_bucket", "carevault-demo", 255)?,
                filename: BoundedText::parse("filename", filename, 512)?,
                content_type: Some(BoundedText::parse("content_type", content_type, 127)?),
                size_bytes: Some(1024 * (i64::from(seed) + 1)),
                status: DocumentStatus::Completed,
                metadata: Metadata::parse(json!({ "demo": true, "kind": kind }))?,
                embedding: Some(Embedding::parse(embedding(seed))?),
            })
            .await?;
    }
    tx.commit().await?;
    tracing::info!(tenant = %tenant.id, "seeded the demo tenant {TENANT_NAME:?}");
    Ok(Some(tenant.id))
}

/// The demo tenant, when it exists and is not deleted.
pub async fn find(platform: &PlatformPool) -> anyhow::Result<Option<TenantId>> {
    let mut tx = PlatformTx::begin(platform, context()).await?;
    let mut cursor = None;
    let found = loop {
        let page = tx.tenants().list(Deleted::Exclude, PageLimit::parse(PageLimit::MAX)?, cursor).await?;
        if let Some(tenant) = page.items.iter().find(|t| t.name == TENANT_NAME) {
            break Some(tenant.id);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break None,
        }
    };
    tx.rollback().await?;
    Ok(found)
}

/// Writes the search request body (`{"embedding": [1024 floats], ...}`) to the data directory,
/// so that curl can send it with `--data @file`.
pub fn write_search_body(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(SEARCH_BODY_FILE);
    let body = json!({ "embedding": embedding(0), "limit": 5, "threshold": 0.0 });
    std::fs::write(&path, serde_json::to_vec(&body)?).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The curl commands, with freshly minted tokens, for a server reachable at `addr`.
pub fn quick_start(
    addr: SocketAddr,
    tenant: TenantId,
    auth: &AuthConfig,
    search_body: &Path,
) -> anyhow::Result<String> {
    let base = format!("http://{addr}/api/v1");
    let tenant_text = tenant.to_string();
    let token = |sub: &str| {
        mint_dev_token(auth, &tenant_text, sub, None, TOKEN_TTL).context("minting a development token for the demo")
    };
    let (admin, member, viewer) = (token(USERS[0].0)?, token(USERS[1].0)?, token(USERS[2].0)?);
    let mut text = String::new();
    let _ = writeln!(text, "# carevault development quick start: demo tenant {TENANT_NAME:?} ({tenant}).");
    let _ = writeln!(text, "# Tokens are valid for one hour; mint more with");
    let _ =
        writeln!(text, "#   carevault token mint --tenant {tenant} --sub demo-admin   (or demo-member, demo-viewer)");
    let _ = writeln!(text, "# Who am I (admin):");
    let _ = writeln!(text, "curl -sS -H 'Authorization: Bearer {admin}' {base}/auth/validate");
    let _ = writeln!(text, "# The tenant's documents (member):");
    let _ = writeln!(text, "curl -sS -H 'Authorization: Bearer {member}' {base}/documents");
    let _ = writeln!(text, "# Similarity search with a 1024-float query read from a file (viewer):");
    let _ = writeln!(
        text,
        "curl -sS -H 'Authorization: Bearer {viewer}' -H 'Content-Type: application/json' --data @{} {base}/documents/search",
        shell_quote(&search_body.display().to_string())
    );
    Ok(text)
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_valid_deterministic_and_distinct() {
        for seed in 0..DOCUMENTS.len() as u32 {
            let values = embedding(seed);
            assert_eq!(values, embedding(seed));
            assert!(Embedding::parse(values).is_ok());
        }
        let cosine = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (norm(a) * norm(b))
        };
        assert!(cosine(&embedding(0), &embedding(1)) < 0.5);
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
