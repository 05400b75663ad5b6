//! `carevault serve`: configuration → pools → authenticator → router → graceful shutdown.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use carevault_api::auth::Authenticator;
use carevault_api::{AppState, Environment};
use carevault_db::tenant_context::{self, Installed, TenantContextKey};
use carevault_db::{AppPool, PlatformPool, migrate};
use carevault_pg::{Cluster, Paths, SUPERUSER};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::{self, DatabaseConfig, ServeConfig};
use crate::redact::redact;
use crate::{audit_cmd, database, demo, dev_secret, embedded, search_cmd};

/// Extra time, beyond the request timeout, that in-flight requests get to finish on shutdown.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(listen: Option<String>) -> anyhow::Result<()> {
    // Before anything slow: a signal during start-up then shuts down cleanly once started,
    // instead of killing the process with the embedded cluster running.
    let signals = Signals::new()?;
    let config = config::serve_config(&crate::env_var, listen.as_deref())?;
    tracing::info!(environment = config.environment.as_str(), "starting carevault");
    let mut cluster = None;
    let result = serve(config, signals, &mut cluster).await;
    if let Some(cluster) = cluster {
        embedded::stop(cluster).await;
    }
    result
}

async fn serve(mut config: ServeConfig, signals: Signals, cluster_slot: &mut Option<Cluster>) -> anyhow::Result<()> {
    let (app_url, platform_url, owner_url, embedded_data_dir) = match &config.database {
        DatabaseConfig::Embedded => {
            tracing::info!("DATABASE_URL is unset: using the embedded PostgreSQL");
            let cluster = cluster_slot.insert(embedded::start().await?);
            let owner = database::owner_pool(&cluster.url(SUPERUSER, embedded::DATABASE)).await?;
            let migrated = migrate::up(&owner).await.context("migrating the embedded PostgreSQL failed");
            owner.close().await;
            let report = migrated?;
            if report.from_version != report.to_version {
                tracing::info!(from = report.from_version, to = report.to_version, "migrations applied");
            }
            let data_dir = Paths::from_env()?.data_dir;
            (
                cluster.url("carevault_api", embedded::DATABASE),
                cluster.url("carevault_ops", embedded::DATABASE),
                Some(cluster.url(SUPERUSER, embedded::DATABASE)),
                Some(data_dir),
            )
        }
        DatabaseConfig::External { app, platform, owner } => {
            warn_about_logins(app, platform).await;
            (app.clone(), platform.clone(), owner.clone(), None)
        }
    };

    if config.auth.hs256_secret.is_none()
        && config.environment == Environment::Development
        && let Some(data_dir) = &embedded_data_dir
    {
        config.auth.hs256_secret = Some(dev_secret::load_or_create(data_dir)?);
    }
    if config.auth.hs256_secret.is_some() {
        tracing::warn!("HS256 development tokens are enabled (JWT_HS256_SECRET): never in production");
    }
    if config.auth.hs256_secret.is_none() && config.auth.issuer.is_none() {
        tracing::warn!(
            "no way to authenticate: every token will be refused; set OIDC_ISSUER_URL and OIDC_CLIENT_ID, or \
             JWT_HS256_SECRET for development tokens"
        );
    }

    let context_key = match config.tenant_context_key.clone() {
        Some(key) => key,
        None => dev_secret::load_or_create_context_key(&Paths::from_env()?.data_dir)?,
    };
    if let Some(owner_url) = &owner_url {
        install_context_key(owner_url, &context_key).await?;
    }
    let app_pool = AppPool::connect_lazy(&app_url, config.pool, context_key).context("APP_DATABASE_URL")?;
    let platform_pool = PlatformPool::connect_lazy(&platform_url, config.pool).context("PLATFORM_DATABASE_URL")?;
    let maintenance = match (config.search_index_interval, owner_url) {
        (Some(interval), Some(owner_url)) => {
            Some(search_cmd::spawn_maintenance(owner_url, app_pool.clone(), platform_pool.clone(), interval))
        }
        (Some(_), None) => {
            tracing::info!(
                "no owner URL (DATABASE_URL): this server does not maintain the per-tenant search indexes; run \
                 `carevault search reconcile` on a schedule"
            );
            None
        }
        (None, _) => None,
    };
    let (audit_key, checkpoint_sink) = audit_cmd::signer(&config.audit)?;
    let sealer = audit_cmd::spawn_sealer(platform_pool.clone(), &config.audit, audit_key, checkpoint_sink);
    let result = serve_with_pools(&config, signals, &app_pool, &platform_pool, embedded_data_dir).await;
    if let Some(task) = sealer {
        task.abort();
    }
    if let Some(task) = maintenance {
        // Ends the task. A build in progress goes on in its server session until done (or until
        // the embedded cluster stops, which leaves an invalid index for the next pass).
        task.abort();
    }
    app_pool.close().await;
    platform_pool.close().await;
    tracing::info!("database pools closed");
    result
}

/// Adds the server's key to the database through the owner's URL (nothing changes when it is
/// there already).
async fn install_context_key(owner_url: &str, key: &TenantContextKey) -> anyhow::Result<()> {
    let owner = database::owner_pool(owner_url).await?;
    let installed = async {
        let mut conn = owner.acquire().await?;
        anyhow::Ok(tenant_context::install(&mut conn, key, None).await?)
    }
    .await;
    owner.close().await;
    if installed.context("cannot add TENANT_CONTEXT_KEY to the database")? == Installed::Added {
        tracing::info!(kid = %key.kid(), "added the tenant context key to the database");
    }
    Ok(())
}

async fn serve_with_pools(
    config: &ServeConfig,
    mut signals: Signals,
    app_pool: &AppPool,
    platform_pool: &PlatformPool,
    embedded_data_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    match app_pool.schema_state().await {
        Ok(schema) if schema.migration_version != migrate::head_version() => tracing::warn!(
            "the database is at migration version {}, this binary expects {}: /health/ready stays 503 until \
             `carevault migrate up` runs",
            schema.migration_version,
            migrate::head_version()
        ),
        Ok(schema) if !schema.context_verified => tracing::error!(
            "the database does not accept this server's TENANT_CONTEXT_KEY: every tenant request is refused (503 \
             SYS_001), and /health/ready stays 503. Add the key with `carevault context-key add` (DATABASE_URL of the owner, \
             the same TENANT_CONTEXT_KEY), and check that this host's clock and the database's agree"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("the database is not usable yet ({e}): /health/ready stays 503 until it is"),
    }

    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client for the identity provider")?;
    let authenticator = Authenticator::new(config.auth.clone(), http);
    if let Some(issuer) = &config.auth.issuer {
        match authenticator.refresh().await {
            Ok(()) => tracing::info!(issuer = %issuer, "identity provider keys fetched"),
            Err(e) => tracing::warn!(
                issuer = %issuer,
                "cannot fetch the identity provider's keys ({e}); serving anyway, /health/ready stays 503 until they arrive"
            ),
        }
    }

    let demo_tenant = match &embedded_data_dir {
        Some(_) => match demo::seed_if_first_run(platform_pool, app_pool).await.context("seeding the demo failed")? {
            Some(tenant) => Some(tenant),
            None => {
                let found = demo::find(platform_pool).await?;
                if found.is_none() {
                    tracing::info!(
                        "the demo tenant {:?} is gone: mint tokens with `carevault token mint`",
                        demo::TENANT_NAME
                    );
                }
                found
            }
        },
        None => None,
    };

    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!("cannot listen on {}: choose another address or port with --listen ADDR:PORT or PORT", config.listen)
    })?;
    let bound = listener.local_addr().context("reading the listening address")?;
    tracing::info!(address = %bound, "listening on http://{bound}");

    if config.environment == Environment::Development
        && let (Some(data_dir), Some(tenant)) = (&embedded_data_dir, demo_tenant)
    {
        print_quick_start(config::local_addr(bound), tenant, config, data_dir)?;
    }

    let state = AppState::new(app_pool.clone(), platform_pool.clone(), authenticator, config.api.clone());
    let router = carevault_api::router(state);
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = carevault_api::server::serve(listener, router, config.api.connections, async move {
        let name = signals.recv().await;
        tracing::info!(signal = name, "shutting down: no new connections, draining in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let drain = config.api.request_timeout + DRAIN_GRACE;
    let drain_deadline = async move {
        while !*stopping_rx.borrow_and_update() {
            if stopping_rx.changed().await.is_err() {
                // The server ended on its own; its result decides.
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        () = server => {}
        () = drain_deadline => tracing::warn!("in-flight requests did not finish within {drain:?}; dropping them"),
    }
    tracing::info!("HTTP server stopped");
    Ok(())
}

fn print_quick_start(
    addr: SocketAddr,
    tenant: carevault_db::TenantId,
    config: &ServeConfig,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let body = demo::write_search_body(data_dir)?;
    let text = demo::quick_start(addr, tenant, &config.auth, &body)?;
    // stdout, not the log: the tokens must never reach a log.
    print!("{text}");
    std::io::stdout().flush().context("writing the quick start to stdout")
}

/// Warns when a pool logs in as a role that ignores row-level security.
async fn warn_about_logins(app: &str, platform: &str) {
    let urls: Vec<&str> = if app == platform { vec![app] } else { vec![app, platform] };
    for url in urls {
        match database::login_facts(url).await {
            Ok(login) if login.superuser || login.bypass_rls => tracing::warn!(
                role = %login.role,
                "the server logs in as {}, which {}: it switches to carevault_app per transaction so RLS applies, \
                 but a superuser session could switch back. Create the login roles carevault_api / carevault_ops \
                 (`carevault migrate bootstrap-sql`) and set APP_DATABASE_URL / PLATFORM_DATABASE_URL; \
                 `carevault doctor` will check this",
                login.role,
                if login.superuser { "is a superuser" } else { "has BYPASSRLS" }
            ),
            Ok(login) => tracing::debug!(role = %login.role, "database login checked"),
            Err(e) => tracing::warn!(
                url = %redact(url),
                "cannot connect to the database yet ({e:#}): /health/ready stays 503 until it can"
            ),
        }
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
