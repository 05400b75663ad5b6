//! `carevault context-key add | list | retire`: the keys the database accepts for the tenant
//! context (docs/THREAT_MODEL.md, "A tenant context the database verifies", which has the rotation
//! procedure). They run on the owner's URL: no runtime role can read or write the keys.

use anyhow::{Context, anyhow, bail};
use carevault_db::tenant_context::{self, Installed, KeyId, TenantContextKey};

use crate::cli::ContextKeyCommand;
use crate::database::Database;

/// A command, its input checked.
enum Action {
    Add(TenantContextKey),
    List,
    Retire(KeyId),
}

/// Runs a `context-key` command.
pub async fn run(command: ContextKeyCommand, database_url: Option<String>) -> anyhow::Result<()> {
    // Checked before the database is opened: a wrong key or key id fails at once.
    let action = match command {
        ContextKeyCommand::Add => Action::Add(key_from_env()?),
        ContextKeyCommand::List => Action::List,
        ContextKeyCommand::Retire { kid } => {
            Action::Retire(KeyId::parse(&kid).map_err(|e| anyhow!("{kid:?} is not a key id: {e}"))?)
        }
    };
    let database = Database::open(database_url).await?;
    let result = async {
        let owner = database.owner_pool().await?;
        let outcome = async {
            database.ensure_schema(&owner).await?;
            let mut conn = owner.acquire().await?;
            match action {
                Action::Add(key) => {
                    match tenant_context::install(&mut conn, &key, None).await.context("context-key add failed")? {
                        Installed::Added => println!("added {}", key.kid()),
                        Installed::AlreadyPresent => println!("{} is already there: nothing changed", key.kid()),
                    }
                }
                Action::List => {
                    println!("{:<32}  {:<25}  not after", "kid", "added");
                    for key in tenant_context::list(&mut conn).await? {
                        let until = key.not_after.map_or_else(|| "-".to_string(), |t| t.to_rfc3339());
                        println!("{:<32}  {:<25}  {until}", key.kid, key.added_at.to_rfc3339());
                    }
                }
                Action::Retire(kid) => {
                    if !tenant_context::retire(&mut conn, &kid).await? {
                        bail!("the database holds no key {kid} (`carevault context-key list` shows the ones it holds)");
                    }
                    println!("retired {kid}: proofs made with it no longer verify");
                }
            }
            anyhow::Ok(())
        }
        .await;
        owner.close().await;
        outcome
    }
    .await;
    database.close().await;
    result
}

/// `TENANT_CONTEXT_KEY`, required by `add`; the error names the form, never the value.
fn key_from_env() -> anyhow::Result<TenantContextKey> {
    let text = crate::env_var("TENANT_CONTEXT_KEY")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("TENANT_CONTEXT_KEY is unset: set it to the key to add, <kid>:<64 hex>"))?;
    TenantContextKey::parse(&text).map_err(|e| anyhow!("TENANT_CONTEXT_KEY: {e}"))
}
