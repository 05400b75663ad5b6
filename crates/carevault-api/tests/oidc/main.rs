//! Authentication against a real, certified OpenID provider: the npm package `oidc-provider`,
//! run locally by `node` (issue 13). The wiremock tests (`tests/auth.rs`) cover the
//! authenticator's rules; these check that it works with what a real provider publishes and
//! signs: discovery, RS256 and ES256 ID tokens from an authorization code flow, key rotation, a
//! custom tenant claim, and one path through the whole API.
//!
//! Needs Node.js >= 20 and npm (and the npm registry on first use): `provider.rs` installs the
//! pinned packages of `node/` itself. Without node the tests fail, saying so; they never skip.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

// The API's `TestApp` (a fresh database and the real router); not every helper is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod provider;
mod through_api;
mod verify;
