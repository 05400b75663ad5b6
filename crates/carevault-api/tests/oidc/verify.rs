//! The authenticator against the provider: discovery, both signature algorithms, the custom
//! tenant claim, key rotation.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carevault_api::auth::{AuthConfig, AuthError, Authenticator, Tuning};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::provider::{ES256_CLIENT, ID_TOKEN_TTL_SECS, OidcProvider, RS256_CLIENT, TENANT_CLAIM};

const TENANT: &str = "0b6f4c1e-6a43-4f5e-9a57-3f1c5d2e8b10";

/// Short enough that the rotation test can wait it out; the production default is 60 s.
const MIN_REFRESH: Duration = Duration::from_millis(200);

fn config(provider: &OidcProvider, client: &str) -> AuthConfig {
    AuthConfig {
        issuer: Some(provider.issuer()),
        audience: Some(client.to_owned()),
        tenant_claim: TENANT_CLAIM.to_owned(),
        ..AuthConfig::default()
    }
}

fn authenticator(config: AuthConfig) -> Authenticator {
    let tuning = Tuning { min_refresh_interval: MIN_REFRESH, ..Tuning::default() };
    Authenticator::with_tuning(config, reqwest::Client::new(), tuning)
}

/// The `alg` and `kid` of a token's header.
fn header(token: &str) -> (Algorithm, String) {
    let header = jsonwebtoken::decode_header(token).expect("the provider's token has a JWT header");
    (header.alg, header.kid.expect("the provider names its key"))
}

/// `token` with another header (same payload and signature).
fn with_header(token: &str, header: &Value) -> String {
    let rest = token.split_once('.').expect("a JWT").1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

#[tokio::test]
async fn discovery_leads_to_the_keys_the_provider_signs_with() {
    let provider = OidcProvider::start().await;
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", provider.issuer()))
        .send()
        .await
        .expect("GET discovery")
        .json()
        .await
        .expect("discovery is JSON");
    assert_eq!(discovery["issuer"], provider.issuer());
    let jwks_uri = discovery["jwks_uri"].as_str().expect("discovery names a jwks_uri");
    let jwks: Value = http.get(jwks_uri).send().await.expect("GET jwks_uri").json().await.expect("JWKS is JSON");
    let published: Vec<&str> =
        jwks["keys"].as_array().expect("a key list").iter().filter_map(|k| k["kid"].as_str()).collect();
    for client in [RS256_CLIENT, ES256_CLIENT] {
        let (_, kid) = header(&provider.id_token(client, "alice", Some(TENANT), None).await);
        assert!(published.contains(&kid.as_str()), "{client}'s token key {kid} is not in {jwks_uri}: {published:?}");
    }

    let auth = authenticator(config(&provider, RS256_CLIENT));
    assert!(!auth.keys_ready());
    auth.refresh().await.expect("discovery and JWKS fetched from the provider");
    assert!(auth.keys_ready());

    // The issuer is compared with the discovery document's exactly: a trailing slash is refused
    // at refresh time, not discovered later as tokens failing one by one.
    let slash = AuthConfig { issuer: Some(format!("{}/", provider.issuer())), ..config(&provider, RS256_CLIENT) };
    match authenticator(slash).refresh().await {
        Err(AuthError::KeysUnavailable(message)) => assert!(message.contains("differs"), "{message}"),
        other => panic!("an issuer with a trailing slash should not be accepted, got {other:?}"),
    }
}

#[tokio::test]
async fn rs256_and_es256_id_tokens_from_the_code_flow_verify() {
    let provider = OidcProvider::start().await;
    for (client, alg, other_client) in
        [(RS256_CLIENT, Algorithm::RS256, ES256_CLIENT), (ES256_CLIENT, Algorithm::ES256, RS256_CLIENT)]
    {
        let token = provider.id_token(client, "alice", Some(TENANT), None).await;
        assert_eq!(header(&token).0, alg, "{client} signs its ID tokens with {alg:?}");

        let verified = authenticator(config(&provider, client)).verify(&token).await;
        let verified = verified.unwrap_or_else(|e| panic!("{client}'s {alg:?} ID token refused: {e}"));
        assert_eq!(verified.sub, "alice");
        assert_eq!(verified.tenant, Some(json!(TENANT)));
        assert_eq!(verified.expires_at - verified.issued_at, ID_TOKEN_TTL_SECS);
        assert_eq!(verified.email, None, "the account has no email unless asked");

        // `aud` is the client id: the other client's authenticator refuses the token.
        match authenticator(config(&provider, other_client)).verify(&token).await {
            Err(AuthError::Malformed(_)) => {}
            other => panic!("{client}'s token accepted for audience {other_client}: {other:?}"),
        }
        // The provider's signature is checked: the payload of another account's token under
        // this token's header and signature is refused.
        let other = provider.id_token(client, "mallory", Some(TENANT), None).await;
        let [head, _, signature] = token.split('.').collect::<Vec<_>>()[..] else { panic!("a JWT") };
        let forged = format!("{head}.{}.{signature}", other.split('.').nth(1).expect("a payload"));
        match authenticator(config(&provider, client)).verify(&forged).await {
            Err(AuthError::BadSignature(_)) => {}
            other => panic!("a spliced {alg:?} token was not refused for its signature: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_tenant_claim_comes_from_the_providers_account() {
    let provider = OidcProvider::start().await;
    let token = provider.id_token(RS256_CLIENT, "bob", Some(TENANT), Some("bob@example.test")).await;

    let custom = authenticator(config(&provider, RS256_CLIENT)).verify(&token).await.expect("bob's token");
    assert_eq!(custom.tenant, Some(json!(TENANT)), "read from {TENANT_CLAIM}");
    assert_eq!(custom.email.as_deref(), Some("bob@example.test"));
    assert!(custom.email_verified, "oidc-provider sends email_verified as a JSON boolean");

    // With the default claim name (`tenant_id`) the same token names no tenant.
    let default = AuthConfig { tenant_claim: "tenant_id".into(), ..config(&provider, RS256_CLIENT) };
    assert_eq!(authenticator(default).verify(&token).await.expect("bob's token").tenant, None);

    // An account without a tenant gets a token without the claim.
    let untenanted = provider.id_token(RS256_CLIENT, "carol", None, None).await;
    let verified = authenticator(config(&provider, RS256_CLIENT)).verify(&untenanted).await.expect("carol's token");
    assert_eq!(verified.tenant, None);
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_followed_after_a_refresh() {
    let mut provider = OidcProvider::start().await;
    let old = provider.id_token(RS256_CLIENT, "alice", Some(TENANT), None).await;
    let auth = authenticator(config(&provider, RS256_CLIENT));
    auth.refresh().await.expect("the first keys");
    auth.verify(&old).await.expect("a token of the current key");

    // An authenticator with the production rate limit that has just spent its one on-demand
    // refresh (an unknown `kid` triggers it) cannot learn the new key yet.
    let limited = Authenticator::new(config(&provider, RS256_CLIENT), reqwest::Client::new());
    limited.refresh().await.expect("the first keys");
    let bogus = with_header(&old, &json!({"alg": "RS256", "kid": "no-such-key"}));
    assert!(matches!(limited.verify(&bogus).await, Err(AuthError::BadSignature(_))));

    provider.restart().await; // new keys, the old ones are no longer published
    let new = provider.id_token(RS256_CLIENT, "alice", Some(TENANT), None).await;
    assert_ne!(header(&new).1, header(&old).1, "the restarted provider signs with a new key");

    // The cached keys still verify the old token until a refresh replaces them.
    auth.verify(&old).await.expect("the old key is still cached");
    // The new `kid` is unknown: verify refreshes (the interval has passed) and accepts it.
    tokio::time::sleep(MIN_REFRESH).await;
    let verified = auth.verify(&new).await.expect("a token of the new key, after the refresh");
    assert_eq!(verified.sub, "alice");
    // The refreshed set no longer has the old key: its token is refused, even after another
    // refresh (the interval has passed again).
    tokio::time::sleep(MIN_REFRESH).await;
    match auth.verify(&old).await {
        Err(AuthError::BadSignature(message)) => assert!(message.contains("kid"), "{message}"),
        other => panic!("a token of a key the provider no longer publishes was accepted: {other:?}"),
    }

    match limited.verify(&new).await {
        Err(AuthError::BadSignature(_)) => {}
        other => panic!("the rate-limited authenticator should not know the new key yet: {other:?}"),
    }
}
