//! The HTTP API end to end: the real router on a random port, over real HTTP, against a fresh
//! PostgreSQL database per test, connected as the login roles (`carevault_api`, `carevault_ops`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod attacks;
mod audit_chain;
mod audit_filters;
mod bad_input;
mod caller_cache;
mod cross_tenant;
mod endpoints;
mod envelope;
mod helpers;
mod import;
mod limits;
mod provisioning;
mod roles;
mod round_trips;
mod search;
mod tokens;
mod transactions;
