//! Search returns the caller's nearest documents only.

use carevault_db::UserRole;
use serde_json::json;

use crate::helpers::{TestApp, document_body, embedding};

#[tokio::test]
async fn search_returns_the_callers_nearest_documents_only() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.tenant("A").await, app.tenant("B").await);
    let alice = app.caller(a, UserRole::Member, "alice").await;
    let bob = app.caller(b, UserRole::Member, "bob").await;
    let mut alice_docs = Vec::new();
    for seed in 1..=5 {
        let reply = app
            .call(
                "POST",
                "/api/v1/documents",
                Some(&alice.token),
                Some(document_body(&format!("a{seed}.pdf"), Some(seed))),
            )
            .await;
        alice_docs.push(reply.body["id"].as_str().unwrap().to_string());
    }
    // Bob holds the exact query vector: it must still never show up for Alice.
    let bob_doc = app.call("POST", "/api/v1/documents", Some(&bob.token), Some(document_body("b.pdf", Some(3)))).await;
    let bob_doc = bob_doc.body["id"].as_str().unwrap().to_string();

    let reply = app
        .call(
            "POST",
            "/api/v1/documents/search",
            Some(&alice.token),
            Some(json!({"embedding": embedding(3), "limit": 3, "threshold": -1.0})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["id"], alice_docs[2].as_str(), "the identical vector is nearest");
    assert!(results[0]["distance"].as_f64().unwrap() < 1e-6);
    assert!((results[0]["similarity"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    let distances: Vec<f64> = results.iter().map(|r| r["distance"].as_f64().unwrap()).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        results
            .iter()
            .all(|r| alice_docs.contains(&r["id"].as_str().unwrap().to_string()) && r["id"] != bob_doc.as_str())
    );
    // The default threshold (0.7) keeps only the near-identical one here.
    let strict = app
        .call("POST", "/api/v1/documents/search", Some(&alice.token), Some(json!({"embedding": embedding(3)})))
        .await;
    let ids: Vec<&str> = strict.body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&alice_docs[2].as_str()) && ids.iter().all(|id| alice_docs.iter().any(|d| d == id)));
    assert!(app.audit_actions(a).await.iter().any(|a| a == "document.searched"));
}
