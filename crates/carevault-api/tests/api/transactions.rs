//! When a request holds a database connection: authentication resolves the caller in a short
//! transaction of its own and releases it; the handler opens its own when it needs the database.

use std::sync::Arc;
use std::time::Duration;

use carevault_api::ApiError;
use carevault_api::extract::{Admin, Authed};
use carevault_db::{PoolConfig, UserRole};
use tokio::sync::Notify;

use crate::helpers::{TestApp, read};

#[tokio::test]
async fn no_connection_is_held_while_the_handler_waits_on_another_service() {
    // One connection in the pool: a request holding it would starve the next one (503 SYS_004).
    let pool = PoolConfig {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(2),
        statement_cache: true,
        ..PoolConfig::default()
    };
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (entered_signal, release_wait) = (entered.clone(), release.clone());
    let app = TestApp::spawn_custom(
        |_, _| {},
        pool,
        move |routes| {
            routes.route(
                "/test/slow-service",
                axum::routing::get(move |authed: Authed<Admin>| {
                    let (entered, release) = (entered_signal.clone(), release_wait.clone());
                    async move {
                        entered.notify_one();
                        // Stands for a call to an object store or a key service.
                        release.notified().await;
                        let mut tx = authed.begin().await?;
                        let tenant = tx.tenant().read().await?;
                        tx.commit().await?;
                        Ok::<_, ApiError>(tenant.name)
                    }
                }),
            )
        },
    )
    .await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;

    let held = tokio::spawn(app.client.get(app.url("/test/slow-service")).bearer_auth(&admin.token).send());
    // The handler runs: authentication is over, and its connection is back in the pool.
    tokio::time::timeout(Duration::from_secs(10), entered.notified()).await.unwrap();
    let other = app.call("GET", "/api/v1/documents", Some(&admin.token), None).await;
    assert_eq!(other.status, 200, "{}", other.body);

    release.notify_one();
    let held = read(held.await.unwrap().unwrap()).await;
    assert_eq!((held.status, held.body.as_str()), (200, Some("Clinic")), "{}", held.body);
    // The handler's transaction acted as the caller from its first statement.
    let reads = app.call("GET", "/api/v1/audit-logs?action=tenant.read", Some(&admin.token), None).await;
    assert_eq!(reads.status, 200, "{}", reads.body);
    let users: Vec<&str> =
        reads.body["items"].as_array().unwrap().iter().map(|e| e["user_id"].as_str().unwrap()).collect();
    assert_eq!(users, [admin.user.id.to_string()]);
}

#[tokio::test]
async fn a_provisioning_stays_when_the_handler_then_fails() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let token = app.token(tenant, "new-sub", Some("new@example.test"));
    let missing = uuid::Uuid::new_v4();
    let reply = app.call("GET", &format!("/api/v1/documents/{missing}"), Some(&token), None).await;
    assert_eq!((reply.status, reply.code()), (404, "RES_404"), "{}", reply.body);
    // The provisioning is a complete action of its own: committed (with its audit row) before the
    // handler's transaction, whose failure rolls back that transaction only.
    let actions = app.audit_actions(tenant).await;
    assert_eq!(actions.iter().filter(|a| *a == "user.provisioned").count(), 1, "{actions:?}");
    let me = app.call("GET", "/api/v1/auth/validate", Some(&token), None).await;
    assert_eq!((me.status, me.body["user"]["email"].as_str()), (200, Some("new@example.test")));
    assert_eq!(app.audit_actions(tenant).await, actions, "found, not provisioned again");
}

#[tokio::test]
async fn concurrent_metadata_patches_are_all_applied() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let t = Some(member.token.as_str());
    let body = serde_json::json!({"filename": "a.pdf", "s3_key": "k", "s3_bucket": "b", "metadata": {"ssn": "x"}});
    let created = app.call("POST", "/api/v1/documents", t, Some(body)).await;
    assert_eq!(created.status, 201);
    let path = format!("/api/v1/documents/{}", created.body["id"].as_str().unwrap());

    // Ten merge patches at once, each adding its own key, and one removing `ssn`: before the
    // row lock, all answered 200 and most keys were lost (read-modify-write without a lock).
    let app = &app;
    let mut patches: Vec<serde_json::Value> =
        (0..10).map(|i| serde_json::json!({ "metadata": { format!("key{i}"): i } })).collect();
    patches.push(serde_json::json!({ "metadata": { "ssn": null } }));
    let answers = futures::future::join_all(
        patches.into_iter().map(|patch| async { app.call("PATCH", &path, t, Some(patch)).await.status }),
    )
    .await;
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");

    let stored = app.call("GET", &path, t, None).await.body["metadata"].clone();
    for i in 0..10 {
        assert_eq!(stored[format!("key{i}")], i, "key{i} lost: {stored}");
    }
    assert!(stored.get("ssn").is_none(), "the removal was lost: {stored}");
}

/// `method path` with `If-Match: if_match` and an optional JSON body, as the token's holder.
async fn with_if_match(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    if_match: String,
    body: Option<serde_json::Value>,
) -> crate::helpers::Reply {
    let mut request =
        app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(token).header("If-Match", if_match);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn if_match_applies_a_change_only_to_the_version_it_names() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let t = Some(member.token.as_str());
    let created = app.call("POST", "/api/v1/documents", t, Some(crate::helpers::document_body("a.pdf", None))).await;
    let path = format!("/api/v1/documents/{}", created.body["id"].as_str().unwrap());
    let first = app.call("GET", &path, t, None).await;
    let version = first.etag.clone().expect("GET answers an ETag");
    assert!(version.starts_with('"') && version.ends_with('"'), "a strong tag: {version}");
    assert_eq!(app.call("GET", &path, t, None).await.etag.as_deref(), Some(version.as_str()), "stable while unchanged");

    let send =
        |method, if_match: &str, body| with_if_match(&app, &member.token, method, &path, if_match.to_owned(), body);
    // The current version: applied, and the answer carries the new version.
    let patched = send("PATCH", &version, Some(serde_json::json!({"status": "completed"}))).await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    let newer = patched.etag.clone().expect("PATCH answers the new ETag");
    assert_ne!(newer, version);

    // The old version: 412, and nothing changes.
    let before = app.row_counts().await;
    let stale = send("PATCH", &version, Some(serde_json::json!({"status": "failed"}))).await;
    assert_eq!((stale.status, stale.code()), (412, "RES_412"), "{:?}", stale.body);
    let stale_delete = send("DELETE", &version, None).await;
    assert_eq!((stale_delete.status, stale_delete.code()), (412, "RES_412"));
    assert_eq!(app.row_counts().await, before, "a refused precondition writes nothing");
    assert_eq!(app.call("GET", &path, t, None).await.body["status"], "completed");

    // A weak tag never matches; `*` and a list naming the current version do.
    let weak = send("DELETE", &format!("W/{newer}"), None).await;
    assert_eq!(weak.status, 412);
    let listed = send("PATCH", &format!("\"other\", {newer}"), Some(serde_json::json!({"metadata": {"k": 1}}))).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let deleted = send("DELETE", "*", None).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
}

/// The same precondition on users: two admins editing one user cannot overwrite each other's
/// change unseen.
#[tokio::test]
async fn if_match_applies_a_user_change_only_to_the_version_it_names() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let t = Some(admin.token.as_str());
    let path = format!("/api/v1/users/{}", member.user.id);
    let version = app.call("GET", &path, t, None).await.etag.expect("GET answers an ETag");
    assert!(version.starts_with('"') && version.ends_with('"'), "a strong tag: {version}");

    let send = |method, if_match: String, body| with_if_match(&app, &admin.token, method, &path, if_match, body);
    let renamed = send("PATCH", version.clone(), Some(serde_json::json!({"full_name": "Ann"}))).await;
    assert_eq!(renamed.status, 200, "{:?}", renamed.body);
    let newer = renamed.etag.clone().expect("PATCH answers the new ETag");
    assert_ne!(newer, version);

    // The second admin's edit, made on the version read before: refused, nothing written.
    let before = app.row_counts().await;
    let stale = send("PATCH", version.clone(), Some(serde_json::json!({"role": "viewer"}))).await;
    assert_eq!((stale.status, stale.code()), (412, "RES_412"), "{:?}", stale.body);
    let stale_delete = send("DELETE", version, None).await;
    assert_eq!((stale_delete.status, stale_delete.code()), (412, "RES_412"));
    assert_eq!(app.row_counts().await, before, "a refused precondition writes nothing");
    let now = app.call("GET", &path, t, None).await;
    assert_eq!((now.body["role"].as_str(), now.body["full_name"].as_str()), (Some("member"), Some("Ann")));

    let deleted = send("DELETE", newer, None).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
}
