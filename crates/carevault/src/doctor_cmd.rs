//! `carevault doctor [--json]`: the database's security posture, one line per check.
//!
//! The checks and their SQL are in `carevault_db::doctor`; this file supplies what only the
//! process knows (ENVIRONMENT, the pools' login roles from APP_DATABASE_URL /
//! PLATFORM_DATABASE_URL) and prints the report. Exit status 1 when any check fails.

use std::str::FromStr;

use anyhow::{Context, bail};
use carevault_db::doctor::{self, Check, DoctorContext, Status};
use sqlx::postgres::PgConnectOptions;

use crate::database::Database;
use crate::redact::redact;

/// Runs every check against `DATABASE_URL`, or the embedded default when it is unset.
pub async fn run(json: bool, database_url: Option<String>) -> anyhow::Result<()> {
    let context = context(&crate::env_var, database_url.is_none())?;
    let database = Database::open(database_url).await?;
    let checks = match database.owner_pool().await {
        Ok(pool) => {
            let checks = doctor::run(&pool, &context).await.context("doctor could not query the database");
            pool.close().await;
            checks
        }
        Err(e) => Err(e),
    };
    // Whatever happened, stop the embedded server if we started it.
    database.close().await;
    let checks = checks?;

    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", render(&checks));
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let failed: Vec<&str> = checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.name).collect();
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join(", "));
    }
    tracing::info!("doctor: {} passed, {} warning(s), none failed", count(Status::Pass), count(Status::Warn));
    Ok(())
}

/// The context from the environment. On the embedded default (no DATABASE_URL) the server logs in
/// as `carevault_api` / `carevault_ops`; otherwise as the users of APP_DATABASE_URL /
/// PLATFORM_DATABASE_URL, and as DATABASE_URL's (this connection's) when they are unset.
fn context(lookup: &dyn Fn(&str) -> Option<String>, embedded: bool) -> anyhow::Result<DoctorContext> {
    let environment = crate::config::environment(lookup)?;
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let (app, platform) = (get("APP_DATABASE_URL"), get("PLATFORM_DATABASE_URL"));
    if embedded && (app.is_some() || platform.is_some()) {
        bail!(
            "DATABASE_URL is unset but APP_DATABASE_URL / PLATFORM_DATABASE_URL are set: doctor needs the owner URL of \
             that database; set DATABASE_URL"
        );
    }
    let login = |variable: &str, url: Option<String>, embedded_login: &str| -> anyhow::Result<Option<String>> {
        match url {
            Some(url) => Ok(Some(login_of(variable, &url)?)),
            None if embedded => Ok(Some(embedded_login.to_string())),
            None => Ok(None),
        }
    };
    Ok(DoctorContext {
        environment,
        app_login: login("APP_DATABASE_URL", app, doctor::API_LOGIN)?,
        ops_login: login("PLATFORM_DATABASE_URL", platform, doctor::OPS_LOGIN)?,
    })
}

/// The user name of a PostgreSQL URL (never its password).
fn login_of(variable: &str, url: &str) -> anyhow::Result<String> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{variable} {} is not a valid PostgreSQL URL", redact(url)))?;
    Ok(options.get_username().to_string())
}

/// `STATUS  name  message`, padded into columns, and an indented `fix:` under anything not PASS.
fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        out.push_str(&format!("{}  {:<width$}  {}\n", check.status.as_str(), check.name, check.message));
        if let Some(fix) = &check.fix {
            let mut lines = fix.lines();
            if let Some(first) = lines.next() {
                out.push_str(&format!("      fix: {first}\n"));
            }
            for line in lines {
                out.push_str(&format!("           {line}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use carevault_db::Environment;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_context_names_the_pools_logins() {
        let external = context(
            &lookup(&[
                ("ENVIRONMENT", "production"),
                ("APP_DATABASE_URL", "postgres://carevault_api:secret@db/x"),
                ("PLATFORM_DATABASE_URL", ""),
            ]),
            false,
        )
        .expect("valid");
        assert_eq!(
            external,
            DoctorContext {
                environment: Environment::Production,
                app_login: Some("carevault_api".into()),
                ops_login: None,
            }
        );
        let embedded = context(&lookup(&[]), true).expect("valid");
        assert_eq!(embedded.environment, Environment::Development);
        assert_eq!(embedded.app_login.as_deref(), Some("carevault_api"));
        assert_eq!(embedded.ops_login.as_deref(), Some("carevault_ops"));
        assert!(context(&lookup(&[("APP_DATABASE_URL", "postgres://a@b/c")]), true).is_err());
        assert!(context(&lookup(&[("ENVIRONMENT", "prod")]), false).is_err());
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let message = format!("{:#}", login_of("APP_DATABASE_URL", "postgres://u:hunter2@db:notaport/x").unwrap_err());
        assert!(message.contains("APP_DATABASE_URL"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn the_report_has_one_line_per_check_and_indented_fixes() {
        let checks = [
            Check { name: "tls", status: Status::Pass, message: "local Unix socket".into(), fix: None },
            Check {
                name: "login_roles",
                status: Status::Warn,
                message: "superuser".into(),
                fix: Some("CREATE ROLE a;\nCREATE ROLE b;".into()),
            },
        ];
        assert_eq!(
            render(&checks),
            "PASS  tls          local Unix socket\n\
             WARN  login_roles  superuser\n      \
             fix: CREATE ROLE a;\n           \
             CREATE ROLE b;\n"
        );
    }
}
