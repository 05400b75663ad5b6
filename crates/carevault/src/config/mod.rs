//! The binary's configuration, read from the environment through a lookup closure so that it can
//! be tested without touching the process environment.
//!
//! Every problem is reported at once, each naming the variable and the fix. An empty variable
//! counts as unset (container env files often write `NAME=`). Defaults are the libraries'
//! (`PoolConfig`, `ApiConfig`, `AuthConfig`); `config/variables.json` lists every variable with
//! its default, and the tests in `variables.rs` hold it to the code.
//!
//! - `vars`: the reader and the collected problems (`ConfigError`);
//! - `database`: the pools' URLs or the embedded PostgreSQL;
//! - `listen`: the listen address;
//! - `auth`: token verification (OIDC, development tokens);
//! - `origins`: CORS origins and trusted proxies;
//! - `limits`: connections, header-read timeout and request rate limits;
//! - `audit`: the audit chain's sealer, signing key and checkpoint sink;
//! - `serve`: all of it for `carevault serve`.

mod audit;
mod auth;
mod database;
mod limits;
mod listen;
mod origins;
mod serve;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod variables;
mod vars;

pub use audit::{AuditConfig, audit_config};
pub use auth::auth_config;
pub use database::{DatabaseConfig, embedded_allowed};
pub use listen::{listen_addr, local_addr};
pub use serve::{ServeConfig, serve_config};
pub use vars::environment;
