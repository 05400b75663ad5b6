//! `GET /audit-logs?action=&resource_type=`: both filters are closed sets (`AuditAction`,
//! `AuditResourceType`). An unknown name is refused with `VAL_003` and writes nothing; every known
//! name narrows the list; a stored name this version does not know is still listed.

use carevault_db::{AuditAction, AuditResourceType, TenantId, UserRole};
use serde_json::Value;

use crate::helpers::{Reply, TestApp, document_body};

fn items(reply: &Reply) -> &Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["items"].as_array().unwrap()
}

#[tokio::test]
async fn an_unknown_action_or_resource_type_is_refused_without_echoing_it() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let before = app.row_counts().await;
    for (field, sent, decoded) in [
        ("action", "Ann%20Lee%20HIV", "Ann Lee HIV"),
        ("action", "document.READ", "document.READ"),
        ("action", "document.read%20", "document.read "),
        ("action", "forged", "forged"),
        ("action", "", ""),
        ("resource_type", "patient-Ann-Lee", "patient-Ann-Lee"),
        ("resource_type", "Document", "Document"),
        ("resource_type", "auditlog", "auditlog"),
        ("resource_type", "", ""),
    ] {
        let reply = app.call("GET", &format!("/api/v1/audit-logs?{field}={sent}"), Some(&admin.token), None).await;
        assert_eq!((reply.status, reply.code()), (422, "VAL_003"), "{field}={sent}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{field}={sent}: {message}");
        if !decoded.is_empty() {
            assert!(!reply.body.to_string().contains(decoded), "{field}={sent} echoed: {}", reply.body);
        }
    }
    // Refused before the list runs: not even the `audit.read` row is written.
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test]
async fn every_action_and_resource_type_is_a_filter() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let t = Some(admin.token.as_str());
    let created = app.call("POST", "/api/v1/documents", t, Some(document_body("a.pdf", None))).await;
    let id = created.body["id"].as_str().unwrap();
    app.call("GET", &format!("/api/v1/documents/{id}"), t, None).await;
    let app = &app;
    let list = |query: String| async move { app.call("GET", &format!("/api/v1/audit-logs?{query}"), t, None).await };

    for action in AuditAction::ALL {
        let reply = list(format!("action={action}")).await;
        for item in items(&reply) {
            assert_eq!(item["action"], action.as_str());
            assert_eq!(item["resource_type"], action.resource_type().as_str());
        }
    }
    for resource_type in AuditResourceType::ALL {
        let reply = list(format!("resource_type={resource_type}")).await;
        for item in items(&reply) {
            assert_eq!(item["resource_type"], resource_type.as_str());
        }
    }

    let created_rows = list("action=document.created".into()).await;
    assert_eq!(items(&created_rows).len(), 1);
    assert_eq!(items(&created_rows)[0]["resource_id"], id);
    let reads = list("action=document.read&resource_type=document".into()).await;
    assert_eq!(items(&reads).len(), 1);
    let mismatched = list("action=document.read&resource_type=user".into()).await;
    assert!(items(&mismatched).is_empty());
    // Every list above was itself audited `audit.read`, on the resource type `audit_log`.
    let audit_reads = list("resource_type=audit_log".into()).await;
    assert!(items(&audit_reads).len() > AuditAction::ALL.len());
    assert!(items(&audit_reads).iter().all(|item| item["action"] == "audit.read"));
}

/// A row written by another version or tool (anything with the INSERT grant) may hold a name
/// this version does not know; it must not make the log unreadable.
#[tokio::test]
async fn a_stored_action_this_version_does_not_know_is_still_listed() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    insert_foreign_row(&app, tenant, "report.exported", "report").await;
    let reply = app.call("GET", "/api/v1/audit-logs", Some(&admin.token), None).await;
    let foreign: Vec<&Value> = items(&reply).iter().filter(|item| item["action"] == "report.exported").collect();
    assert_eq!(foreign.len(), 1, "{}", reply.body);
    assert_eq!(foreign[0]["resource_type"], "report");
}

/// Inserts an audit row as the runtime role, as another tool with its grant could.
async fn insert_foreign_row(app: &TestApp, tenant: TenantId, action: &str, resource_type: &str) {
    let mut conn = app.tenant_session(tenant).await;
    sqlx::query("INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id) VALUES ($1, $2, $3, $1)")
        .bind(tenant)
        .bind(action)
        .bind(resource_type)
        .execute(&mut conn)
        .await
        .unwrap();
}
