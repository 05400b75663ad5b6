//! Another tenant's resource id gives exactly the same answer as a random id, for every verb.

use carevault_db::UserRole;
use serde_json::json;

use crate::helpers::{TestApp, document_body};

#[tokio::test]
async fn another_tenants_ids_look_like_random_ids_for_every_verb() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.tenant("A").await, app.tenant("B").await);
    let alice = app.caller(a, UserRole::Admin, "alice").await;
    let bob = app.caller(b, UserRole::Admin, "bob").await;
    let bob_doc = app.call("POST", "/api/v1/documents", Some(&bob.token), Some(document_body("b.pdf", Some(3)))).await;
    let bob_doc = bob_doc.body["id"].as_str().unwrap().to_string();
    let bob_user = bob.user.id.to_string();
    let random = uuid::Uuid::new_v4().to_string();
    let before = app.row_counts().await;
    let bob_audit_before = app.audit_actions(b).await;

    let requests = |doc: &str, user: &str| {
        vec![
            ("GET", format!("/api/v1/documents/{doc}"), None),
            ("GET", format!("/api/v1/documents/{doc}?include=embedding"), None),
            ("PATCH", format!("/api/v1/documents/{doc}"), Some(json!({"status": "failed", "metadata": {"x": 1}}))),
            ("DELETE", format!("/api/v1/documents/{doc}"), None),
            ("POST", format!("/api/v1/documents/{doc}/restore"), None),
            ("GET", format!("/api/v1/users/{user}"), None),
            ("PATCH", format!("/api/v1/users/{user}"), Some(json!({"role": "viewer"}))),
            ("DELETE", format!("/api/v1/users/{user}"), None),
            ("POST", format!("/api/v1/users/{user}/restore"), None),
            ("GET", format!("/api/v1/documents?user_id={user}"), None),
            ("GET", format!("/api/v1/audit-logs?resource_id={doc}"), None),
        ]
    };
    for ((method, theirs, body), (_, random_path, _)) in
        requests(&bob_doc, &bob_user).into_iter().zip(requests(&random, &random))
    {
        let their_reply = app.call(method, &theirs, Some(&alice.token), body.clone()).await;
        let random_reply = app.call(method, &random_path, Some(&alice.token), body).await;
        assert_eq!(their_reply.status, random_reply.status, "{method} {theirs}");
        assert_eq!(their_reply.without_request_id(), random_reply.without_request_id(), "{method} {theirs}");
        assert!(!their_reply.body.to_string().contains("b.pdf"), "leaked tenant B's data");
    }
    // Tenant B is untouched, and its audit log got nothing from A's attempts.
    let after = app.row_counts().await;
    assert_eq!((after.0, after.1, after.2), (before.0, before.1, before.2));
    assert_eq!(app.audit_actions(b).await, bob_audit_before);
    let doc = app.call("GET", &format!("/api/v1/documents/{bob_doc}"), Some(&bob.token), None).await;
    assert_eq!((doc.body["status"].as_str(), doc.body["deleted_at"].is_null()), (Some("processing"), true));
}
