//! `POST /documents/batch`: all or nothing, one audit row, its own body limit and timeout.

use carevault_db::UserRole;
use serde_json::{Value, json};

use crate::helpers::{TestApp, document_body};

fn batch(count: usize, seed: Option<u32>) -> Value {
    let documents: Vec<Value> = (0..count).map(|i| document_body(&format!("f{i}.pdf"), seed)).collect();
    json!({ "documents": documents })
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_with_one_audit_row() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;

    // The third document's embedding is refused: 422 naming its index, the value not echoed,
    // nothing written (not even the first two).
    let mut body = batch(3, Some(1));
    body["documents"][2]["embedding"] = json!(vec![123.456; 10]);
    let before = app.row_counts().await;
    let reply = app.call("POST", "/api/v1/documents/batch", Some(&member.token), Some(body)).await;
    assert_eq!((reply.status, reply.code()), (422, "VAL_003"), "{}", reply.body);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("documents[2].embedding: "), "{message}");
    assert!(!reply.body.to_string().contains("123.456"), "{}", reply.body);
    assert_eq!(app.row_counts().await, before);

    // A good batch: 201, the documents in the request's order, one `document.imported` row.
    let reply = app.call("POST", "/api/v1/documents/batch", Some(&member.token), Some(batch(3, Some(1)))).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let created = reply.body["documents"].as_array().unwrap();
    let names: Vec<&str> = created.iter().map(|d| d["filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["f0.pdf", "f1.pdf", "f2.pdf"]);
    assert!(created.iter().all(|d| d["has_embedding"] == json!(true) && d.get("embedding").is_none()));
    assert!(created.iter().all(|d| d["user_id"] == json!(member.user.id.to_string())));
    let after = app.row_counts().await;
    assert_eq!(after.2, before.2 + 3);
    let actions = app.audit_actions(tenant).await;
    assert_eq!(actions.iter().filter(|a| *a == "document.imported").count(), 1, "{actions:?}");
    assert!(!actions.iter().any(|a| a == "document.created"), "{actions:?}");

    // The audit row, read back through the API, lists the ids.
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let log = app.call("GET", "/api/v1/audit-logs?action=document.imported", Some(&admin.token), None).await;
    assert_eq!(log.status, 200, "{}", log.body);
    let row = &log.body["items"][0];
    assert_eq!(row["resource_type"], "document");
    assert_eq!(row["resource_id"], json!(tenant.to_string()));
    assert_eq!(row["metadata"]["count"], 3);
    let ids: Vec<Value> = created.iter().map(|d| d["id"].clone()).collect();
    assert_eq!(row["metadata"]["ids"], json!(ids));
}

#[tokio::test]
async fn a_batch_holds_one_to_a_thousand_documents() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let before = app.row_counts().await;
    for count in [0, 1001] {
        let reply = app.call("POST", "/api/v1/documents/batch", Some(&member.token), Some(batch(count, None))).await;
        assert_eq!((reply.status, reply.code()), (422, "VAL_003"), "{count}: {}", reply.body);
        assert_eq!(reply.body["error"]["message"], "documents: must hold 1 to 1000 documents");
    }
    assert_eq!(app.row_counts().await, before);
    let reply = app.call("POST", "/api/v1/documents/batch", Some(&member.token), Some(batch(1000, None))).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["documents"].as_array().unwrap().len(), 1000);
    assert_eq!(app.row_counts().await.2, before.2 + 1000);
}

#[tokio::test]
async fn only_the_batch_route_takes_the_larger_body() {
    let app = TestApp::spawn_with(|config, _| {
        config.max_body_bytes = 64 * 1024;
        config.batch_max_body_bytes = 256 * 1024;
    })
    .await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    // Two documents of about 50 KB each: a body over MAX_BODY_BYTES, under BATCH_MAX_BODY_BYTES.
    let blob = |kb: usize| "x".repeat(kb * 1024);
    let mut large = document_body("big.pdf", None);
    large["metadata"] = json!({"a": blob(50)});
    let body = json!({"documents": [large.clone(), large]});
    // The same body anywhere else is too large before it is even parsed.
    let reply = app.call("POST", "/api/v1/documents", Some(&member.token), Some(body.clone())).await;
    assert_eq!((reply.status, reply.code()), (413, "REQ_413"));
    let reply = app.call("POST", "/api/v1/documents/batch", Some(&member.token), Some(body)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Over BATCH_MAX_BODY_BYTES: 413 and nothing written.
    let before = app.row_counts().await;
    let mut huge = document_body("huge.pdf", None);
    huge["metadata"] = json!({"a": blob(60)});
    let reply = app
        .call("POST", "/api/v1/documents/batch", Some(&member.token), Some(json!({"documents": vec![huge; 5]})))
        .await;
    assert_eq!((reply.status, reply.code()), (413, "REQ_413"));
    assert_eq!(app.row_counts().await, before);

    // Without a valid token the larger body is not even read: 401 before the body's size counts.
    let over = json!({"documents": vec![document_body("x.pdf", None); 1], "padding": blob(300)});
    for token in [None, Some("not-a-token")] {
        let reply = app.call("POST", "/api/v1/documents/batch", token, Some(over.clone())).await;
        assert_eq!((reply.status, reply.code()), (401, "AUTH_001"), "{token:?}");
    }
}

#[tokio::test]
async fn the_batch_route_has_its_own_timeout_and_a_timed_out_batch_writes_nothing() {
    let app = TestApp::spawn_with(|config, _| {
        config.batch_request_timeout = std::time::Duration::from_millis(1);
    })
    .await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let before = app.row_counts().await;
    let reply = app.call("POST", "/api/v1/documents/batch", Some(&member.token), Some(batch(1000, Some(3)))).await;
    assert_eq!((reply.status, reply.code()), (504, "SYS_005"), "{}", reply.body);
    // The other routes keep REQUEST_TIMEOUT_SECONDS.
    let reply = app.call("POST", "/api/v1/documents", Some(&member.token), Some(document_body("a.pdf", Some(1)))).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(app.row_counts().await.2, before.2 + 1);
}

#[tokio::test]
async fn a_viewer_cannot_import() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let viewer = app.caller(tenant, UserRole::Viewer, "viewer").await;
    let before = app.row_counts().await;
    let reply = app.call("POST", "/api/v1/documents/batch", Some(&viewer.token), Some(batch(2, None))).await;
    assert_eq!((reply.status, reply.code()), (403, "AUTH_009"));
    assert_eq!(app.row_counts().await.2, before.2);
    assert!(app.audit_actions(tenant).await.iter().any(|a| a == "access.denied"));
}
