//! Every endpoint's success path, and the audit rows it writes.

use carevault_db::UserRole;
use serde_json::json;

use crate::helpers::{PLATFORM_TOKEN, TestApp, document_body, embedding};

#[tokio::test]
async fn health_and_openapi_need_no_token() {
    let app = TestApp::spawn().await;
    let live = app.call("GET", "/api/v1/health/live", None, None).await;
    assert_eq!((live.status, live.body["status"].as_str()), (200, Some("ok")));
    let ready = app.call("GET", "/api/v1/health/ready", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let names: Vec<&str> =
        ready.body["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app_pool", "migrations", "pgvector", "tenant_context", "platform_pool", "jwks"]);
    let spec = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.body["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi", spec.body);
}

#[tokio::test]
async fn readiness_names_the_failing_check() {
    let app = TestApp::spawn().await;
    // A database whose schema is behind this binary: migrations not at head.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&app.db.owner_pool().await)
        .await
        .unwrap();
    let ready = app.call("GET", "/api/v1/health/ready", None, None).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["status"], "not_ready");
    assert_eq!(ready.body["error"]["code"], "SYS_001");
    assert_eq!(ready.body["error"]["message"], "not ready: migrations");
    let failing: Vec<&str> = ready.body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["migrations"]);
    assert!(ready.body["checks"][1]["error"].is_string(), "development shows why");

    // In production the unauthenticated endpoint names the failing check, nothing more.
    let prod = TestApp::spawn_with(|config, _| config.environment = carevault_api::Environment::Production).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&prod.db.owner_pool().await)
        .await
        .unwrap();
    let ready = prod.call("GET", "/api/v1/health/ready", None, None).await;
    assert_eq!((ready.status, ready.body["error"]["message"].as_str()), (503, Some("not ready: migrations")));
    assert!(ready.body["checks"].as_array().unwrap().iter().all(|c| c.get("error").is_none()));
}

#[tokio::test]
async fn readiness_fails_while_the_database_does_not_accept_the_servers_key() {
    let app = TestApp::spawn().await;
    assert_eq!(app.call("GET", "/api/v1/health/ready", None, None).await.status, 200);
    sqlx::query("DELETE FROM carevault_private.tenant_context_keys").execute(&app.db.owner_pool().await).await.unwrap();
    let ready = app.call("GET", "/api/v1/health/ready", None, None).await;
    assert_eq!((ready.status, ready.body["error"]["message"].as_str()), (503, Some("not ready: tenant_context")));
}

#[tokio::test]
async fn validate_and_current_tenant() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let viewer = app.caller(tenant, UserRole::Viewer, "v1").await;
    let me = app.call("GET", "/api/v1/auth/validate", Some(&viewer.token), None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["id"], viewer.user.id.to_string());
    assert_eq!(me.body["tenant"]["id"], tenant.to_string());
    assert_eq!(me.body["role"], "viewer");
    assert!(me.body["expires_at"].is_string());
    let current = app.call("GET", "/api/v1/tenants/current", Some(&viewer.token), None).await;
    assert_eq!((current.status, current.body["name"].as_str()), (200, Some("Clinic")));
    assert_eq!(app.audit_actions(tenant).await.iter().filter(|a| *a == "tenant.read").count(), 1);
}

#[tokio::test]
async fn an_unknown_subject_is_provisioned_as_a_viewer_once() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let token = app.token(tenant, "new-sub", Some("New.Person@Example.test"));
    for _ in 0..2 {
        let me = app.call("GET", "/api/v1/auth/validate", Some(&token), None).await;
        assert_eq!(me.status, 200, "{}", me.body);
        assert_eq!(me.body["role"], "viewer");
        assert_eq!(me.body["user"]["email"], "new.person@example.test");
    }
    let actions = app.audit_actions(tenant).await;
    assert_eq!(actions.iter().filter(|a| *a == "user.provisioned").count(), 1, "{actions:?}");
    // Without an email there is nothing to provision from.
    let no_email = app.token(tenant, "other-sub", None);
    let refused = app.call("GET", "/api/v1/auth/validate", Some(&no_email), None).await;
    assert_eq!((refused.status, refused.code()), (401, "AUTH_001"));
}

#[tokio::test]
async fn users_lifecycle_with_audit_rows() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let t = Some(admin.token.as_str());

    let created = app
        .call("POST", "/api/v1/users", t, Some(json!({"email": "Bob@x.test", "role": "member", "full_name": "Bob"})))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["email"], "bob@x.test");
    let id = created.body["id"].as_str().unwrap().to_string();
    let conflict = app.call("POST", "/api/v1/users", t, Some(json!({"email": "bob@x.test", "role": "viewer"}))).await;
    assert_eq!((conflict.status, conflict.code()), (409, "RES_409"));

    let list = app.call("GET", "/api/v1/users?limit=1", t, None).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let cursor = list.body["next_cursor"].as_str().unwrap().to_string();
    let next = app.call("GET", &format!("/api/v1/users?limit=1&cursor={cursor}"), t, None).await;
    assert_eq!(next.body["items"].as_array().unwrap().len(), 1);
    assert_ne!(next.body["items"][0]["id"], list.body["items"][0]["id"]);
    assert!(next.body["next_cursor"].is_null());

    let got = app.call("GET", &format!("/api/v1/users/{id}"), t, None).await;
    assert_eq!((got.status, got.body["full_name"].as_str()), (200, Some("Bob")));
    let patched =
        app.call("PATCH", &format!("/api/v1/users/{id}"), t, Some(json!({"role": "admin", "full_name": null}))).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!((patched.body["role"].as_str(), patched.body["full_name"].is_null()), (Some("admin"), true));
    let deleted = app.call("DELETE", &format!("/api/v1/users/{id}"), t, None).await;
    assert_eq!(deleted.status, 200);
    assert!(deleted.body["deleted_at"].is_string());
    let gone = app.call("GET", &format!("/api/v1/users/{id}"), t, None).await;
    assert_eq!((gone.status, gone.code()), (404, "RES_404"));
    let only_deleted = app.call("GET", "/api/v1/users?deleted=only", t, None).await;
    assert_eq!(only_deleted.body["items"][0]["id"], id.as_str());
    let restored = app.call("POST", &format!("/api/v1/users/{id}/restore"), t, None).await;
    assert_eq!(restored.status, 200);
    assert!(restored.body["deleted_at"].is_null());

    // An admin cannot lock themselves out.
    let me = admin.user.id;
    let demote = app.call("PATCH", &format!("/api/v1/users/{me}"), t, Some(json!({"role": "viewer"}))).await;
    assert_eq!((demote.status, demote.code()), (409, "RES_409"));
    let suicide = app.call("DELETE", &format!("/api/v1/users/{me}"), t, None).await;
    assert_eq!((suicide.status, suicide.code()), (409, "RES_409"));
    let rename = app.call("PATCH", &format!("/api/v1/users/{me}"), t, Some(json!({"full_name": "Still Admin"}))).await;
    assert_eq!(rename.status, 200);

    let actions = app.audit_actions(tenant).await;
    for action in ["user.created", "user.listed", "user.read", "user.updated", "user.deleted", "user.restored"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
    }
    // The failed create (409) left no audit row.
    assert_eq!(actions.iter().filter(|a| *a == "user.created").count(), 2, "{actions:?}"); // the admin fixture + Bob
}

#[tokio::test]
async fn documents_lifecycle_with_audit_rows() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let t = Some(member.token.as_str());

    let created = app.call("POST", "/api/v1/documents", t, Some(document_body("a.pdf", Some(1)))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["user_id"], member.user.id.to_string());
    assert_eq!((created.body["has_embedding"].as_bool(), created.body.get("embedding")), (Some(true), None));
    let id = created.body["id"].as_str().unwrap().to_string();
    app.call("POST", "/api/v1/documents", t, Some(document_body("b.pdf", None))).await;

    let with = app.call("GET", &format!("/api/v1/documents/{id}?include=embedding"), t, None).await;
    assert_eq!(with.body["embedding"].as_array().unwrap().len(), 1024);
    let first = with.body["embedding"][0].as_f64().unwrap();
    assert!((first - f64::from(embedding(1)[0])).abs() < 1e-6);

    let list = app.call("GET", "/api/v1/documents?status=processing&limit=1", t, None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(list.body["next_cursor"].is_string());
    let mine = app.call("GET", &format!("/api/v1/documents?user_id={}", member.user.id), t, None).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 2);

    // metadata is a JSON Merge Patch; embedding null removes it.
    let patched = app
        .call(
            "PATCH",
            &format!("/api/v1/documents/{id}"),
            t,
            Some(json!({"status": "completed", "metadata": {"pages": null, "lang": "en"}, "embedding": null})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["metadata"], json!({"kind": "scan", "lang": "en"}));
    assert_eq!(
        (patched.body["status"].as_str(), patched.body["has_embedding"].as_bool()),
        (Some("completed"), Some(false))
    );

    let deleted = app.call("DELETE", &format!("/api/v1/documents/{id}"), t, None).await;
    assert_eq!(deleted.status, 200);
    let again = app.call("DELETE", &format!("/api/v1/documents/{id}"), t, None).await;
    assert_eq!((again.status, again.code()), (404, "RES_404"));
    let restored = app.call("POST", &format!("/api/v1/documents/{id}/restore"), t, None).await;
    assert_eq!(restored.status, 200);
    let not_deleted = app.call("POST", &format!("/api/v1/documents/{id}/restore"), t, None).await;
    assert_eq!((not_deleted.status, not_deleted.code()), (409, "RES_409"));

    let actions = app.audit_actions(tenant).await;
    for action in [
        "document.created",
        "document.read",
        "document.listed",
        "document.updated",
        "document.deleted",
        "document.restored",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
    }
}

#[tokio::test]
async fn audit_log_is_readable_by_admins_with_filters() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let t = Some(admin.token.as_str());
    let created = app.call("POST", "/api/v1/documents", t, Some(document_body("a.pdf", None))).await;
    let id = created.body["id"].as_str().unwrap();
    let client = app
        .client
        .get(app.url("/api/v1/audit-logs?action=document.created"))
        .bearer_auth(&admin.token)
        .header("x-request-id", "my-req-1");
    let reply = crate::helpers::read(client.send().await.unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.request_id.as_deref(), Some("my-req-1"));
    let items = reply.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["resource_id"], id);
    assert_eq!(items[0]["user_id"], admin.user.id.to_string());
    assert_eq!(items[0]["ip_address"], "127.0.0.1");
    assert!(items[0]["metadata"]["request_id"].is_string());
    let by_resource =
        app.call("GET", &format!("/api/v1/audit-logs?resource_type=document&resource_id={id}"), t, None).await;
    assert_eq!(by_resource.body["items"].as_array().unwrap().len(), 1);
    let future = app.call("GET", "/api/v1/audit-logs?since=2999-01-01T00:00:00Z", t, None).await;
    assert!(future.body["items"].as_array().unwrap().is_empty());
    assert!(app.audit_actions(tenant).await.iter().any(|a| a == "audit.read"));
}

#[tokio::test]
async fn platform_api_manages_tenants_with_its_own_credential() {
    let app = TestApp::spawn().await;
    let p = Some(PLATFORM_TOKEN);
    let created =
        app.call("POST", "/api/v1/platform/tenants", p, Some(json!({"name": "New Clinic", "status": "trial"}))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    let list = app.call("GET", "/api/v1/platform/tenants", p, None).await;
    assert!(list.body["items"].as_array().unwrap().iter().any(|t| t["id"] == id.as_str()));
    let suspended = app.call("POST", &format!("/api/v1/platform/tenants/{id}/suspend"), p, None).await;
    assert_eq!(suspended.body["status"], "suspended");
    let activated = app.call("POST", &format!("/api/v1/platform/tenants/{id}/activate"), p, None).await;
    assert_eq!(activated.body["status"], "active");
    let tenant = carevault_db::TenantId::parse(&id).unwrap();
    assert_eq!(app.audit_actions(tenant).await, ["tenant.created", "tenant.suspended", "tenant.activated"]);

    // A tenant token never satisfies the platform API, and a wrong secret is refused.
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    for token in [Some(admin.token.as_str()), Some("wrong"), None] {
        let refused = app.call("GET", "/api/v1/platform/tenants", token, None).await;
        assert_eq!((refused.status, refused.code()), (401, "PLAT_001"));
    }
}

#[tokio::test]
async fn without_a_platform_token_the_platform_api_does_not_exist() {
    let app = TestApp::spawn_with(|config, _| config.platform_api_token = None).await;
    let reply = app.call("GET", "/api/v1/platform/tenants", Some("anything"), None).await;
    assert_eq!((reply.status, reply.code()), (404, "REQ_404"));
}
