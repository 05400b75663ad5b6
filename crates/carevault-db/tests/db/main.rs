//! Database tests, on real PostgreSQL 18 + pgvector, as the runtime role.
//!
//! One test binary (link once), one fresh database per test, cloned from a migrated template by
//! `carevault-testdb`. Isolation is always checked as `carevault_app`: through the data layer
//! (which switches to it) or through a raw session of the login role `carevault_api` that
//! switches to it, the way an attacker holding those credentials would (docs/THREAT_MODEL.md, attacker B).
//! The superuser URL is used only to set up fixtures and to test triggers that must stop even
//! the owner.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod attacks;
mod attacks_context;
mod audit_catalogue;
mod audit_chain;
mod bootstrap;
mod catalog;
mod cluster;
mod docs;
mod docs_audit_actions;
mod doctor;
mod doctor_facts;
mod fixtures;
mod import;
mod isolation;
mod property;
mod reference;
mod search;
