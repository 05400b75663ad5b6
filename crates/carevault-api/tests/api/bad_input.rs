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
        // Just outside the documented bounds (pgvector's float32 arithmetic would be wrong there).
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| b["embedding"] = json!(one_value(f64::from_bits(1e15_f64.to_bits() + 1))))),
            422,
            "VAL_003",
        ),
        (
            "POST",
            "/api/v1/documents".into(),
            Some(with(&|b| b["embedding"] = json!(one_value(9.9e-16)))),
            422,
            "VAL_003",
        ),
        ("POST", "/api/v1/documents".into(), Some(with(&|b| b["size_bytes"] = json!(10.5))), 400, "VAL_001"),
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
        ("GET", "/api/v1/documents?cursor=%2B1.0123456789abcdef0123456789abcdef".into(), None, 422, "VAL_003"),
        // Outside timestamptz (was a 500, found by the schema fuzzer).
        (
            "GET",
            "/api/v1/audit-logs?cursor=-507178960083044105.9ac0dbad3a7e48b040d63a51dd1393ab".into(),
            None,
            422,
            "VAL_003",
        ),
        // `null` where the document allows no `null`; an empty change.
        ("PATCH", format!("/api/v1/documents/{doc}"), Some(json!({"status": null})), 422, "VAL_003"),
        (
            "PATCH",
            format!("/api/v1/documents/{doc}"),
            Some(json!({"metadata": null, "embedding": null})),
            422,
            "VAL_003",
        ),
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
        ("POST", "/api/v1/documents/batch".into(), Some(json!({"documents": []})), 422, "VAL_003"),
        ("POST", "/api/v1/documents/batch".into(), Some(json!({})), 422, "VAL_002"),
        ("POST", "/api/v1/documents/batch".into(), Some(json!({"documents": "x"})), 400, "VAL_001"),
        ("POST", "/api/v1/documents/batch".into(), Some(json!([document_body("a.pdf", None)])), 400, "VAL_001"),
        (
            "POST",
            "/api/v1/documents/batch".into(),
            Some(json!({"documents": [document_body("a.pdf", None)], "extra": 1})),
            400,
            "VAL_001",
        ),
        (
            "POST",
            "/api/v1/documents/batch".into(),
            Some(json!({"documents": [document_body("a.pdf", None), with(&|b| b["filename"] = json!(""))]})),
            422,
            "VAL_003",
        ),
        (
            "POST",
            "/api/v1/documents/batch".into(),
            Some(json!({"documents": [with(&|b| {
                b.as_object_mut().unwrap().remove("s3_key");
            })]})),
            422,
            "VAL_002",
        ),
        (
            "POST",
            "/api/v1/documents/batch".into(),
            Some(json!({"documents": [with(&|b| b["size_bytes"] = json!(-1))]})),
            422,
            "VAL_003",
        ),
        (
            "POST",
            "/api/v1/documents/batch".into(),
            Some(json!({"documents": [with(&|b| b["embedding"] = json!(vec![0.0; 1024]))]})),
            422,
            "VAL_003",
        ),
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

/// An embedding that is zero but for one value.
fn one_value(value: f64) -> Vec<f64> {
    let mut values = vec![0.0; 1024];
    values[7] = value;
    values
}

/// Values on the accepting side of each rule the OpenAPI document states (`schema.rs`): the
/// schema fuzzer's boundary cases, kept as regressions.
#[tokio::test]
async fn values_at_the_documented_edges_are_accepted() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let create = |edit: &dyn Fn(&mut Value)| {
        let mut body = document_body("edge.pdf", None);
        edit(&mut body);
        app.call("POST", "/api/v1/documents", Some(&admin.token), Some(body))
    };

    // JSON Schema's integers include `10.0` (found by the fuzzer as a 400).
    let reply = create(&|b| b["size_bytes"] = json!(10.0)).await;
    assert_eq!((reply.status, &reply.body["size_bytes"]), (201, &json!(10)), "{}", reply.body);
    // The bounds themselves, read exactly (serde_json's `float_roundtrip`: its default parser may
    // be one unit in the last place off, which moved a bound).
    for value in [1e15, -1e15, 1e-15, -1e-15] {
        let reply = create(&|b| b["embedding"] = json!(one_value(value))).await;
        assert_eq!(reply.status, 201, "{value:e}: {}", reply.body);
    }
    // Lengths are counted as sent; surrounding whitespace is trimmed, not stored.
    let reply = create(&|b| b["filename"] = json!(format!(" {} ", "x".repeat(510)))).await;
    assert_eq!((reply.status, reply.body["filename"].as_str().map(str::len)), (201, Some(510)), "{}", reply.body);
    let search = json!({"embedding": one_value(1.0), "limit": 5.0, "threshold": -1});
    let reply = app.call("POST", "/api/v1/documents/search", Some(&admin.token), Some(search)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let user = json!({"email": " Ann.Lee@Clinic.Example\t", "role": "viewer"});
    let reply = app.call("POST", "/api/v1/users", Some(&admin.token), Some(user)).await;
    assert_eq!((reply.status, &reply.body["email"]), (201, &json!("ann.lee@clinic.example")), "{}", reply.body);
}
