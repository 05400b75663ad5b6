//! The role matrix of docs/ARCHITECTURE.md ("HTTP API"), for every endpoint: a refused call is 403 `AUTH_009`, is
//! audited `access.denied`, and changes nothing else.

use carevault_db::UserRole;
use serde_json::{Value, json};

use crate::helpers::{TestApp, document_body, embedding};

/// (method, path, body, least role) of every tenant endpoint.
fn matrix(doc: &str, user: &str) -> Vec<(&'static str, String, Option<Value>, UserRole)> {
    use UserRole::{Admin, Member, Viewer};
    vec![
        ("GET", "/api/v1/auth/validate".into(), None, Viewer),
        ("GET", "/api/v1/tenants/current".into(), None, Viewer),
        ("GET", "/api/v1/users".into(), None, Viewer),
        ("GET", format!("/api/v1/users/{user}"), None, Viewer),
        ("POST", "/api/v1/users".into(), Some(json!({"email": "new@x.test", "role": "viewer"})), Admin),
        ("PATCH", format!("/api/v1/users/{user}"), Some(json!({"full_name": "X"})), Admin),
        ("DELETE", format!("/api/v1/users/{user}"), None, Admin),
        ("POST", format!("/api/v1/users/{user}/restore"), None, Admin),
        ("GET", "/api/v1/documents".into(), None, Viewer),
        ("GET", format!("/api/v1/documents/{doc}"), None, Viewer),
        (
            "POST",
            "/api/v1/documents/search".into(),
            Some(json!({"embedding": embedding(1), "threshold": -1.0})),
            Viewer,
        ),
        ("POST", "/api/v1/documents".into(), Some(document_body("n.pdf", None)), Member),
        (
            "POST",
            "/api/v1/documents/batch".into(),
            Some(json!({"documents": [document_body("b1.pdf", None), document_body("b2.pdf", Some(2))]})),
            Member,
        ),
        ("PATCH", format!("/api/v1/documents/{doc}"), Some(json!({"status": "completed"})), Member),
        ("DELETE", format!("/api/v1/documents/{doc}"), None, Member),
        ("POST", format!("/api/v1/documents/{doc}/restore"), None, Member),
        ("GET", "/api/v1/audit-logs".into(), None, Admin),
        ("GET", "/api/v1/audit-logs/checkpoints/latest".into(), None, Admin),
    ]
}

fn rank(role: UserRole) -> u8 {
    match role {
        UserRole::Viewer => 0,
        UserRole::Member => 1,
        UserRole::Admin => 2,
    }
}

#[tokio::test]
async fn every_endpoint_enforces_the_role_matrix() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let viewer = app.caller(tenant, UserRole::Viewer, "viewer").await;
    let target = app.caller(tenant, UserRole::Viewer, "target").await;
    let doc = app.call("POST", "/api/v1/documents", Some(&member.token), Some(document_body("d.pdf", Some(1)))).await;
    let doc = doc.body["id"].as_str().unwrap().to_string();
    let user = target.user.id.to_string();
    // A signed checkpoint, so that reading the latest one succeeds for the roles allowed to.
    let key = carevault_db::audit_chain::AuditSigningKey::parse(&"07".repeat(32)).unwrap();
    carevault_db::audit_chain::seal(&app.db.platform_pool(), Some(&key)).await.unwrap();

    for caller in [&viewer, &member, &admin] {
        let role = caller.user.role;
        for (method, path, body, least) in matrix(&doc, &user) {
            let before = app.row_counts().await;
            let denied_before = app.audit_actions(tenant).await.iter().filter(|a| *a == "access.denied").count();
            let reply = app.call(method, &path, Some(&caller.token), body).await;
            if rank(role) >= rank(least) {
                assert!(reply.status < 300, "{role:?} {method} {path}: {} {}", reply.status, reply.body);
            } else {
                assert_eq!((reply.status, reply.code()), (403, "AUTH_009"), "{role:?} {method} {path}");
                let after = app.row_counts().await;
                assert_eq!(
                    (after.0, after.1, after.2),
                    (before.0, before.1, before.2),
                    "{role:?} {method} {path} wrote"
                );
                let denied = app.audit_actions(tenant).await.iter().filter(|a| *a == "access.denied").count();
                assert_eq!(denied, denied_before + 1, "{role:?} {method} {path}: access.denied audited once");
            }
        }
    }
}
