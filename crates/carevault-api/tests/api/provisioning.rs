//! Just-in-time provisioning (`JIT_PROVISIONING`): who a valid token of an unknown `sub` becomes,
//! and the tenant's list of email domains on the platform API.

use carevault_api::JitProvisioning;
use carevault_db::{TenantId, UserRole};
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{PLATFORM_TOKEN, TestApp};

async fn app_with(mode: JitProvisioning) -> TestApp {
    TestApp::spawn_with(|config, _| config.jit_provisioning = mode).await
}

fn domains_path(tenant: TenantId) -> String {
    format!("/api/v1/platform/tenants/{tenant}/jit-email-domains")
}

/// `GET /auth/validate` with a token of `sub` and a verified `email` in `tenant`.
async fn sign_in(app: &TestApp, sub: &str, email: &str, tenant: TenantId) -> crate::helpers::Reply {
    let token = app.token(tenant, sub, Some(email));
    app.call("GET", "/api/v1/auth/validate", Some(&token), None).await
}

#[tokio::test]
async fn jit_provisioning_off_refuses_unknown_users_and_writes_nothing() {
    let app = app_with(JitProvisioning::Off).await;
    let tenant = app.tenant("Clinic").await;
    let known = app.caller(tenant, UserRole::Viewer, "known").await;
    let before = app.row_counts().await;
    let stranger = app.token(tenant, "stranger", Some("stranger@clinic.example"));
    let refused = app.call("GET", "/api/v1/auth/validate", Some(&stranger), None).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_010"), "{}", refused.body);
    assert_eq!(app.row_counts().await, before, "a refused sign-up wrote something");
    // Users an administrator created still sign in.
    let me = app.call("GET", "/api/v1/auth/validate", Some(&known.token), None).await;
    assert_eq!(me.status, 200, "{}", me.body);
}

#[tokio::test]
async fn jit_provisioning_by_domain_admits_exactly_the_tenants_domains() {
    let app = app_with(JitProvisioning::Domains).await;
    let tenant = app.tenant("Clinic").await;
    let other = app.tenant("Other").await;
    let set = app
        .call(
            "PUT",
            &domains_path(tenant),
            Some(PLATFORM_TOKEN),
            Some(json!({"domains": ["Clinic.Example", "lab.example"]})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["jit_email_domains"], json!(["clinic.example", "lab.example"]));
    let actions = app.audit_actions(tenant).await;
    assert_eq!(actions.last().map(String::as_str), Some("tenant.updated"), "{actions:?}");

    let admitted = sign_in(&app, "ann", "Ann@CLINIC.example", tenant).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert_eq!(admitted.body["role"], "viewer");
    let before = app.row_counts().await;
    for (sub, email) in [
        ("sub1", "bob@lab.clinic.example"),  // a subdomain
        ("sub2", "bob@clinic.example.org"),  // a longer name
        ("sub3", "bob@otherclinic.example"), // a suffix
    ] {
        let refused = sign_in(&app, sub, email, tenant).await;
        assert_eq!((refused.status, refused.code()), (403, "AUTH_010"), "{email}: {}", refused.body);
    }
    // Another tenant's list is its own (empty): nobody signs up there by themselves.
    let refused = sign_in(&app, "ann-elsewhere", "ann@clinic.example", other).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_010"));
    assert_eq!(app.row_counts().await, before, "a refused sign-up wrote something");

    // An empty list admits nobody.
    let cleared = app.call("PUT", &domains_path(tenant), Some(PLATFORM_TOKEN), Some(json!({"domains": []}))).await;
    assert_eq!(cleared.body["jit_email_domains"], json!([]));
    let refused = sign_in(&app, "carl", "carl@clinic.example", tenant).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_010"));
}

#[tokio::test]
async fn jit_provisioning_on_admits_any_verified_email_as_before() {
    let app = app_with(JitProvisioning::On).await;
    let tenant = app.tenant("Clinic").await;
    let token = app.token(tenant, "anyone", Some("anyone@anywhere.example"));
    let me = app.call("GET", "/api/v1/auth/validate", Some(&token), None).await;
    assert_eq!((me.status, me.body["role"].as_str()), (200, Some("viewer")), "{}", me.body);
}

#[tokio::test]
async fn the_domain_list_refuses_bad_input_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let path = domains_path(tenant);
    let put = |body: serde_json::Value| app.call("PUT", &path, Some(PLATFORM_TOKEN), Some(body));
    assert_eq!(put(json!({"domains": ["clinic.example"]})).await.status, 200);
    let before = app.row_counts().await;
    let too_many: Vec<String> = (0..51).map(|i| format!("d{i}.example")).collect();
    for (body, status, code) in [
        (json!({"domains": ["not a domain"]}), 422, "VAL_003"),
        (json!({"domains": ["example"]}), 422, "VAL_003"),
        (json!({"domains": ["-bad.example"]}), 422, "VAL_003"),
        (json!({"domains": too_many}), 422, "VAL_003"),
        (json!({"domains": "clinic.example"}), 400, "VAL_001"),
        (json!({}), 422, "VAL_002"),
        (json!({"domains": [], "extra": 1}), 400, "VAL_001"),
    ] {
        let reply = put(body.clone()).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {}", reply.body);
    }
    let unknown = app
        .call("PUT", &domains_path(TenantId::new_random()), Some(PLATFORM_TOKEN), Some(json!({"domains": []})))
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "RES_404"));
    // A tenant token is not the platform credential.
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let refused = app.call("PUT", &domains_path(tenant), Some(&admin.token), Some(json!({"domains": []}))).await;
    assert_eq!((refused.status, refused.code()), (401, "PLAT_001"));
    let after = app.call("GET", "/api/v1/tenants/current", Some(&admin.token), None).await;
    assert_eq!(after.body["jit_email_domains"], json!(["clinic.example"]), "a refused change changed the list");
    // The database holds the same rule, whatever writes the column (here its owner).
    let mut owner = sqlx::PgConnection::connect(&app.db.owner_url()).await.unwrap();
    for bad in ["{clinic.example.}", "{Clinic.example}", "{example}", "{\"a b.example\"}"] {
        let refused = sqlx::query("UPDATE tenants SET jit_email_domains = $1::text[] WHERE id = $2")
            .bind(bad)
            .bind(tenant.as_uuid())
            .execute(&mut owner)
            .await
            .expect_err(bad);
        assert_eq!(refused.as_database_error().and_then(|e| e.code()).as_deref(), Some("23514"), "{bad}");
    }
    let (tenants, users, documents, _) = app.row_counts().await;
    assert_eq!((tenants, users, documents), (before.0, before.1 + 1, before.2), "only the admin was added");
}
