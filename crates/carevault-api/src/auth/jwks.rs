//! OIDC discovery and the JWK-set cache.
//!
//! A small cache of our own (no crate fits: docs/ARCHITECTURE.md, "Dependencies"). Its rules:
//! * keys live in an `RwLock<Option<Arc<KeySet>>>`, swapped whole on a successful fetch and
//!   never cleared: a failed fetch keeps the last good keys (IdP outage ≠ lockout);
//! * fetches are serialized by one async mutex (single flight), and request-triggered ones happen
//!   at most once per `min_refresh_interval` whatever their outcome, so a flood of tokens with
//!   random `kid`s costs the IdP one request per minute at most;
//! * a request that waited for the mutex while someone else fetched does not fetch again
//!   (generation counter);
//! * keys older than the TTL are refreshed in the background while the old ones keep serving;
//! * every fetch (discovery + JWKS together) has a deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{AuthError, Tuning};

/// One usable verification key.
pub(crate) struct KeyEntry {
    pub(crate) kid: Option<String>,
    /// The algorithm this key verifies: from the JWK, never from a token.
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

struct KeySet {
    keys: Vec<KeyEntry>,
    fetched_at: Instant,
}

impl KeySet {
    fn find(&self, kid: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The candidate keys for one token (shares the key set, no copying).
pub(crate) struct Candidates {
    set: Arc<KeySet>,
    indices: Vec<usize>,
}

impl Candidates {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.indices.iter().filter_map(|&i| self.set.keys.get(i))
    }
}

struct RefreshState {
    /// When the last request-triggered refresh started (the rate limit's clock).
    last_on_demand: Option<Instant>,
    /// From discovery; cleared when a JWKS fetch fails so the next refresh rediscovers.
    jwks_uri: Option<String>,
}

pub(crate) struct JwksCache {
    issuer: String,
    http: reqwest::Client,
    tuning: Tuning,
    /// `JWKS_CACHE_TTL_SECONDS`.
    ttl: Duration,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Bumped after every completed fetch attempt, successful or not.
    generation: AtomicU64,
    refresh: Arc<tokio::sync::Mutex<RefreshState>>,
}

impl JwksCache {
    pub(crate) fn new(issuer: String, http: reqwest::Client, tuning: Tuning, ttl: Duration) -> JwksCache {
        JwksCache {
            issuer,
            http,
            tuning,
            ttl,
            keys: RwLock::new(None),
            generation: AtomicU64::new(0),
            refresh: Arc::new(tokio::sync::Mutex::new(RefreshState { last_on_demand: None, jwks_uri: None })),
        }
    }

    pub(crate) fn has_keys(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        // A poisoned lock only means a panic elsewhere while holding it; the Option inside is
        // always a consistent value (we only ever assign whole values).
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn is_stale(&self, set: &KeySet) -> bool {
        set.fetched_at.elapsed() >= self.ttl
    }

    /// Forced refresh (startup, readiness): not rate-limited, serialized with the others.
    pub(crate) async fn refresh_now(&self) -> Result<(), AuthError> {
        let mut state = self.refresh.lock().await;
        self.fetch_locked(&mut state).await
    }

    /// Request-triggered refresh: single flight, rate-limited. Errors are logged, not returned:
    /// the caller looks at the keys afterwards either way.
    pub(crate) async fn refresh_on_demand(&self) {
        let seen = self.generation.load(Ordering::Acquire);
        let mut state = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return; // someone fetched while we waited: use their result
        }
        if !self.on_demand_allowed(&mut state) {
            return;
        }
        let _ = self.fetch_locked(&mut state).await;
    }

    /// Rate limit check; records the attempt when allowed.
    fn on_demand_allowed(&self, state: &mut RefreshState) -> bool {
        if state.last_on_demand.is_some_and(|t| t.elapsed() < self.tuning.min_refresh_interval) {
            return false;
        }
        state.last_on_demand = Some(Instant::now());
        true
    }

    /// Keys past their TTL keep serving while one background task refreshes them; no request
    /// waits for it. Skipped when a refresh is already running or was tried recently.
    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let Ok(mut state) = self.refresh.clone().try_lock_owned() else { return };
        if !self.on_demand_allowed(&mut state) {
            return;
        }
        let this = Arc::clone(self);
        handle.spawn(async move {
            let _ = this.fetch_locked(&mut state).await;
        });
    }

    /// The keys a token may be verified with: the one its `kid` names, or, for a token without
    /// `kid`, every key whose algorithm equals the header's (the key's algorithm still decides).
    pub(crate) async fn candidates(self: &Arc<Self>, kid: Option<&str>, alg: &str) -> Result<Candidates, AuthError> {
        let mut refreshed = false;
        let set = match self.current() {
            Some(set) => {
                if self.is_stale(&set) {
                    self.refresh_in_background();
                }
                set
            }
            None => {
                self.refresh_on_demand().await;
                refreshed = true;
                self.current().ok_or_else(|| {
                    AuthError::KeysUnavailable("the identity provider's keys have not been fetched yet".into())
                })?
            }
        };

        let Some(kid) = kid else {
            let indices = (0..set.keys.len()).filter(|&i| set.keys[i].alg_name() == alg).collect::<Vec<_>>();
            if indices.is_empty() {
                return Err(AuthError::BadSignature("the token has no `kid` and no key matches its algorithm".into()));
            }
            return Ok(Candidates { set, indices });
        };

        let set = if set.find(kid).is_some() || refreshed {
            set
        } else {
            // Unknown kid: perhaps the IdP rotated its keys.
            self.refresh_on_demand().await;
            self.current().unwrap_or(set)
        };
        let index = set
            .keys
            .iter()
            .position(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| AuthError::BadSignature("unknown key id (`kid`)".into()))?;
        if set.keys[index].alg_name() != alg {
            return Err(AuthError::BadSignature("the token's algorithm does not match its key".into()));
        }
        Ok(Candidates { set, indices: vec![index] })
    }

    /// One fetch attempt under the refresh mutex, with its deadline; installs the keys on success.
    async fn fetch_locked(&self, state: &mut RefreshState) -> Result<(), AuthError> {
        let result = match tokio::time::timeout(self.tuning.fetch_timeout, self.fetch(state)).await {
            Ok(result) => result,
            Err(_) => Err(format!("fetching the signing keys took longer than {:?}", self.tuning.fetch_timeout)),
        };
        let outcome = match result {
            Ok(set) => {
                let count = set.keys.len();
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                tracing::info!(issuer = %self.issuer, keys = count, "fetched the identity provider's signing keys");
                Ok(())
            }
            Err(message) => {
                // Rediscover next time: the jwks_uri may have moved.
                state.jwks_uri = None;
                tracing::warn!(
                    issuer = %self.issuer,
                    error = %message,
                    keeping_previous_keys = self.has_keys(),
                    "refreshing the identity provider's signing keys failed"
                );
                Err(AuthError::KeysUnavailable(message))
            }
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<KeySet, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discover().await?,
        };
        let raw: RawJwks = self.get_json(&jwks_uri).await?;
        let set = parse_key_set(raw)?;
        state.jwks_uri = Some(jwks_uri);
        Ok(set)
    }

    async fn discover(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let doc: Discovery = self.get_json(&url).await?;
        // OpenID Connect Discovery §4.3: the document's issuer must be the one we asked for.
        // Also catches the classic misconfiguration of a missing/extra trailing slash, which
        // would otherwise make every token's `iss` check fail.
        if doc.issuer != self.issuer {
            return Err(format!(
                "the discovery document's issuer {:?} differs from OIDC_ISSUER_URL {:?}",
                doc.issuer, self.issuer
            ));
        }
        if self.issuer.starts_with("https://") && !doc.jwks_uri.starts_with("https://") {
            return Err("the discovery document's jwks_uri is not https".into());
        }
        Ok(doc.jwks_uri)
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.tuning.fetch_timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let max = self.tuning.max_document_bytes;
        if response.content_length().is_some_and(|len| len > max as u64) {
            return Err(format!("GET {url}: document larger than {max} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > max {
                return Err(format!("GET {url}: document larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON document: {e}"))
    }
}

impl KeyEntry {
    fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            // parse_key_set admits no other algorithm.
            _ => "",
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// Keeps the RS256 and ES256 (P-256) signature keys; skips the rest (encryption keys, other
/// algorithms, keys we cannot parse) so one odd key does not make the whole set unusable.
fn parse_key_set(raw: RawJwks) -> Result<KeySet, String> {
    let total = raw.keys.len();
    let mut keys: Vec<KeyEntry> = Vec::with_capacity(total);
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
            continue;
        }
        let Some(alg) = key_algorithm(&jwk) else { continue };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        let kid = jwk.common.key_id;
        if let Some(kid) = &kid
            && keys.iter().any(|k| k.kid.as_deref() == Some(kid))
        {
            // Ambiguous; the first one wins, as in JwkSet::find.
            continue;
        }
        keys.push(KeyEntry { kid, alg, key });
    }
    if keys.is_empty() {
        return Err(format!("the JWK set has no usable RS256/ES256 signature key ({total} keys in the set)"));
    }
    if keys.len() < total {
        tracing::debug!(usable = keys.len(), total, "skipped JWKs that are not RS256/ES256 signature keys");
    }
    Ok(KeySet { keys, fetched_at: Instant::now() })
}

/// The one algorithm a JWK verifies. Its own `alg` when present (only RS256/ES256 are admitted);
/// otherwise implied by `kty` (RSA → RS256) and `crv` (P-256 → ES256).
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(rsa), None | Some(KeyAlgorithm::RS256)) => {
            // aws-lc refuses RSA keys under 2048 bits at verification time; skip them up front.
            let n = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
            let significant = n.iter().skip_while(|&&b| b == 0).count();
            (significant * 8 >= 2048).then_some(Algorithm::RS256)
        }
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            let x = URL_SAFE_NO_PAD.decode(&ec.x).ok()?;
            let y = URL_SAFE_NO_PAD.decode(&ec.y).ok()?;
            (x.len() == 32 && y.len() == 32).then_some(Algorithm::ES256)
        }
        _ => None,
    }
}
