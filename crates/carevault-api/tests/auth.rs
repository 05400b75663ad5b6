//! JWT / JWKS authentication against a mock identity provider (wiremock serving OIDC discovery
//! and a JWK set). Test keys live in `tests/keys/` (generated with `openssl genpkey`; test-only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use carevault_api::auth::{
    AuthConfig, AuthError, Authenticator, DEV_AUDIENCE, DEV_ISSUER, Tuning, VerifiedToken, mint_dev_token,
};
use carevault_api::{ApiError, ErrorCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AUDIENCE: &str = "carevault-client";
const TENANT: &str = "6f1c2a52-9a7e-4a53-8d8e-2f1f0f7a1c11";
const DEV_SECRET: &str = "test-secret-0123456789abcdef0123456789";

const RSA1_PEM: &[u8] = include_bytes!("keys/rsa1.pem");
const RSA1_PUB_PEM: &[u8] = include_bytes!("keys/rsa1.pub.pem");
const RSA2_PEM: &[u8] = include_bytes!("keys/rsa2.pem");
const EC1_PEM: &[u8] = include_bytes!("keys/ec1.pem");

// ---------------------------------------------------------------------------------------------
// helpers

/// A signing key with its public JWK, as an IdP would publish it.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn rsa(kid: &'static str, pem: &[u8]) -> TestKey {
        Self::build(kid, Algorithm::RS256, EncodingKey::from_rsa_pem(pem).unwrap())
    }

    fn ec(kid: &'static str, pem: &[u8]) -> TestKey {
        Self::build(kid, Algorithm::ES256, EncodingKey::from_ec_pem(pem).unwrap())
    }

    fn build(kid: &'static str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        // The public components (n/e, x/y) are derived from the private key, so the fixture
        // cannot drift from the PEM files.
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey { kid, alg, encoding, jwk }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A valid IdP token's claims for `issuer`.
fn claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "idp-user-1",
        "iat": now,
        "exp": now + 600,
        "tenant_id": TENANT,
        "email": "ada@example.com",
    })
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Builds a token by hand (for headers jsonwebtoken refuses to produce, like `alg: none`).
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()), b64url(signature))
}

/// A mock IdP: discovery at `/.well-known/openid-configuration`, keys at `/jwks`.
struct Idp {
    server: MockServer,
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Idp {
        let idp = Idp { server: MockServer::start().await };
        idp.serve(keys, Duration::ZERO).await;
        idp
    }

    fn issuer(&self) -> String {
        self.server.uri()
    }

    /// Replaces whatever the IdP served with discovery + these keys, answered after `delay`.
    async fn serve(&self, keys: &[&TestKey], delay: Duration) {
        self.serve_jwks(json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }), delay).await;
    }

    async fn serve_jwks(&self, jwks: Value, delay: Duration) {
        self.server.reset().await;
        let discovery = json!({
            "issuer": self.issuer(),
            "jwks_uri": format!("{}/jwks", self.issuer()),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        });
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks).set_delay(delay))
            .mount(&self.server)
            .await;
    }

    /// The IdP answers 503 to everything.
    async fn go_down(&self) {
        self.server.reset().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&self.server).await;
    }

    /// JWKS requests received since the last `reset` (i.e. since the last `serve`/`go_down`),
    /// counting failed ones too.
    async fn jwks_fetches(&self) -> usize {
        self.server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == "/jwks").count()
    }
}

fn idp_config(issuer: &str) -> AuthConfig {
    AuthConfig { issuer: Some(issuer.to_owned()), audience: Some(AUDIENCE.to_owned()), ..AuthConfig::default() }
}

fn dev_config() -> AuthConfig {
    AuthConfig { hs256_secret: Some(DEV_SECRET.to_owned()), ..AuthConfig::default() }
}

/// Short fetch deadline so the slow-IdP tests stay fast; production rate limit (60 s).
fn tuning() -> Tuning {
    Tuning { fetch_timeout: Duration::from_secs(1), ..Tuning::default() }
}

fn authenticator(config: AuthConfig) -> Authenticator {
    Authenticator::with_tuning(config, reqwest::Client::new(), tuning())
}

async fn ready_authenticator(idp: &Idp) -> Authenticator {
    let auth = authenticator(idp_config(&idp.issuer()));
    auth.refresh().await.unwrap();
    assert!(auth.keys_ready());
    auth
}

#[track_caller]
fn assert_malformed(result: Result<VerifiedToken, AuthError>, needle: &str) {
    match result {
        Err(AuthError::Malformed(message)) => {
            assert!(message.contains(needle), "message {message:?} should mention {needle:?}")
        }
        other => panic!("expected Malformed({needle}), got {other:?}"),
    }
}

#[track_caller]
fn assert_bad_signature(result: Result<VerifiedToken, AuthError>) {
    assert!(matches!(result, Err(AuthError::BadSignature(_))), "expected BadSignature, got {result:?}");
}

// ---------------------------------------------------------------------------------------------
// valid tokens

#[tokio::test]
async fn valid_rs256_and_es256_tokens_verify() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let ec = TestKey::ec("ec-1", EC1_PEM);
    let idp = Idp::start(&[&rsa, &ec]).await;
    let auth = ready_authenticator(&idp).await;

    for key in [&rsa, &ec] {
        let claims = claims(&idp.issuer());
        let verified = auth.verify(&key.sign(&claims)).await.unwrap();
        assert_eq!(
            verified,
            VerifiedToken {
                sub: "idp-user-1".into(),
                tenant: Some(json!(TENANT)),
                email: Some("ada@example.com".into()),
                email_verified: false,
                issued_at: claims["iat"].as_i64().unwrap(),
                expires_at: claims["exp"].as_i64().unwrap(),
            }
        );
    }
    // Both verified from the one fetch done by refresh().
    assert_eq!(idp.jwks_fetches().await, 1);
}

#[tokio::test]
async fn audience_array_containing_ours_and_custom_tenant_claim_are_accepted() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let config = AuthConfig { tenant_claim: "custom:tenant_id".into(), ..idp_config(&idp.issuer()) };
    let auth = authenticator(config);
    auth.refresh().await.unwrap();

    let mut claims = claims(&idp.issuer());
    claims["aud"] = json!(["other-client", AUDIENCE]);
    claims["custom:tenant_id"] = json!(TENANT);
    claims.as_object_mut().unwrap().remove("tenant_id");
    let verified = auth.verify(&rsa.sign(&claims)).await.unwrap();
    assert_eq!(verified.tenant, Some(json!(TENANT)));

    // Absent tenant claim: verified, tenant None (the API answers AUTH_005).
    claims.as_object_mut().unwrap().remove("custom:tenant_id");
    assert_eq!(auth.verify(&rsa.sign(&claims)).await.unwrap().tenant, None);
}

#[tokio::test]
async fn token_without_kid_verifies_against_the_matching_key() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let other = TestKey::rsa("rsa-2", RSA2_PEM);
    let idp = Idp::start(&[&other, &rsa]).await;
    let auth = ready_authenticator(&idp).await;

    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(&idp.issuer()), &rsa.encoding).unwrap();
    assert_eq!(auth.verify(&token).await.unwrap().sub, "idp-user-1");
}

// ---------------------------------------------------------------------------------------------
// JWKS cache behaviour

#[tokio::test]
async fn key_rotation_new_kid_verifies_after_one_refresh() {
    let old = TestKey::rsa("rsa-1", RSA1_PEM);
    let new = TestKey::rsa("rsa-2", RSA2_PEM);
    let idp = Idp::start(&[&old]).await;
    let auth = ready_authenticator(&idp).await;

    // The IdP rotates: the new key appears.
    idp.serve(&[&old, &new], Duration::ZERO).await;
    let verified = auth.verify(&new.sign(&claims(&idp.issuer()))).await.unwrap();
    assert_eq!(verified.sub, "idp-user-1");
    assert_eq!(idp.jwks_fetches().await, 1, "the unknown kid triggered exactly one refresh");

    // Both keys keep verifying without further fetches.
    auth.verify(&old.sign(&claims(&idp.issuer()))).await.unwrap();
    auth.verify(&new.sign(&claims(&idp.issuer()))).await.unwrap();
    assert_eq!(idp.jwks_fetches().await, 1);
}

#[tokio::test]
async fn idp_down_after_first_fetch_keeps_the_old_keys() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    // TTL 0: every verification sees stale keys and tries a (background) refresh.
    let config = AuthConfig { jwks_ttl: Duration::ZERO, ..idp_config(&idp.issuer()) };
    let auth = authenticator(config);
    auth.refresh().await.unwrap();

    idp.go_down().await;
    assert!(matches!(auth.refresh().await, Err(AuthError::KeysUnavailable(_))));
    assert!(auth.keys_ready(), "a failed refresh must not drop the keys");
    for _ in 0..3 {
        auth.verify(&rsa.sign(&claims(&idp.issuer()))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stale keys triggered one background attempt, not one per request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempts = idp.server.received_requests().await.unwrap().len();
    // refresh() above: discovery (503) = 1 request; background: 1 more.
    assert_eq!(attempts, 2, "requests to the IdP while down: {attempts}");
}

#[tokio::test]
async fn idp_down_at_start_means_keys_unavailable() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    idp.go_down().await;
    let auth = authenticator(idp_config(&idp.issuer()));

    let err = auth.refresh().await.unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(answer(err).status(), 503);
    assert!(!auth.keys_ready());
    let result = auth.verify(&rsa.sign(&claims(&idp.issuer()))).await;
    assert!(matches!(result, Err(AuthError::KeysUnavailable(_))), "{result:?}");

    // The IdP comes back: the next forced refresh (readiness) recovers.
    idp.serve(&[&rsa], Duration::ZERO).await;
    auth.refresh().await.unwrap();
    assert!(auth.keys_ready());
    auth.verify(&rsa.sign(&claims(&idp.issuer()))).await.unwrap();
}

#[tokio::test]
async fn readiness_retries_of_the_keys_are_rate_limited() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    idp.go_down().await;
    let auth = authenticator(idp_config(&idp.issuer()));
    // What 200 readiness probes do while the IdP has been down since the start: one fetch (one
    // discovery request), not 200.
    for _ in 0..200 {
        auth.retry_keys().await;
    }
    assert!(!auth.keys_ready());
    let attempts = idp.server.received_requests().await.unwrap().len();
    assert_eq!(attempts, 1, "requests to the IdP: {attempts}");
    // Tokens with an unknown kid share the same limit.
    let result = auth.verify(&rsa.sign(&claims(&idp.issuer()))).await;
    assert!(matches!(result, Err(AuthError::KeysUnavailable(_))), "{result:?}");
    assert_eq!(idp.server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn slow_idp_cannot_hang_requests() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    idp.serve(&[&rsa], Duration::from_secs(30)).await;
    let auth = authenticator(idp_config(&idp.issuer()));

    let started = Instant::now();
    assert!(matches!(auth.refresh().await, Err(AuthError::KeysUnavailable(_))));
    let result = auth.verify(&rsa.sign(&claims(&idp.issuer()))).await;
    assert!(matches!(result, Err(AuthError::KeysUnavailable(_))), "{result:?}");
    // Two fetch deadlines of 1 s (forced refresh + the request's first on-demand one).
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());

    // Rate-limited from now on: the next request does not wait at all.
    let started = Instant::now();
    let result = auth.verify(&rsa.sign(&claims(&idp.issuer()))).await;
    assert!(matches!(result, Err(AuthError::KeysUnavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(800), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn slow_idp_does_not_delay_known_keys_when_the_cache_is_stale() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let config = AuthConfig { jwks_ttl: Duration::ZERO, ..idp_config(&idp.issuer()) };
    let auth = authenticator(config);
    auth.refresh().await.unwrap();

    idp.serve(&[&rsa], Duration::from_secs(30)).await;
    let started = Instant::now();
    for _ in 0..5 {
        auth.verify(&rsa.sign(&claims(&idp.issuer()))).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(800), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn bogus_kid_flood_causes_at_most_one_jwks_fetch() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    // Slow enough that the flood piles up behind the one refresh in flight.
    idp.serve(&[&rsa], Duration::from_millis(300)).await;

    for wave in 0..2 {
        let tokens: Vec<String> = (0..50)
            .map(|i| rsa.sign_as(&format!("bogus-{wave}-{i}-{}", uuid::Uuid::new_v4()), &claims(&idp.issuer())))
            .collect();
        let results = futures::future::join_all(tokens.iter().map(|t| auth.verify(t))).await;
        for result in results {
            assert_bad_signature(result);
        }
        assert_eq!(idp.jwks_fetches().await, 1, "after wave {wave}");
    }
    // Real tokens are unaffected.
    auth.verify(&rsa.sign(&claims(&idp.issuer()))).await.unwrap();
}

#[tokio::test]
async fn concurrent_cold_start_fetches_once() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    idp.serve(&[&rsa], Duration::from_millis(200)).await;
    let auth = authenticator(idp_config(&idp.issuer()));

    let token = rsa.sign(&claims(&idp.issuer()));
    let results = futures::future::join_all((0..20).map(|_| auth.verify(&token))).await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(idp.jwks_fetches().await, 1);
}

#[tokio::test]
async fn discovery_with_another_issuer_is_refused() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    // Configured with a trailing slash: the IdP says its issuer has none.
    let auth = authenticator(idp_config(&format!("{}/", idp.issuer())));
    match auth.refresh().await {
        Err(AuthError::KeysUnavailable(message)) => assert!(message.contains("issuer"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(!auth.keys_ready());
}

#[tokio::test]
async fn jwks_without_usable_keys_keeps_the_previous_set() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;

    // Only an encryption key and a symmetric key: nothing we may verify with.
    let mut enc = rsa.jwk.clone();
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc-1");
    let oct = json!({"kty": "oct", "k": b64url(b"shared-secret-shared-secret-1234"), "kid": "sym", "alg": "HS256"});
    idp.serve_jwks(json!({ "keys": [enc, oct] }), Duration::ZERO).await;
    assert!(matches!(auth.refresh().await, Err(AuthError::KeysUnavailable(_))));
    auth.verify(&rsa.sign(&claims(&idp.issuer()))).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// algorithm attacks → AUTH_004

#[tokio::test]
async fn alg_none_is_refused() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims(&idp.issuer()), b"");
        let result = auth.verify(&token).await;
        assert_bad_signature(result);
    }
    // Also with HS256 enabled.
    let dev = authenticator(dev_config());
    let token = raw_token(&json!({"alg": "none"}), &claims(DEV_ISSUER), b"");
    assert_bad_signature(dev.verify(&token).await);
}

#[tokio::test]
async fn other_algorithms_are_refused() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    // RS384 with the right key and kid: still not an allowed algorithm.
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&header, &claims(&idp.issuer()), &rsa.encoding).unwrap();
    assert_bad_signature(auth.verify(&token).await);
    // ES256 header on an RSA kid: the key's algorithm decides.
    let token = raw_token(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims(&idp.issuer()), &[0u8; 64]);
    assert_bad_signature(auth.verify(&token).await);
}

#[tokio::test]
async fn hs256_is_refused_when_not_enabled() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    let token = mint_dev_token(&dev_config(), TENANT, "dev-user", None, Duration::from_secs(600)).unwrap();
    assert_bad_signature(auth.verify(&token).await);
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion attack: HMAC keyed with the (public) RSA key, kid of the RSA key.
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let n = rsa.jwk["n"].as_str().unwrap().to_owned();
    let attacks = [
        (RSA1_PUB_PEM.to_vec(), claims(&idp.issuer())),
        (n.clone().into_bytes(), claims(&idp.issuer())),
        (RSA1_PUB_PEM.to_vec(), claims(DEV_ISSUER)),
    ];
    // Neither with HS256 disabled, nor with it enabled (the secret is ours, not the public key).
    for config in
        [idp_config(&idp.issuer()), AuthConfig { hs256_secret: Some(DEV_SECRET.into()), ..idp_config(&idp.issuer()) }]
    {
        let auth = authenticator(config);
        auth.refresh().await.unwrap();
        for (secret, claims) in &attacks {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("rsa-1".into());
            let token = jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap();
            assert_bad_signature(auth.verify(&token).await);
        }
    }
}

#[tokio::test]
async fn wrong_key_and_unknown_kid_are_refused() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let impostor = TestKey::rsa("rsa-1", RSA2_PEM); // same kid, other private key
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    assert_bad_signature(auth.verify(&impostor.sign(&claims(&idp.issuer()))).await);
    assert_bad_signature(auth.verify(&rsa.sign_as("nope", &claims(&idp.issuer()))).await);
    // A tampered payload under a genuine signature.
    let token = rsa.sign(&claims(&idp.issuer()));
    let parts: Vec<&str> = token.split('.').collect();
    let mut evil = claims(&idp.issuer());
    evil["sub"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64url(evil.to_string().as_bytes()), parts[2]);
    assert_bad_signature(auth.verify(&forged).await);
}

#[tokio::test]
async fn rs256_token_without_configured_issuer_is_refused() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let auth = authenticator(dev_config());
    assert!(auth.keys_ready());
    auth.refresh().await.unwrap();
    assert_bad_signature(auth.verify(&rsa.sign(&claims("https://idp.example.com"))).await);
}

// ---------------------------------------------------------------------------------------------
// claims → AUTH_001 / AUTH_003

#[tokio::test]
async fn expired_and_not_yet_valid_tokens() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    let now = now();
    let with = |patch: Value| {
        let mut c = claims(&idp.issuer());
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        rsa.sign(&c)
    };

    let expired = auth.verify(&with(json!({"iat": now - 900, "exp": now - 120}))).await;
    assert!(matches!(expired, Err(AuthError::Expired)), "{expired:?}");
    // Within the 30 s leeway.
    auth.verify(&with(json!({"iat": now - 900, "exp": now - 10}))).await.unwrap();

    let nbf = auth.verify(&with(json!({"nbf": now + 300}))).await;
    assert!(matches!(nbf, Err(AuthError::NotYetValid)), "{nbf:?}");
    auth.verify(&with(json!({"nbf": now + 10}))).await.unwrap();

    let iat = auth.verify(&with(json!({"iat": now + 300, "exp": now + 900}))).await;
    assert!(matches!(iat, Err(AuthError::NotYetValid)), "{iat:?}");
    auth.verify(&with(json!({"iat": now + 10}))).await.unwrap();

    assert_eq!(answer(AuthError::Expired), ErrorCode::Auth003);
    assert_eq!(answer(AuthError::NotYetValid), ErrorCode::Auth003);
}

#[tokio::test]
async fn lifetime_and_required_claims() {
    let rsa = TestKey::rsa("rsa-1", RSA1_PEM);
    let idp = Idp::start(&[&rsa]).await;
    let auth = ready_authenticator(&idp).await;
    let now = now();
    let issuer = idp.issuer();
    let sign = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims(&issuer);
        edit(c.as_object_mut().unwrap());
        rsa.sign(&c)
    };

    // Lifetime: 2 h against a 60 min maximum; exactly 60 min is fine.
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("exp".into(), json!(now + 7200));
        }))
        .await,
        "lifetime",
    );
    auth.verify(&sign(&|c| {
        c.insert("exp".into(), json!(now + 3600));
    }))
    .await
    .unwrap();

    for (claim, needle) in [("iss", "iss"), ("aud", "aud"), ("sub", "sub"), ("exp", "exp"), ("iat", "iat")] {
        let result = auth
            .verify(&sign(&|c| {
                c.remove(claim);
            }))
            .await;
        assert_malformed(result, needle);
    }

    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("iss".into(), json!("https://evil.example.com"));
        }))
        .await,
        "iss",
    );
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("iss".into(), json!([issuer.clone(), "https://evil.example.com"]));
        }))
        .await,
        "iss",
    );
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("aud".into(), json!("another-client"));
        }))
        .await,
        "aud",
    );
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("sub".into(), json!(""));
        }))
        .await,
        "sub",
    );
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("sub".into(), json!(42));
        }))
        .await,
        "sub",
    );
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("exp".into(), json!("tomorrow"));
        }))
        .await,
        "exp",
    );
    // A dev-issuer token signed by the IdP key is not a dev token.
    assert_malformed(
        auth.verify(&sign(&|c| {
            c.insert("iss".into(), json!(DEV_ISSUER));
        }))
        .await,
        "iss",
    );
    assert_eq!(answer(AuthError::Malformed(String::new())), ErrorCode::Auth001);
}

#[tokio::test]
async fn garbage_is_malformed() {
    let auth = authenticator(dev_config());
    for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.", &"a".repeat(20_000)] {
        assert_malformed(auth.verify(token).await, "");
    }
    // Header that is JSON but not an object / has no alg.
    assert_malformed(auth.verify(&format!("{}.e30.c2ln", b64url(b"[1]"))).await, "header");
    assert_malformed(auth.verify(&format!("{}.e30.c2ln", b64url(b"{\"typ\":\"JWT\"}"))).await, "alg");
    // Valid signature over a payload that is not a JSON object.
    let mut header = Header::new(Algorithm::HS256);
    header.typ = None;
    let token =
        jsonwebtoken::encode(&header, &json!([1, 2]), &EncodingKey::from_secret(DEV_SECRET.as_bytes())).unwrap();
    assert_malformed(auth.verify(&token).await, "");
}

// ---------------------------------------------------------------------------------------------
// development tokens

#[tokio::test]
async fn dev_token_round_trips() {
    let config = AuthConfig { tenant_claim: "custom:tenant_id".into(), ..dev_config() };
    let auth = authenticator(config.clone());
    let token =
        mint_dev_token(&config, TENANT, "dev-admin", Some("admin@example.com"), Duration::from_secs(900)).unwrap();
    let verified = auth.verify(&token).await.unwrap();
    assert_eq!(verified.sub, "dev-admin");
    assert_eq!(verified.tenant, Some(json!(TENANT)));
    assert_eq!(verified.email.as_deref(), Some("admin@example.com"));
    assert_eq!(verified.expires_at - verified.issued_at, 900);

    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["iss"], DEV_ISSUER);
    assert_eq!(claims["aud"], DEV_AUDIENCE);

    // Another secret → bad signature; HS256 disabled → bad signature.
    let other = authenticator(AuthConfig { hs256_secret: Some("another-secret-0123456789abcdef01".into()), ..config });
    assert_bad_signature(other.verify(&token).await);
    assert_bad_signature(authenticator(AuthConfig::default()).verify(&token).await);
}

#[tokio::test]
async fn dev_tokens_are_held_to_the_same_claim_rules() {
    let auth = authenticator(dev_config());
    let key = EncodingKey::from_secret(DEV_SECRET.as_bytes());
    let now = now();
    let sign = |claims: Value| jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    let base = json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "u", "iat": now, "exp": now + 60});
    auth.verify(&sign(base.clone())).await.unwrap();

    let mut wrong_aud = base.clone();
    wrong_aud["aud"] = json!(AUDIENCE);
    assert_malformed(auth.verify(&sign(wrong_aud)).await, "aud");
    let mut too_long = base.clone();
    too_long["exp"] = json!(now + 3601);
    assert_malformed(auth.verify(&sign(too_long)).await, "lifetime");
    let mut expired = base;
    expired["iat"] = json!(now - 600);
    expired["exp"] = json!(now - 300);
    assert!(matches!(auth.verify(&sign(expired)).await, Err(AuthError::Expired)));
}

#[test]
fn mint_dev_token_refusals() {
    let config = dev_config();
    let max = config.max_lifetime;
    assert!(mint_dev_token(&config, TENANT, "u", None, max).is_ok());
    for ttl in [max + Duration::from_secs(1), Duration::ZERO, Duration::from_millis(500)] {
        let err = mint_dev_token(&config, TENANT, "u", None, ttl).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{ttl:?}: {err:?}");
    }
    let err = mint_dev_token(&config, TENANT, "u", None, max * 2).unwrap_err();
    assert!(err.to_string().contains("maximum"), "{err}");
    let err = mint_dev_token(&AuthConfig::default(), TENANT, "u", None, Duration::from_secs(60)).unwrap_err();
    assert!(err.to_string().contains("JWT_HS256_SECRET"), "{err}");
    assert!(mint_dev_token(&config, TENANT, "", None, Duration::from_secs(60)).is_err());
}

// ---------------------------------------------------------------------------------------------
// configuration

#[test]
fn config_validation_and_debug_redaction() {
    assert!(AuthConfig::default().validate().is_ok());
    assert!(idp_config("https://idp.example.com").validate().is_ok());
    let no_aud = AuthConfig { audience: None, ..idp_config("https://idp.example.com") };
    assert!(no_aud.validate().unwrap_err().contains("OIDC_CLIENT_ID"));
    let weak = AuthConfig { hs256_secret: Some("short".into()), ..AuthConfig::default() };
    assert!(weak.validate().unwrap_err().contains("JWT_HS256_SECRET"));
    let reserved = AuthConfig { tenant_claim: "sub".into(), ..AuthConfig::default() };
    assert!(reserved.validate().unwrap_err().contains("JWT_TENANT_CLAIM_NAME"));

    let debug = format!("{:?}", dev_config());
    assert!(!debug.contains(DEV_SECRET), "{debug}");
    assert!(debug.contains("redacted"));
    let debug = format!("{:?}", authenticator(dev_config()));
    assert!(!debug.contains(DEV_SECRET), "{debug}");
}

#[test]
fn error_codes_and_statuses() {
    assert_eq!(answer(AuthError::BadSignature(String::new())), ErrorCode::Auth004);
    assert_eq!(answer(AuthError::BadSignature(String::new())).status(), 401);
    assert_eq!(answer(AuthError::KeysUnavailable(String::new())).status(), 503);
}

/// The API's answer to a refused token: the mapping the extractor uses.
fn answer(error: AuthError) -> ErrorCode {
    ApiError::from(error).code
}
