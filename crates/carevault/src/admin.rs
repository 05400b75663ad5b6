//! The operator commands: `tenant ...` (platform path) and `user create` (tenant path).
//!
//! They run against `DATABASE_URL` (which can switch to either runtime role), or the embedded
//! default through its login roles. Every change is audited by the data layer, with a request id
//! `cli-<uuid>` so the audit log tells CLI actions apart.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use carevault_db::repo::{NewUser, Tenant};
use carevault_db::{
    AppPool, AuditContext, BoundedText, DbError, Deleted, Email, PageLimit, PlatformPool, PlatformTx, PoolConfig,
    TenantId, TenantStatus, TenantTx, UserRole,
};

use crate::cli::{DeletedFilter, InitialStatus, TenantCommand, UserCommand};
use crate::database::Database;

pub(crate) fn pool_config() -> PoolConfig {
    // No statement timeout: an import's statements take as long as they take.
    PoolConfig {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::ZERO,
        ..PoolConfig::default()
    }
}

/// Why a transaction could not even start, with the usual cause of a permission error.
pub(crate) const ROLE_HINT: &str = "cannot open the transaction (the login must be able to switch to carevault_platform and \
                         carevault_app: a superuser, or a member of both; see `carevault migrate bootstrap-sql`)";

pub(crate) fn context() -> AuditContext {
    AuditContext { request_id: Some(format!("cli-{}", uuid::Uuid::new_v4().simple())), ..AuditContext::default() }
}

pub(crate) fn tenant_id(text: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(text.trim())
        .map_err(|_| anyhow!("{text:?} is not a tenant id (a UUID, as printed by `carevault tenant create`)"))
}

/// Opens the database, checks (or, embedded, migrates) the schema, and runs `work` with a URL to
/// log in with; closes everything whatever happens.
pub(crate) async fn with_database<T>(
    database_url: Option<String>,
    login: &str,
    work: impl AsyncFnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = Database::open(database_url).await?;
    let result = async {
        let owner = database.owner_pool().await?;
        let checked = database.ensure_schema(&owner).await;
        owner.close().await;
        checked?;
        work(&database.login_url(login)).await
    }
    .await;
    database.close().await;
    result
}

/// Runs `work` with a pool of the tenant path on `database_url` (or the embedded default): it
/// logs in as [`Database::login_url`] and proves tenant contexts with a key of its own, which the
/// owner adds to the database for [`carevault_db::tenant_context::OWNER_KEY_LIFETIME`] (no command
/// needs the server's `TENANT_CONTEXT_KEY`).
pub(crate) async fn with_app_pool<T>(
    database_url: Option<String>,
    work: impl AsyncFnOnce(&AppPool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = Database::open(database_url).await?;
    let result = async {
        let owner = database.owner_pool().await?;
        let pool = async {
            database.ensure_schema(&owner).await?;
            database.app_pool(&owner).await
        }
        .await;
        owner.close().await;
        let pool = pool?;
        let result = work(&pool).await;
        pool.close().await;
        result
    }
    .await;
    database.close().await;
    result
}

/// What `tenant suspend | activate | delete | restore` does.
#[derive(Debug, Clone, Copy)]
enum Change {
    Suspend,
    Activate,
    Delete,
    Restore,
}

/// Runs a `tenant` command.
pub async fn tenant(command: TenantCommand, database_url: Option<String>) -> anyhow::Result<()> {
    let (change, id) = match command {
        TenantCommand::Create { name, status } => return create_tenant(&name, status, database_url).await,
        TenantCommand::List { json, deleted } => return list_tenants(json, deleted, database_url).await,
        TenantCommand::Suspend { id } => (Change::Suspend, id),
        TenantCommand::Activate { id } => (Change::Activate, id),
        TenantCommand::Delete { id } => (Change::Delete, id),
        TenantCommand::Restore { id } => (Change::Restore, id),
    };
    // Validated before starting anything.
    let id = tenant_id(&id)?;
    let (verb, tenant) = with_platform(database_url, async |pool| {
        let mut tx = PlatformTx::begin(pool, context()).await.context(ROLE_HINT)?;
        let mut tenants = tx.tenants();
        let (verb, result) = match change {
            Change::Suspend => ("suspended", tenants.suspend(id).await),
            Change::Activate => ("activated", tenants.activate(id).await),
            Change::Delete => ("deleted", tenants.soft_delete(id).await),
            Change::Restore => ("restored", tenants.restore(id).await),
        };
        let tenant = result.map_err(|e| explain(e, id))?;
        tx.commit().await?;
        Ok((verb, tenant))
    })
    .await?;
    tracing::info!(tenant = %tenant.id, status = tenant.status.as_str(), "tenant {verb}");
    Ok(())
}

async fn create_tenant(name: &str, status: InitialStatus, database_url: Option<String>) -> anyhow::Result<()> {
    let name = BoundedText::parse("name", name, 255).map_err(|e| anyhow!("--name {}", e.reason))?;
    let status = match status {
        InitialStatus::Active => TenantStatus::Active,
        InitialStatus::Trial => TenantStatus::Trial,
        InitialStatus::Suspended => TenantStatus::Suspended,
    };
    let tenant = with_platform(database_url, async |pool| {
        let mut tx = PlatformTx::begin(pool, context()).await.context(ROLE_HINT)?;
        let tenant = tx.tenants().create(name, status).await?;
        tx.commit().await?;
        Ok(tenant)
    })
    .await?;
    tracing::info!(tenant = %tenant.id, status = tenant.status.as_str(), "tenant created");
    println!("{}", tenant.id);
    Ok(())
}

async fn list_tenants(json: bool, deleted: DeletedFilter, database_url: Option<String>) -> anyhow::Result<()> {
    let deleted = match deleted {
        DeletedFilter::Exclude => Deleted::Exclude,
        DeletedFilter::Only => Deleted::Only,
        DeletedFilter::Include => Deleted::Include,
    };
    let tenants = with_platform(database_url, async |pool| {
        let mut tx = PlatformTx::begin(pool, context()).await.context(ROLE_HINT)?;
        let mut tenants = Vec::new();
        let mut cursor = None;
        loop {
            let page = tx.tenants().list(deleted, PageLimit::parse(PageLimit::MAX)?, cursor).await?;
            tenants.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tx.rollback().await?;
        Ok(tenants)
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tenants)?);
    } else {
        print_tenants(&tenants);
    }
    Ok(())
}

async fn with_platform<T>(
    database_url: Option<String>,
    work: impl AsyncFnOnce(&PlatformPool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_database(database_url, "carevault_ops", async |url| {
        let pool = PlatformPool::connect_lazy(url, pool_config())?;
        let result = work(&pool).await;
        pool.close().await;
        result
    })
    .await
}

fn explain(error: DbError, id: TenantId) -> anyhow::Error {
    match error {
        DbError::NotFound => anyhow!("no tenant {id} (or it is deleted: `carevault tenant restore {id}` first)"),
        DbError::Conflict(why) => anyhow!("tenant {id}: {why}"),
        DbError::Invalid(e) => anyhow!("tenant {id}: {e}"),
        other => anyhow::Error::new(other),
    }
}

fn print_tenants(tenants: &[Tenant]) {
    println!("{:<36}  {:<9}  {:<20}  {:<20}  name", "id", "status", "created", "deleted");
    let time = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    for tenant in tenants {
        println!(
            "{:<36}  {:<9}  {:<20}  {:<20}  {}",
            tenant.id,
            tenant.status.as_str(),
            time(&tenant.created_at),
            tenant.deleted_at.as_ref().map(time).unwrap_or_default(),
            tenant.name
        );
    }
}

/// Runs a `user` command.
pub async fn user(command: UserCommand, database_url: Option<String>) -> anyhow::Result<()> {
    let UserCommand::Create { tenant, email, role, sub, full_name } = command;
    let tenant = tenant_id(&tenant)?;
    let new = NewUser {
        email: Email::parse(&email).map_err(|e| anyhow!("--email {}", e.reason))?,
        role: UserRole::parse(&role).map_err(|e| anyhow!("--role {}, got {role:?}", e.reason))?,
        full_name: full_name
            .map(|name| BoundedText::parse("full_name", &name, 255))
            .transpose()
            .map_err(|e| anyhow!("--full-name {}", e.reason))?,
        external_idp_id: Some(BoundedText::parse("sub", &sub, 255).map_err(|e| anyhow!("--sub {}", e.reason))?),
    };
    let user = with_app_pool(database_url, async |pool| {
        let mut tx = TenantTx::begin(pool, tenant, context()).await.context(ROLE_HINT)?;
        match tx.tenant().lookup().await? {
            None => bail!("no tenant {tenant}"),
            Some(t) if t.is_deleted() => {
                bail!("tenant {tenant} is deleted: `carevault tenant restore {tenant}` first")
            }
            Some(_) => {}
        }
        let user = tx.users().create(new).await.map_err(|e| match e {
            DbError::Conflict(_) => anyhow!("tenant {tenant} already has an active user with this email"),
            other => anyhow::Error::new(other),
        })?;
        tx.commit().await?;
        Ok(user)
    })
    .await
    .context("user create failed")?;
    tracing::info!(user = %user.id, tenant = %tenant, role = user.role.as_str(), "user created");
    println!("{}", user.id);
    Ok(())
}
