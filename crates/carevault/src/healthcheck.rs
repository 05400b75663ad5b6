//! `carevault healthcheck`: GET `/api/v1/health/live` on the local server, for a container
//! HEALTHCHECK. Exit 0 on 200, 1 otherwise; the reason goes to stderr.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::config;

/// Checks the server that `serve` with the same `--listen` / `PORT` would run.
pub async fn run(listen: Option<String>) -> anyhow::Result<()> {
    let addr = config::local_addr(config::listen_addr(&crate::env_var, listen.as_deref())?);
    let url = format!("http://{addr}/api/v1/health/live");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let response = client.get(&url).send().await.with_context(|| format!("GET {url} failed"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        bail!("GET {url} answered {status}");
    }
    tracing::debug!("GET {url} answered {status}");
    Ok(())
}
