//! Bad input: 4xx with the envelope and a stable code, and nothing written.

use carevault_db::UserRole;
use serde_json::{Value, json};

use crate::helpers::{TestApp, document_body};

#[tokio::test]
async fn bad_input_is_refused_with_its_code_and_changes_nothing() {
    let app = TestApp::spawn_with(|config, _| config.max_body_bytes = 64 * 1024).await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let doc = app.call("POST", "/api/v1/documents", Some(&admin.token), Some(document_body("d.pdf", None))).await;
    let doc = doc.body["id"].as_str().unwrap().to_string();

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = document_body("x.pdf", None);
        edit(&mut body);
        body
    };
    let mut deep = json!({});
    for _ in 0..20 {
        deep = json!({ "n": deep });
    }
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| {
                b.as_object_mut().unwrap().remove("filename");
            })),
            422,
            "VAL_002",
        ),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["filename"] = json!(""))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["filename"] = json!("x".repeat(600)))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["filename"] = json!(42))), 400, "VAL_001"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["status"] = json!("deleted"))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["size_bytes"] = json!(-1))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["metadata"] = json!([1, 2]))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["metadata"] = deep.clone())), 422, "VAL_003"),
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| b["metadata"] = json!({"note": "a\u{0}b"}))),
            422,
            "VAL_003",
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(json!({"email": "twin@x.test", "role": "viewer", "external_idp_id": "admin"})),
            409,
            "RES_409",
        ),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["embedding"] = json!(vec![0.1; 1023]))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["embedding"] = json!(vec![0.0; 1024]))), 422, "VAL_003"),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["embedding"] = json!(vec![1e39; 1024]))), 422, "VAL_003"),
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| b["tenant_id"] = json!(uuid::Uuid::new_v4()))),
            400,
            "VAL_001",
        ),
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| b["user_id"] = json!(uuid::Uuid::new_v4()))),
            400,
            "VAL_001",
        ),
        ("POST", "/api/v1/documents".into(), Some(json!("just a string")), 400, "VAL_001"),
        ("POST", "/api/v1/users".into(), Some(json!({"email": "not-an-email", "role": "viewer"})), 422, "VAL_003"),
        ("POST", "/api/v1/users".into(), Some(json!({"email": "a@b.test", "role": "superadmin"})), 422, "VAL_003"),
        ("POST", "/api/v1/users".into(), Some(json!({"email": "a@b.test"})), 422, "VAL_002"),
        ("PATCH", format!("/api/v1/documents/{doc}"), Some(json!({})), 422, "VAL_003"),
        ("PATCH", format!("/api/v1/documents/{doc}"), Some(json!({"metadata": [1]})), 422, "VAL_003"),
        ("PATCH", format!("/api/v1/documents/{doc}"), Some(json!({"status": "bogus"})), 422, "VAL_003"),
        ("GET", "/api/v1/documents/not-a-uuid".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/users/'%20OR%201=1--".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/documents?limit=0".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/documents?limit=201".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/documents?limit=abc".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/documents?cursor=garbage".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/documents?status=bogus".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/documents?deleted=maybe".into(), None, 422, "VAL_003"),
        ("GET", format!("/api/v1/documents/{doc}?include=everything"), None, 422, "VAL_003"),
        ("GET", "/api/v1/audit-logs?since=yesterday".into(), None, 422, "VAL_003"),
        ("GET", "/api/v1/audit-logs?user_id=1".into(), None, 422, "VAL_003"),
        (
            "POST",
            "/api/v1/documents/search".into(),
            Some(json!({"embedding": vec![0.1; 1024], "limit": 101})),
            422,
            "VAL_003",
        ),
        (
            "POST",
            "/api/v1/documents/search".into(),
            Some(json!({"embedding": vec![0.1; 1024], "threshold": 2.0})),
            422,
            "VAL_003",
        ),
        ("POST", "/api/v1/documents/search".into(), Some(json!({"embedding": vec![0.1; 10]})), 422, "VAL_003"),
        ("POST", "/api/v1/documents/search".into(), Some(json!({"limit": 5})), 422, "VAL_002"),
        ("GET", "/api/v1/nowhere".into(), None, 404, "REQ_404"),
        ("PUT", "/api/v1/documents".into(), None, 405, "REQ_405"),
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| b["metadata"] = json!({"blob": "x".repeat(70 * 1024)}))),
            413,
            "REQ_413",
        ),
    ];
    let before = app.row_counts().await;
    for (method, path, body, status, code) in &cases {
        let reply = app.call(method, path, Some(&admin.token), body.clone()).await;
        assert_eq!((reply.status, reply.code()), (*status, *code), "{method} {path}: {}", reply.body);
        assert_eq!(reply.body["error"]["request_id"].as_str(), reply.request_id.as_deref(), "{method} {path}");
    }
    // Not JSON at all.
    let form = app
        .client
        .post(app.url("/api/v1/documents"))
        .bearer_auth(&admin.token)
        .header("content-type", "text/plain")
        .body("x");
    let reply = crate::helpers::read(form.send().await.unwrap()).await;
    assert_eq!((reply.status, reply.code()), (415, "REQ_415"));
    let broken = app
        .client
        .post(app.url("/api/v1/documents"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{\"filename\":");
    let reply = crate::helpers::read(broken.send().await.unwrap()).await;
    assert_eq!((reply.status, reply.code()), (400, "VAL_001"));

    let after = app.row_counts().await;
    assert_eq!((after.0, after.1, after.2), (before.0, before.1, before.2), "bad input wrote a row");
    // Failed requests leave no audit row either (lists of nothing are not run at all).
    assert_eq!(after.3, before.3, "bad input wrote an audit row");
}
