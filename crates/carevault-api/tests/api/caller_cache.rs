//! The caller cache (`CALLER_CACHE_SECONDS`): a suspended tenant, a deleted user or a demoted
//! one is refused at once when the change goes through this server, and within the time to live
//! when it is made elsewhere (here: SQL as the owner, as another replica or the CLI would).

use std::time::Duration;

use carevault_db::UserRole;

use crate::helpers::{PLATFORM_TOKEN, TestApp};

const TTL: Duration = Duration::from_secs(1);

async fn app() -> TestApp {
    TestApp::spawn_with(|config, _| config.caller_cache_ttl = TTL).await
}

#[tokio::test]
async fn a_change_made_elsewhere_reaches_a_remembered_caller_within_the_time_to_live() {
    let app = app().await;
    let tenant = app.tenant("Clinic").await;
    let viewer = app.caller(tenant, UserRole::Viewer, "v").await;
    let other = app.caller(tenant, UserRole::Viewer, "w").await;
    assert_eq!(app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await.status, 200);
    assert_eq!(app.call("GET", "/api/v1/documents", Some(&other.token), None).await.status, 200);

    let owner = app.db.owner_pool().await;
    sqlx::query("UPDATE users SET deleted_at = now() WHERE id = $1").bind(other.user.id).execute(&owner).await.unwrap();
    // Remembered: the next request is still answered (this is what the cache saves)...
    assert_eq!(app.call("GET", "/api/v1/documents", Some(&other.token), None).await.status, 200);
    // ...and refused once the entry has expired.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let refused = app.call("GET", "/api/v1/documents", Some(&other.token), None).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_008"));

    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = $1").bind(tenant).execute(&owner).await.unwrap();
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let refused = app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_007"));
}

#[tokio::test]
async fn a_change_made_through_this_server_applies_to_the_next_request() {
    let app = TestApp::spawn_with(|config, _| config.caller_cache_ttl = Duration::from_secs(300)).await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "a").await;
    let member = app.caller(tenant, UserRole::Member, "m").await;
    let body = crate::helpers::document_body("a.pdf", None);
    assert_eq!(app.call("POST", "/api/v1/documents", Some(&member.token), Some(body.clone())).await.status, 201);

    // Demoted to viewer through the API: the member's next write is refused.
    let path = format!("/api/v1/users/{}", member.user.id);
    let demoted = app.call("PATCH", &path, Some(&admin.token), Some(serde_json::json!({ "role": "viewer" }))).await;
    assert_eq!(demoted.status, 200, "{:?}", demoted.body);
    let refused = app.call("POST", "/api/v1/documents", Some(&member.token), Some(body)).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_009"));

    // Deleted through the API: refused at once.
    assert_eq!(app.call("DELETE", &path, Some(&admin.token), None).await.status, 200);
    let refused = app.call("GET", "/api/v1/documents", Some(&member.token), None).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_008"));

    // The tenant suspended through the platform API: refused at once.
    let suspend = format!("/api/v1/platform/tenants/{tenant}/suspend");
    assert_eq!(app.call("POST", &suspend, Some(PLATFORM_TOKEN), None).await.status, 200);
    let refused = app.call("GET", "/api/v1/documents", Some(&admin.token), None).await;
    assert_eq!((refused.status, refused.code()), (403, "AUTH_007"));
}
