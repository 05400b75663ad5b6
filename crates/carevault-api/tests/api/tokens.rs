//! Every way a token can be wrong: the right 401/403 and code, nothing written, no audit row,
//! none of the tenant's data returned.

use carevault_db::{TenantId, UserRole};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid development claims for `tenant`, to be spoiled one at a time.
fn claims(tenant: &str, sub: &str) -> Value {
    json!({"iss": "carevault-dev", "aud": "carevault", "sub": sub, "iat": now(), "exp": now() + 300, "tenant_id": tenant, "email": format!("{sub}@x.test")})
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// `{"alg":"none","typ":"JWT"}`, base64url.
const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

#[tokio::test]
async fn bad_tokens_are_refused_with_their_code_and_write_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let suspended = app.tenant("Suspended").await;
    let deleted_tenant = app.tenant("Gone").await;
    let gone_user = app.caller(tenant, UserRole::Admin, "gone").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let document = app
        .call("POST", "/api/v1/documents", Some(&admin.token), Some(crate::helpers::document_body("a.pdf", None)))
        .await;
    assert_eq!(document.status, 201);
    app.call("DELETE", &format!("/api/v1/users/{}", gone_user.user.id), Some(&admin.token), None).await;
    let p = Some(crate::helpers::PLATFORM_TOKEN);
    app.call("POST", &format!("/api/v1/platform/tenants/{suspended}/suspend"), p, None).await;
    let owner = app.db.owner_pool().await;
    sqlx::query("UPDATE tenants SET deleted_at = now() WHERE id = $1")
        .bind(deleted_tenant)
        .execute(&owner)
        .await
        .unwrap();

    let t = tenant.to_string();
    let valid = sign(&claims(&t, "admin"), SECRET);
    let mut cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "AUTH_001"),
        ("not a JWT", Some("garbage".into()), 401, "AUTH_001"),
        ("alg none", Some(format!("{NONE_HEADER}.{}.", valid.split('.').nth(1).unwrap())), 401, "AUTH_004"),
        ("wrong key", Some(sign(&claims(&t, "admin"), "another-secret-another-secret-another")), 401, "AUTH_004"),
        (
            "tampered payload",
            Some({
                let other = sign(&claims(&t, "gone"), SECRET);
                let parts: Vec<&str> = valid.split('.').collect();
                format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2])
            }),
            401,
            "AUTH_004",
        ),
    ];
    let mut spoil = |name: &'static str, edit: &dyn Fn(&mut Value), status: u16, code: &'static str| {
        let mut c = claims(&t, "admin");
        edit(&mut c);
        cases.push((name, Some(sign(&c, SECRET)), status, code));
    };
    spoil(
        "expired",
        &|c| {
            c["exp"] = json!(now() - 600);
            c["iat"] = json!(now() - 900);
        },
        401,
        "AUTH_003",
    );
    spoil("not yet valid", &|c| c["nbf"] = json!(now() + 600), 401, "AUTH_003");
    spoil("lifetime too long", &|c| c["exp"] = json!(now() + 3 * 3600), 401, "AUTH_001");
    spoil("wrong issuer", &|c| c["iss"] = json!("https://evil.example"), 401, "AUTH_001");
    spoil("wrong audience", &|c| c["aud"] = json!("someone-else"), 401, "AUTH_001");
    spoil(
        "no sub",
        &|c| {
            c.as_object_mut().unwrap().remove("sub");
        },
        401,
        "AUTH_001",
    );
    spoil(
        "no exp",
        &|c| {
            c.as_object_mut().unwrap().remove("exp");
        },
        401,
        "AUTH_001",
    );
    spoil(
        "no tenant claim",
        &|c| {
            c.as_object_mut().unwrap().remove("tenant_id");
        },
        403,
        "AUTH_005",
    );
    // Not valid text: refused without reaching the database (a NUL made PostgreSQL raise, a 500).
    spoil("sub with a NUL", &|c| c["sub"] = json!("admin\u{0}"), 401, "AUTH_001");
    spoil("sub too long", &|c| c["sub"] = json!("s".repeat(256)), 401, "AUTH_001");
    // Matched byte for byte: "admin " is not the admin (it used to sign in as "admin").
    spoil("sub with a trailing space", &|c| c["sub"] = json!("admin "), 401, "AUTH_001");
    spoil("sub with a leading tab", &|c| c["sub"] = json!("\tadmin"), 401, "AUTH_001");
    spoil("tenant not a UUID", &|c| c["tenant_id"] = json!("org-456"), 403, "AUTH_007");
    spoil("tenant a number", &|c| c["tenant_id"] = json!(42), 403, "AUTH_007");
    spoil("unknown tenant", &|c| c["tenant_id"] = json!(TenantId::new_random().to_string()), 403, "AUTH_007");
    spoil("suspended tenant", &|c| c["tenant_id"] = json!(suspended.to_string()), 403, "AUTH_007");
    spoil("deleted tenant", &|c| c["tenant_id"] = json!(deleted_tenant.to_string()), 403, "AUTH_007");
    spoil("deleted user", &|c| c["sub"] = json!("gone"), 403, "AUTH_008");
    spoil("the System tenant", &|c| c["tenant_id"] = json!(TenantId::SYSTEM.to_string()), 403, "AUTH_007");
    // An unknown subject with an unverified email is not provisioned (the address could name
    // somebody else).
    spoil("unverified email", &|c| c["sub"] = json!("newcomer"), 401, "AUTH_001");
    spoil(
        "email_verified false",
        &|c| {
            c["sub"] = json!("newcomer");
            c["email_verified"] = json!(false);
        },
        401,
        "AUTH_001",
    );

    let before = app.row_counts().await;
    for (name, token, status, code) in &cases {
        for (method, path) in [("GET", "/api/v1/documents"), ("POST", "/api/v1/documents")] {
            let body = (method == "POST").then(|| crate::helpers::document_body("x.pdf", None));
            let reply = app.call(method, path, token.as_deref(), body).await;
            assert_eq!((reply.status, reply.code()), (*status, *code), "{name}: {}", reply.body);
            assert!(reply.body.get("items").is_none(), "{name}: no data in an error");
        }
    }
    assert_eq!(app.row_counts().await, before, "a refused token wrote something");
}

#[tokio::test]
async fn hs256_is_refused_when_not_enabled() {
    let app = TestApp::spawn_with(|_, auth| auth.hs256_secret = None).await;
    let tenant = app.tenant("Clinic").await;
    let token = sign(&claims(&tenant.to_string(), "admin"), SECRET);
    let reply = app.call("GET", "/api/v1/auth/validate", Some(&token), None).await;
    assert_eq!((reply.status, reply.code()), (401, "AUTH_004"));
}

#[tokio::test]
async fn the_tenant_claim_name_is_configurable() {
    let app = TestApp::spawn_with(|_, auth| auth.tenant_claim = "custom:tenant_id".into()).await;
    let tenant = app.tenant("Clinic").await;
    app.caller(tenant, UserRole::Viewer, "v").await;
    let mut c = claims("ignored", "v");
    c["custom:tenant_id"] = json!(tenant.to_string());
    let reply = app.call("GET", "/api/v1/auth/validate", Some(&sign(&c, SECRET)), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    c.as_object_mut().unwrap().remove("custom:tenant_id");
    let reply = app.call("GET", "/api/v1/auth/validate", Some(&sign(&c, SECRET)), None).await;
    assert_eq!((reply.status, reply.code()), (403, "AUTH_005"));
}
