//! The provider's ID tokens through the whole API (`TestApp`: real router, fresh database): the
//! `sub` names a user (`users.external_idp_id`), the custom tenant claim names its tenant.

use carevault_db::{TenantId, UserRole};

use crate::helpers::{Reply, TestApp};
use crate::provider::{ES256_CLIENT, OidcProvider, RS256_CLIENT, TENANT_CLAIM};

#[tokio::test]
async fn a_providers_id_token_signs_its_user_in_to_the_tenant_it_names_only() {
    let provider = OidcProvider::start().await;
    let issuer = provider.issuer();
    let app = TestApp::spawn_with(|_, auth| {
        auth.issuer = Some(issuer);
        auth.audience = Some(RS256_CLIENT.into());
        auth.tenant_claim = TENANT_CLAIM.into();
    })
    .await;
    let clinic = app.tenant("Clinic").await;
    let other = app.tenant("Other clinic").await;
    let alice = app.caller(clinic, UserRole::Member, "alice").await;

    let token = provider.id_token(RS256_CLIENT, "alice", Some(&clinic.to_string()), None).await;
    let reply = validate(&app, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"]["id"], alice.user.id.to_string());
    assert_eq!(reply.body["tenant"]["id"], clinic.to_string());
    assert_eq!(reply.body["role"], "member");

    let before = app.row_counts().await;
    let refusals = [
        // alice is not a user of the other tenant, and the token has no verified email to
        // provision her from.
        ("another tenant", RS256_CLIENT, Some(other.to_string()), 401, "AUTH_001"),
        ("an unknown tenant", RS256_CLIENT, Some(TenantId::new_random().to_string()), 403, "AUTH_007"),
        ("no tenant claim", RS256_CLIENT, None, 403, "AUTH_005"),
        // The same provider, another client: its `aud` is not ours.
        ("another audience", ES256_CLIENT, Some(clinic.to_string()), 401, "AUTH_001"),
    ];
    for (case, client, tenant, status, code) in refusals {
        let token = provider.id_token(client, "alice", tenant.as_deref(), None).await;
        let reply = validate(&app, &token).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{case}: {}", reply.body);
    }
    assert_eq!(app.row_counts().await, before, "a refused token wrote something");
}

/// Who am I, as the bearer of `token`.
async fn validate(app: &TestApp, token: &str) -> Reply {
    app.call("GET", "/api/v1/auth/validate", Some(token), None).await
}
