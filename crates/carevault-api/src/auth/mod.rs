//! Bearer-token authentication (docs/ARCHITECTURE.md, "Authentication").
//!
//! Two token families are accepted, and which one a token belongs to is decided by the
//! *configuration*, never by the token alone:
//!
//! * **IdP tokens** (RS256 / ES256), verified with the public keys the OIDC issuer publishes:
//!   `{OIDC_ISSUER_URL}/.well-known/openid-configuration` → `jwks_uri` → JWK set. The keys are
//!   cached ([`AuthConfig::jwks_ttl`]); a token with an unknown `kid` triggers a refresh at most
//!   once per [`Tuning::min_refresh_interval`] (one minute); a failed refresh keeps the last good
//!   keys, so an IdP outage does not lock users out. The algorithm used to verify a token is the
//!   one of the JWK its `kid` selects (the JWK's own `alg`, or its `kty`/`crv` when `alg` is
//!   absent), so a token cannot pick its own algorithm.
//! * **Development tokens** (HS256), only when [`AuthConfig::hs256_secret`] is set: `iss`
//!   [`DEV_ISSUER`], `aud` [`DEV_AUDIENCE`], minted by [`mint_dev_token`]. The binary refuses to
//!   configure a secret in production.
//!
//! For both, `iss`, `aud`, `exp`, `sub` **and `iat`** are required. `iat` is required because
//! without it the maximum lifetime (`exp - iat <= JWT_MAX_LIFETIME_MINUTES`) cannot be enforced,
//! and a token that cannot be checked is refused rather than trusted. Leeway
//! ([`AuthConfig::leeway`]) applies to `exp`, `nbf` and `iat`.
//!
//! The tenant claim and `sub` are returned raw in [`VerifiedToken`]; resolving them to a tenant
//! and a user (AUTH_005/007/008) is the API's job.
//!
//! Tokens are never logged, and no error message contains token or claim content.
//!
//! ```no_run
//! # async fn demo() -> Result<(), carevault_api::auth::AuthError> {
//! use carevault_api::auth::{AuthConfig, Authenticator};
//!
//! let config = AuthConfig {
//!     issuer: Some("https://idp.example.com".into()),
//!     audience: Some("carevault-client".into()),
//!     ..AuthConfig::default()
//! };
//! let auth = Authenticator::new(config, reqwest::Client::new());
//! auth.refresh().await?; // at startup; readiness stays red until keys_ready()
//! let token = auth.verify("eyJ...").await?;
//! println!("subject {}", token.sub);
//! # Ok(())
//! # }
//! ```

mod claims;
mod jwks;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Map, Value};

use self::jwks::JwksCache;

/// `iss` of the HS256 development tokens.
pub const DEV_ISSUER: &str = "carevault-dev";
/// `aud` of the HS256 development tokens.
pub const DEV_AUDIENCE: &str = "carevault";

/// Default of `JWT_TENANT_CLAIM_NAME`.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant_id";
/// Default of `JWT_MAX_LIFETIME_MINUTES` (60 minutes).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Default of `JWT_LEEWAY_SECONDS`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default of `JWKS_CACHE_TTL_SECONDS`.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(3600);

/// Tokens longer than this are refused before any parsing: real JWTs are a few KiB, and a cap
/// keeps an attacker from making us base64-decode and JSON-parse megabytes per request.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Authentication settings (the `JWT_*`, `OIDC_*` and `JWKS_*` variables of the README's configuration table).
///
/// `Debug` redacts [`hs256_secret`](Self::hs256_secret), so the config can be logged.
#[derive(Clone)]
pub struct AuthConfig {
    /// `OIDC_ISSUER_URL`. Discovery at `{issuer}/.well-known/openid-configuration` (a trailing `/`
    /// is ignored for the URL); a token's `iss` must equal this string exactly. `None`: RS256 and
    /// ES256 tokens are refused.
    pub issuer: Option<String>,
    /// `OIDC_CLIENT_ID`: the `aud` IdP tokens must contain. Required when `issuer` is set (see
    /// [`AuthConfig::validate`]); without it every IdP token is refused.
    pub audience: Option<String>,
    /// `JWT_HS256_SECRET`: enables HS256 development tokens (`iss` [`DEV_ISSUER`], `aud`
    /// [`DEV_AUDIENCE`]). `None`: HS256 tokens are refused.
    pub hs256_secret: Option<String>,
    /// `JWT_TENANT_CLAIM_NAME`, default [`DEFAULT_TENANT_CLAIM`] (e.g. `custom:tenant_id`).
    pub tenant_claim: String,
    /// `JWT_MAX_LIFETIME_MINUTES`: tokens with `exp - iat` above this are refused.
    pub max_lifetime: Duration,
    /// `JWT_LEEWAY_SECONDS`: clock-skew allowance for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// `JWKS_CACHE_TTL_SECONDS`: after this, the next request refreshes the keys in the background.
    pub jwks_ttl: Duration,
}

impl Default for AuthConfig {
    /// No issuer, no HS256 secret (so every token is refused) and the documented defaults.
    fn default() -> Self {
        AuthConfig {
            issuer: None,
            audience: None,
            hs256_secret: None,
            tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            leeway: DEFAULT_LEEWAY,
            jwks_ttl: DEFAULT_JWKS_TTL,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            // Why: configs end up in startup logs; the secret must not.
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "[redacted]"))
            .field("tenant_claim", &self.tenant_claim)
            .field("max_lifetime", &self.max_lifetime)
            .field("leeway", &self.leeway)
            .field("jwks_ttl", &self.jwks_ttl)
            .finish()
    }
}

impl AuthConfig {
    /// Checks the settings that would otherwise make every token fail at request time.
    ///
    /// The error names the variable and the fix, ready for a startup message. Production rules
    /// (no HS256, issuer required) are the binary's business, not checked here.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.issuer, &self.audience) {
            (Some(issuer), _) if !(issuer.starts_with("https://") || issuer.starts_with("http://")) => {
                return Err(format!("OIDC_ISSUER_URL must be an http(s) URL, got {issuer:?}"));
            }
            (Some(_), None) => {
                return Err("OIDC_CLIENT_ID must be set when OIDC_ISSUER_URL is set (it is the expected `aud`)".into());
            }
            (None, Some(_)) => {
                return Err("OIDC_CLIENT_ID is set but OIDC_ISSUER_URL is not: set both or neither".into());
            }
            _ => {}
        }
        if let Some(aud) = &self.audience
            && aud.is_empty()
        {
            return Err("OIDC_CLIENT_ID must not be empty".into());
        }
        if matches!(&self.hs256_secret, Some(s) if s.len() < 32) {
            return Err("JWT_HS256_SECRET must be at least 32 bytes (e.g. `openssl rand -hex 32`)".into());
        }
        if self.tenant_claim.is_empty() {
            return Err("JWT_TENANT_CLAIM_NAME must not be empty".into());
        }
        if ["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "email"].contains(&self.tenant_claim.as_str()) {
            return Err(format!("JWT_TENANT_CLAIM_NAME must not be a registered claim, got {:?}", self.tenant_claim));
        }
        if self.max_lifetime.as_secs() == 0 {
            return Err("JWT_MAX_LIFETIME_MINUTES must be at least 1".into());
        }
        if self.jwks_ttl.as_secs() == 0 {
            return Err("JWKS_CACHE_TTL_SECONDS must be at least 1".into());
        }
        Ok(())
    }
}

/// A verified token's claims that the API uses.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `sub`: a non-empty string (matched to `users.external_idp_id`).
    pub sub: String,
    /// The raw value of the configured tenant claim; `None` when absent or JSON `null`
    /// (→ AUTH_005). The API checks it is a UUID string of an active tenant (→ AUTH_007).
    pub tenant: Option<serde_json::Value>,
    /// `email` when it is a string; other types are ignored.
    pub email: Option<String>,
    /// `email_verified` is `true` (or the string `"true"`). Just-in-time provisioning needs it:
    /// an unverified address could name somebody else.
    pub email_verified: bool,
    /// `iat`, seconds since the Unix epoch (required: see the module docs).
    pub issued_at: i64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Why a token was refused.
///
/// Messages never contain the token or claim values. The answer the API gives to each variant
/// (its error code and HTTP status) is stated once, in [`crate::ApiError`]'s
/// `From<AuthError>`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a JWT, bad base64/JSON, a required claim (`iss`, `aud`, `sub`, `exp`, `iat`) missing or
    /// wrong, or a lifetime above the maximum. Also every [`mint_dev_token`] refusal.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `exp` is in the past beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// Bad signature, unknown `kid`, or an algorithm that is not allowed (`none`, HS256 when not
    /// enabled, RS256/ES256 when no issuer is configured, anything else than RS256/ES256/HS256,
    /// a header `alg` that differs from the selected key's).
    #[error("token signature not accepted: {0}")]
    BadSignature(String),
    /// The IdP's keys could not be fetched and none were ever fetched (not the client's fault).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// Knobs that are not configuration variables; the defaults are what production uses. Tests shorten
/// them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Deadline for one whole refresh (discovery + JWKS). Short, so a slow IdP cannot hang the
    /// requests that wait for it. Default 5 s.
    pub fetch_timeout: Duration,
    /// Request-triggered refreshes (unknown `kid`, no keys yet, keys older than the TTL) happen
    /// at most once per this interval, whatever their outcome, so a flood of tokens with bogus
    /// `kid`s cannot turn us into an amplifier against the IdP. Default 60 s.
    pub min_refresh_interval: Duration,
    /// Largest discovery or JWKS document accepted. Default 256 KiB.
    pub max_document_bytes: usize,
}

/// Default of [`Tuning::fetch_timeout`].
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`Tuning::min_refresh_interval`].
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            max_document_bytes: 256 * 1024,
        }
    }
}

/// Verifies bearer tokens. Cheap to clone (shared state behind an `Arc`); build one at startup
/// and share it.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthConfig,
    /// Built once: the HS256 key for development tokens, when enabled.
    dev_key: Option<DecodingKey>,
    /// Present when an issuer is configured.
    jwks: Option<Arc<JwksCache>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.inner.config)
            .field("keys_ready", &self.keys_ready())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds an authenticator with the default [`Tuning`]. Does no I/O: call
    /// [`refresh`](Self::refresh) at startup.
    ///
    /// `http` is used for discovery and JWKS fetches; a per-refresh deadline is applied on top of
    /// whatever timeouts it has.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Authenticator {
        Self::with_tuning(config, http, Tuning::default())
    }

    /// Like [`new`](Self::new) with explicit [`Tuning`].
    pub fn with_tuning(config: AuthConfig, http: reqwest::Client, tuning: Tuning) -> Authenticator {
        let dev_key = config.hs256_secret.as_deref().map(|s| DecodingKey::from_secret(s.as_bytes()));
        let jwks = config
            .issuer
            .as_ref()
            .map(|issuer| Arc::new(JwksCache::new(issuer.clone(), http, tuning, config.jwks_ttl)));
        Authenticator { inner: Arc::new(Inner { config, dev_key, jwks }) }
    }

    /// Fetches the issuer's discovery document and JWK set now, replacing the cached keys on
    /// success. A failure keeps the previous keys (if any) and returns
    /// [`AuthError::KeysUnavailable`]. `Ok(())` without I/O when no issuer is configured.
    ///
    /// Call it at startup: each call fetches (it is not rate-limited). Concurrent calls are
    /// serialized. Readiness uses [`retry_keys`](Self::retry_keys) instead.
    pub async fn refresh(&self) -> Result<(), AuthError> {
        match &self.inner.jwks {
            Some(jwks) => jwks.refresh_now().await,
            None => Ok(()),
        }
    }

    /// Fetches the issuer's keys again while none were ever fetched, at most once per
    /// `min_refresh_interval` and single flight, sharing that limit with the refreshes that tokens
    /// with an unknown `kid` trigger: an unauthenticated caller polling readiness while the
    /// identity provider is down cannot make the server hammer it. Errors are not returned: look
    /// at [`keys_ready`](Self::keys_ready) afterwards.
    pub async fn retry_keys(&self) {
        if let Some(jwks) = &self.inner.jwks
            && !jwks.has_keys()
        {
            jwks.refresh_on_demand().await;
        }
    }

    /// `true` when no issuer is configured, or the issuer's keys were fetched at least once.
    pub fn keys_ready(&self) -> bool {
        self.inner.jwks.as_ref().is_none_or(|j| j.has_keys())
    }

    /// The configuration this authenticator was built with.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// Verifies a bearer token (without the `Bearer ` prefix): signature, algorithm, `iss`, `aud`,
    /// `exp`, `nbf`, `iat`, `sub`, maximum lifetime.
    ///
    /// May wait for a key refresh (bounded by [`Tuning::fetch_timeout`]) when the token's `kid`
    /// is unknown or no keys were fetched yet.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = claims::parse_header(token)?;
        let config = &self.inner.config;
        // The header's `alg` only routes the token to a key family. What verifies it is decided
        // below by our configuration (HS256 secret) or by the JWK (its own alg), and the
        // `Validation` allows exactly that one algorithm.
        match header.alg.as_str() {
            "HS256" => {
                let key = self
                    .inner
                    .dev_key
                    .as_ref()
                    .ok_or_else(|| AuthError::BadSignature("HS256 tokens are not enabled".into()))?;
                claims::decode_and_check(token, key, Algorithm::HS256, DEV_ISSUER, DEV_AUDIENCE, config)
            }
            "RS256" | "ES256" => {
                let jwks = self.inner.jwks.as_ref().ok_or_else(|| {
                    AuthError::BadSignature(format!(
                        "{} tokens are not accepted: no OIDC issuer configured",
                        header.alg
                    ))
                })?;
                let (Some(issuer), Some(audience)) = (&config.issuer, &config.audience) else {
                    // Fail closed: without an expected audience the token cannot be checked.
                    return Err(AuthError::Malformed("no expected audience configured (OIDC_CLIENT_ID)".into()));
                };
                let candidates = jwks.candidates(header.kid.as_deref(), &header.alg).await?;
                let mut last = AuthError::BadSignature("no key matches the token".into());
                for key in candidates.iter() {
                    match claims::decode_and_check(token, &key.key, key.alg, issuer, audience, config) {
                        // Only a kid-less token has several candidates; try the next on a
                        // signature mismatch, stop on anything else (the signature was good).
                        Err(e @ AuthError::BadSignature(_)) => last = e,
                        other => return other,
                    }
                }
                Err(last)
            }
            other => Err(AuthError::BadSignature(format!("algorithm {} is not allowed", claims::printable(other)))),
        }
    }
}

/// Mints an HS256 development token: `iss` [`DEV_ISSUER`], `aud` [`DEV_AUDIENCE`], `iat` now,
/// `exp` now + `ttl` (whole seconds), `sub`, `tenant_id` under [`AuthConfig::tenant_claim`], and
/// `email` when given.
///
/// Refuses, with [`AuthError::Malformed`] and a message for the operator: no
/// [`AuthConfig::hs256_secret`], `ttl` under one second or above [`AuthConfig::max_lifetime`], an
/// empty `sub`. (Refusing in production is the caller's job.)
///
/// ```
/// use std::time::Duration;
/// use carevault_api::auth::{mint_dev_token, AuthConfig};
///
/// let config = AuthConfig { hs256_secret: Some("0123456789abcdef0123456789abcdef".into()), ..AuthConfig::default() };
/// let tenant = "6f1c2a52-9a7e-4a53-8d8e-2f1f0f7a1c11";
/// let token = mint_dev_token(&config, tenant, "dev-admin", None, Duration::from_secs(3600))?;
/// assert_eq!(token.split('.').count(), 3);
/// assert!(mint_dev_token(&config, tenant, "dev-admin", None, Duration::from_secs(2 * 3600)).is_err());
/// # Ok::<(), carevault_api::auth::AuthError>(())
/// ```
pub fn mint_dev_token(
    config: &AuthConfig,
    tenant_id: &str,
    sub: &str,
    email: Option<&str>,
    ttl: Duration,
) -> Result<String, AuthError> {
    let secret = config
        .hs256_secret
        .as_deref()
        .ok_or_else(|| AuthError::Malformed("development tokens are disabled: JWT_HS256_SECRET is not set".into()))?;
    let ttl_secs = ttl.as_secs();
    if ttl_secs == 0 {
        return Err(AuthError::Malformed("the token lifetime must be at least 1 second".into()));
    }
    if ttl > config.max_lifetime {
        return Err(AuthError::Malformed(format!(
            "a lifetime of {ttl_secs} s is above the maximum of {} s (JWT_MAX_LIFETIME_MINUTES)",
            config.max_lifetime.as_secs()
        )));
    }
    if sub.is_empty() {
        return Err(AuthError::Malformed("`sub` must not be empty".into()));
    }
    let ttl_secs =
        i64::try_from(ttl_secs).map_err(|_| AuthError::Malformed("the token lifetime is out of range".into()))?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(DEV_ISSUER));
    claims.insert("aud".into(), Value::from(DEV_AUDIENCE));
    claims.insert("sub".into(), Value::from(sub));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl_secs));
    claims.insert(config.tenant_claim.clone(), Value::from(tenant_id));
    if let Some(email) = email {
        claims.insert("email".into(), Value::from(email));
        // Minted by the operator, who vouches for the address.
        claims.insert("email_verified".into(), Value::from(true));
    }
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| AuthError::Malformed(format!("signing the development token failed: {e}")))
}
