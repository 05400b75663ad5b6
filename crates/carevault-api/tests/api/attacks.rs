//! The API attack catalogue (issue 5, item 2): attacker A of docs/THREAT_MODEL.md over real HTTP, with a
//! valid token of tenant A, forged tokens, or none. Every entry expects a 4xx envelope or a
//! harmless 2xx, never a 500, never tenant B's data. With `CAREVAULT_EVIDENCE_DIR` set, the
//! catalogue is written to `$CAREVAULT_EVIDENCE_DIR/api_attacks.json` (an array of
//! `{id, category, request, expected, observed, passed}`).
//!
//! Signature confusion against the OIDC keys (HS256 keyed with the RSA public key, RS384, an ES256
//! header on an RSA kid, unknown and impostor kids) is covered in `tests/auth.rs`
//! (`hs256_signed_with_the_rsa_public_key_is_refused`, `other_algorithms_are_refused`,
//! `wrong_key_and_unknown_kid_are_refused`); here the same attacks go through HTTP.

use carevault_db::UserRole;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{PLATFORM_TOKEN, Reply, SECRET, TestApp, document_body, read};

mod hardening;

/// What an attempt must produce.
enum Expect {
    /// Exactly this status and error code.
    Error(u16, &'static str),
    /// This success status (harmless: own tenant's data only).
    Ok(u16),
    /// One of these statuses (4xx), for answers the framework shapes.
    OneOf(&'static [u16]),
}

impl Expect {
    fn text(&self) -> String {
        match self {
            Expect::Error(status, code) => format!("{status} {code}"),
            Expect::Ok(status) => format!("{status}, own tenant's data only"),
            Expect::OneOf(statuses) => {
                format!("one of {}", statuses.iter().map(u16::to_string).collect::<Vec<_>>().join("/"))
            }
        }
    }

    fn matches(&self, reply: &Reply) -> bool {
        match self {
            Expect::Error(status, code) => reply.status == *status && reply.code() == *code,
            Expect::Ok(status) => reply.status == *status,
            Expect::OneOf(statuses) => statuses.contains(&reply.status),
        }
    }
}

/// A request body.
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Entry {
    id: String,
    category: &'static str,
    request: String,
    expected: String,
    observed: String,
    passed: bool,
}

struct Catalogue<'a> {
    app: &'a TestApp,
    /// Strings of tenant B that must appear in no answer to tenant A.
    secrets: Vec<String>,
    entries: Vec<Entry>,
}

impl Catalogue<'_> {
    /// Sends one attempt and records it.
    #[allow(clippy::too_many_arguments)]
    async fn attack(
        &mut self,
        category: &'static str,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
        expect: Expect,
    ) -> Reply {
        let mut request = self.app.client.request(method.parse().unwrap(), self.app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let summary = match &body {
            Body::None => String::new(),
            Body::Json(value) => {
                let text = value.to_string();
                if text.len() > 300 {
                    format!(" json({} bytes): {}…", text.len(), text.chars().take(200).collect::<String>())
                } else {
                    format!(" json: {text}")
                }
            }
            Body::Raw(kind, bytes) => format!(" {kind} ({} bytes)", bytes.len()),
        };
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(kind, bytes) => request.header("content-type", kind).body(bytes),
        };
        let reply = read(request.send().await.unwrap()).await;
        let text = reply.body.to_string();
        let leaked = self.secrets.iter().find(|s| text.contains(s.as_str()));
        let enveloped = reply.status < 400 || reply.body["error"]["code"].is_string();
        let passed = expect.matches(&reply) && reply.status != 500 && leaked.is_none() && enveloped;
        let mut observed = format!("{} {}", reply.status, reply.code()).trim_end().to_string();
        if let Some(secret) = leaked {
            observed.push_str(&format!(" LEAKED tenant B's {secret}"));
        }
        if !enveloped {
            observed.push_str(" (no error envelope)");
        }
        let shown_path = if path.len() > 200 {
            format!("{}…({} chars)", path.chars().take(120).collect::<String>(), path.len())
        } else {
            path.into()
        };
        let headers: String = headers.iter().map(|(n, v)| format!(" [{n}: {v}]")).collect();
        let who = if token.is_some() { "" } else { " (no token)" };
        self.entries.push(Entry {
            id: format!("API-{:02}", self.entries.len() + 1),
            category,
            request: format!("{method} {shown_path}{headers}{summary}{who}"),
            expected: expect.text(),
            observed,
            passed,
        });
        reply
    }

    /// Records a check that is not a single request.
    fn record(&mut self, category: &'static str, request: String, expected: &str, observed: String) {
        let passed = observed == expected;
        let id = format!("API-{:02}", self.entries.len() + 1);
        self.entries.push(Entry { id, category, request, expected: expected.into(), observed, passed });
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(tenant: &str, sub: &str) -> Value {
    json!({"iss": "carevault-dev", "aud": "carevault", "sub": sub, "iat": now(), "exp": now() + 300, "tenant_id": tenant})
}

fn sign(header: Header, claims: &Value, secret: &[u8]) -> String {
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn hs256_with_kid(kid: &str) -> Header {
    Header { kid: Some(kid.into()), ..Header::new(Algorithm::HS256) }
}

#[tokio::test]
async fn attacker_a_catalogue_every_attempt_is_refused_or_harmless() {
    let started = std::time::Instant::now();
    let app = TestApp::spawn().await;
    let (a, b) = (app.tenant("A").await, app.tenant("B").await);
    let alice = app.caller(a, UserRole::Admin, "alice").await;
    let viewer = app.caller(a, UserRole::Viewer, "vera").await;
    let member = app.caller(a, UserRole::Member, "mel").await;
    let bob = app.caller(b, UserRole::Admin, "bob").await;
    let mut secret_doc = document_body("secret-b.pdf", Some(3));
    secret_doc["metadata"] = json!({"diagnosis": "tenant-b-phi"});
    let bob_doc = app.call("POST", "/api/v1/documents", Some(&bob.token), Some(secret_doc)).await;
    assert_eq!(bob_doc.status, 201);
    let bob_doc_id = bob_doc.body["id"].as_str().unwrap().to_string();
    let bob_doc_created = bob_doc.body["created_at"].as_str().unwrap().to_string();
    let alice_doc =
        app.call("POST", "/api/v1/documents", Some(&alice.token), Some(document_body("a.pdf", Some(3)))).await;
    assert_eq!(alice_doc.status, 201);
    let b_before = app.audit_actions(b).await;

    let mut c = Catalogue {
        app: &app,
        secrets: vec![
            "secret-b.pdf".into(),
            "tenant-b-phi".into(),
            "bob@example.test".into(),
            bob_doc_id.clone(),
            bob.user.id.to_string(),
        ],
        entries: Vec::new(),
    };
    let (t, at) = (alice.token.as_str(), Some(alice.token.as_str()));
    let (a_id, b_id) = (a.to_string(), b.to_string());
    use Body::{Json, None as NoBody, Raw};
    use Expect::{Error, Ok, OneOf};

    // --- Token forgery and confusion -----------------------------------------------------------
    let payload = t.split('.').nth(1).unwrap().to_string();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    c.attack("token forgery", "GET", "/api/v1/documents", Some(&none), &[], NoBody, Error(401, "AUTH_004")).await;
    let rsa_public = include_bytes!("../keys/rsa1.pub.pem");
    let confused = sign(hs256_with_kid("rsa-1"), &claims(&a_id, "alice"), rsa_public);
    c.attack("token forgery", "GET", "/api/v1/documents", Some(&confused), &[], NoBody, Error(401, "AUTH_004")).await;
    let rs_header = format!(
        "{}.{payload}.c2ln",
        b64(&json!({"alg": "RS256", "kid": "../../../../dev/null", "typ": "JWT"}).to_string())
    );
    c.attack("token forgery", "GET", "/api/v1/documents", Some(&rs_header), &[], NoBody, Error(401, "AUTH_004")).await;
    for kid in ["../../../../etc/passwd", "' OR 1=1 --", "http://169.254.169.254/latest/meta-data", "\u{0}"] {
        let forged = sign(hs256_with_kid(kid), &claims(&a_id, "alice"), b"attacker-secret-attacker-secret-!!");
        c.attack("token forgery", "GET", "/api/v1/documents", Some(&forged), &[], NoBody, Error(401, "AUTH_004")).await;
    }
    let tampered = {
        let parts: Vec<&str> = t.split('.').collect();
        let mut evil = claims(&b_id, "bob");
        evil["tenant_id"] = json!(b_id);
        format!("{}.{}.{}", parts[0], b64(&evil.to_string()), parts[2])
    };
    c.attack("token forgery", "GET", "/api/v1/documents", Some(&tampered), &[], NoBody, Error(401, "AUTH_004")).await;
    let huge_token = "a".repeat(20_000);
    c.attack("token forgery", "GET", "/api/v1/documents", Some(&huge_token), &[], NoBody, OneOf(&[400, 401, 431]))
        .await;
    // Genuine signature (the dev secret), claims crossing tenants: the tenant's own users decide.
    let bob_in_a = sign(Header::default(), &claims(&a_id, "bob"), SECRET.as_bytes());
    c.attack("token confusion", "GET", "/api/v1/documents", Some(&bob_in_a), &[], NoBody, Error(401, "AUTH_001")).await;
    let alice_in_b = sign(Header::default(), &claims(&b_id, "alice"), SECRET.as_bytes());
    c.attack("token confusion", "GET", "/api/v1/documents", Some(&alice_in_b), &[], NoBody, Error(401, "AUTH_001"))
        .await;
    let mut sub_is_id = claims(&a_id, "bob");
    sub_is_id["email"] = json!("impostor@a.test");
    sub_is_id["email_verified"] = json!(true);
    let provisioned = c
        .attack(
            "token confusion",
            "GET",
            "/api/v1/auth/validate",
            Some(&sign(Header::default(), &sub_is_id, SECRET.as_bytes())),
            &[],
            NoBody,
            Ok(200),
        )
        .await;
    c.record(
        "token confusion",
        "sub = tenant B's admin's sub (a verified email of the attacker's choice), in tenant A: a new viewer of A"
            .into(),
        "viewer of tenant A, B's user: false",
        format!(
            "{} of tenant {}, B's user: {}",
            provisioned.body["role"].as_str().unwrap_or("?"),
            if provisioned.body["tenant"]["id"] == json!(a_id) { "A" } else { "other" },
            provisioned.body["user"]["id"] == json!(bob.user.id.to_string())
        ),
    );
    c.attack("platform", "GET", "/api/v1/platform/tenants", at, &[], NoBody, Error(401, "PLAT_001")).await;
    let platform_bearer = Some(PLATFORM_TOKEN);
    c.attack("platform", "GET", "/api/v1/documents", platform_bearer, &[], NoBody, Error(401, "AUTH_001")).await;

    // --- Tenant and user spoofing through headers, path, query and body --------------------------
    let bob_user = bob.user.id.to_string();
    for (name, value) in
        [("x-tenant-id", b_id.as_str()), ("x-user-id", bob_user.as_str()), ("tenant-id", b_id.as_str())]
    {
        c.attack("spoofing", "GET", "/api/v1/documents", at, &[(name, value)], NoBody, Ok(200)).await;
    }
    let who = c
        .attack(
            "spoofing",
            "GET",
            "/api/v1/auth/validate",
            at,
            &[("x-user-id", &bob_user), ("x-tenant-id", &b_id)],
            NoBody,
            Ok(200),
        )
        .await;
    c.record(
        "spoofing",
        "GET /api/v1/auth/validate with X-User-ID / X-Tenant-ID of B: identity comes from the token".into(),
        "alice in tenant A",
        format!(
            "{} in tenant {}",
            if who.body["user"]["id"] == json!(alice.user.id.to_string()) { "alice" } else { "someone else" },
            if who.body["tenant"]["id"] == json!(a_id) { "A" } else { "other" }
        ),
    );
    c.attack("spoofing", "GET", &format!("/api/v1/documents?tenant_id={b_id}"), at, &[], NoBody, Ok(200)).await;
    c.attack("spoofing", "GET", &format!("/api/v1/documents?user_id={bob_user}"), at, &[], NoBody, Ok(200)).await;
    c.attack("spoofing", "GET", &format!("/api/v1/documents/{bob_doc_id}"), at, &[], NoBody, Error(404, "RES_404"))
        .await;
    c.attack("spoofing", "GET", &format!("/api/v1/users/{bob_user}"), at, &[], NoBody, Error(404, "RES_404")).await;
    c.attack(
        "spoofing",
        "PATCH",
        &format!("/api/v1/documents/{bob_doc_id}"),
        at,
        &[],
        Json(json!({"status": "failed"})),
        Error(404, "RES_404"),
    )
    .await;
    c.attack("spoofing", "DELETE", &format!("/api/v1/users/{bob_user}"), at, &[], NoBody, Error(404, "RES_404")).await;
    c.attack("spoofing", "GET", &format!("/api/v1/audit-logs?resource_id={bob_doc_id}"), at, &[], NoBody, Ok(200))
        .await;
    c.attack("spoofing", "GET", &format!("/api/v1/audit-logs?user_id={bob_user}"), at, &[], NoBody, Ok(200)).await;
    let mut with_tenant = document_body("x.pdf", None);
    with_tenant["tenant_id"] = json!(b_id);
    c.attack("spoofing", "POST", "/api/v1/documents", at, &[], Json(with_tenant), Error(400, "VAL_001")).await;
    let mut with_user = document_body("x.pdf", None);
    with_user["user_id"] = json!(bob_user);
    c.attack("spoofing", "POST", "/api/v1/documents", at, &[], Json(with_user), Error(400, "VAL_001")).await;
    // The batch route: the same refusals, for one document among good ones, and nothing written.
    for (field, value) in [("tenant_id", json!(b_id)), ("user_id", json!(bob_user))] {
        let mut spoofed = document_body("x.pdf", None);
        spoofed[field] = value;
        let batch = json!({"documents": [document_body("ok.pdf", None), spoofed]});
        c.attack("spoofing", "POST", "/api/v1/documents/batch", at, &[], Json(batch), Error(400, "VAL_001")).await;
    }
    c.attack(
        "spoofing",
        "POST",
        "/api/v1/documents/batch",
        at,
        &[],
        Json(json!({"documents": [document_body("ok.pdf", None)], "tenant_id": b_id})),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "spoofing",
        "POST",
        "/api/v1/users",
        at,
        &[],
        Json(json!({"email": "x@a.test", "role": "viewer", "tenant_id": b_id})),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "spoofing",
        "PATCH",
        &format!("/api/v1/users/{}", alice.user.id),
        at,
        &[],
        Json(json!({"tenant_id": b_id})),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "privilege",
        "POST",
        "/api/v1/users",
        Some(&viewer.token),
        &[],
        Json(json!({"email": "boss@a.test", "role": "admin"})),
        Error(403, "AUTH_009"),
    )
    .await;
    c.attack(
        "privilege",
        "PATCH",
        &format!("/api/v1/users/{}", member.user.id),
        Some(&member.token),
        &[],
        Json(json!({"role": "admin"})),
        Error(403, "AUTH_009"),
    )
    .await;
    c.attack(
        "privilege",
        "GET",
        "/api/v1/audit-logs",
        Some(&member.token),
        &[("x-role", "admin")],
        NoBody,
        Error(403, "AUTH_009"),
    )
    .await;
    c.attack(
        "privilege",
        "POST",
        "/api/v1/documents",
        Some(&viewer.token),
        &[("x-http-method-override", "GET")],
        Json(document_body("v.pdf", None)),
        Error(403, "AUTH_009"),
    )
    .await;
    // X-Forwarded-For from an untrusted peer is not believed: the audit row has the real peer.
    let created = c
        .attack(
            "spoofing",
            "POST",
            "/api/v1/documents",
            at,
            &[("x-forwarded-for", "6.6.6.6")],
            Json(document_body("xff.pdf", None)),
            Ok(201),
        )
        .await;
    let ip: Option<String> = {
        let owner = app.db.owner_pool().await;
        sqlx::query_scalar(
            "SELECT host(ip_address) FROM audit_logs WHERE resource_id = $1::uuid AND action = 'document.created'",
        )
        .bind(created.body["id"].as_str().unwrap_or_default())
        .fetch_optional(&owner)
        .await
        .unwrap()
        .flatten()
    };
    c.record(
        "spoofing",
        "audit ip_address of the POST above (X-Forwarded-For: 6.6.6.6 from an untrusted peer)".into(),
        "127.0.0.1",
        ip.unwrap_or_default(),
    );
    let rid = c
        .attack(
            "spoofing",
            "GET",
            "/api/v1/auth/validate",
            at,
            &[("x-request-id", "<script>alert(1)</script>")],
            NoBody,
            Ok(200),
        )
        .await;
    c.record(
        "spoofing",
        "X-Request-ID with markup is replaced, not echoed".into(),
        "replaced",
        if rid.request_id.as_deref() == Some("<script>alert(1)</script>") {
            "echoed".into()
        } else {
            "replaced".into()
        },
    );

    // --- Oversized and malformed input ---------------------------------------------------------
    let huge = format!("{{\"filename\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    c.attack(
        "oversized",
        "POST",
        "/api/v1/documents",
        at,
        &[],
        Raw("application/json", huge.into_bytes()),
        Error(413, "REQ_413"),
    )
    .await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_doc =
        format!("{{\"filename\":\"d.pdf\",\"s3_key\":\"k\",\"s3_bucket\":\"b\",\"metadata\":{{\"n\":{deep}}}}}");
    c.attack(
        "malformed",
        "POST",
        "/api/v1/documents",
        at,
        &[],
        Raw("application/json", deep_doc.into_bytes()),
        Error(400, "VAL_001"),
    )
    .await;
    let mut many = document_body("many.pdf", None);
    many["metadata"] = json!({"list": vec![0; 10_000]});
    c.attack("oversized", "POST", "/api/v1/documents", at, &[], Json(many), Ok(201)).await;
    c.attack(
        "oversized",
        "POST",
        "/api/v1/documents/search",
        at,
        &[],
        Json(json!({"embedding": vec![0.1; 10_000]})),
        Error(422, "VAL_003"),
    )
    .await;
    let mut long_name = document_body("x.pdf", None);
    long_name["filename"] = json!("n".repeat(100_000));
    c.attack("oversized", "POST", "/api/v1/documents", at, &[], Json(long_name), Error(422, "VAL_003")).await;
    let mut unicode = document_body("ünï😀\u{202e}cödé.pdf", None);
    unicode["metadata"] = json!({"note": "\u{202e}\u{feff}\u{1F600}"});
    c.attack("malformed", "POST", "/api/v1/documents", at, &[], Json(unicode), Ok(201)).await;
    for field in ["filename", "s3_key", "content_type"] {
        let mut nul = document_body("x.pdf", None);
        nul[field] = json!("a\u{0}b");
        c.attack("malformed", "POST", "/api/v1/documents", at, &[], Json(nul), Error(422, "VAL_003")).await;
    }
    c.attack(
        "malformed",
        "POST",
        "/api/v1/users",
        at,
        &[],
        Json(json!({"email": "a\u{0}@a.test", "role": "viewer"})),
        Error(422, "VAL_003"),
    )
    .await;
    c.attack(
        "malformed",
        "POST",
        "/api/v1/documents",
        at,
        &[],
        Raw(
            "application/json",
            b"{\"filename\":\"a\",\"filename\":\"b\",\"s3_key\":\"k\",\"s3_bucket\":\"b\"}".to_vec(),
        ),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "malformed",
        "POST",
        "/api/v1/documents",
        at,
        &[],
        Raw("application/json", vec![0xff, 0xfe, 0x00, 0x7b]),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "malformed",
        "POST",
        "/api/v1/documents",
        at,
        &[],
        Raw("application/json", b"null".to_vec()),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "malformed",
        "POST",
        "/api/v1/documents",
        at,
        &[],
        Raw("application/xml", b"<doc/>".to_vec()),
        Error(415, "REQ_415"),
    )
    .await;

    // --- Injection in every string parameter ----------------------------------------------------
    let injections = [
        "' OR 1=1 --",
        "'; DROP TABLE users; --",
        "\" }, {\"tenant_id\": \"x",
        "../../etc/passwd",
        "%00",
        "${jndi:ldap://x}",
    ];
    for (n, injection) in injections.iter().enumerate() {
        let mut doc = document_body(&format!("inj{n}.pdf"), None);
        doc["filename"] = json!(format!("{injection}.pdf"));
        doc["s3_key"] = json!(injection);
        doc["s3_bucket"] = json!(injection);
        doc["content_type"] = json!(injection);
        doc["metadata"] = json!({ *injection: injection });
        let stored = c.attack("injection", "POST", "/api/v1/documents", at, &[], Json(doc), Ok(201)).await;
        c.record(
            "injection",
            format!("document stored with {injection:?} in every string field, read back"),
            "stored verbatim",
            if stored.body["s3_key"] == json!(injection) && stored.body["filename"] == json!(format!("{injection}.pdf"))
            {
                "stored verbatim".into()
            } else {
                format!("stored as {}", stored.body)
            },
        );
        c.attack(
            "injection",
            "POST",
            "/api/v1/users",
            at,
            &[],
            Json(json!({"email": format!("{injection}@a.test"), "role": "viewer"})),
            OneOf(&[201, 422]),
        )
        .await;
        c.attack(
            "injection",
            "POST",
            "/api/v1/users",
            at,
            &[],
            Json(json!({"email": format!("inj{n}@a.test"), "role": injection})),
            Error(422, "VAL_003"),
        )
        .await;
        c.attack("injection", "POST", "/api/v1/users", at, &[], Json(json!({"email": format!("inj{n}@a.test"), "role": "viewer", "full_name": injection, "external_idp_id": injection})), Ok(201)).await;
        let q = urlencode(injection);
        // The audit filters are closed sets: an injection is not a known name.
        for path in [format!("/api/v1/audit-logs?action={q}"), format!("/api/v1/audit-logs?resource_type={q}")] {
            c.attack("injection", "GET", &path, at, &[], NoBody, Error(422, "VAL_003")).await;
        }
        for path in [
            format!("/api/v1/documents/{q}"),
            format!("/api/v1/users/{q}"),
            format!("/api/v1/documents?status={q}"),
            format!("/api/v1/documents?user_id={q}"),
            format!("/api/v1/documents?deleted={q}"),
            format!("/api/v1/documents?cursor={q}"),
            format!("/api/v1/users?deleted={q}"),
            format!("/api/v1/audit-logs?resource_id={q}"),
            format!("/api/v1/audit-logs?since={q}"),
            format!("/api/v1/documents/{}?include={q}", alice_doc.body["id"].as_str().unwrap()),
        ] {
            c.attack("injection", "GET", &path, at, &[], NoBody, OneOf(&[400, 404, 422])).await;
        }
        c.attack(
            "injection",
            "PATCH",
            &format!("/api/v1/documents/{}", alice_doc.body["id"].as_str().unwrap()),
            at,
            &[],
            Json(json!({"metadata": {"note": injection}})),
            Ok(200),
        )
        .await;
        c.attack(
            "injection",
            "POST",
            "/api/v1/platform/tenants",
            platform_bearer,
            &[],
            Json(json!({"name": injection, "status": injection})),
            Error(422, "VAL_003"),
        )
        .await;
    }
    c.attack("injection", "GET", "/api/v1/documents/..%2F..%2Fusers", at, &[], NoBody, OneOf(&[400, 404, 422])).await;
    c.attack(
        "injection",
        "GET",
        "/api/v1/documents/%2e%2e/%2e%2e/platform/tenants",
        at,
        &[],
        NoBody,
        OneOf(&[400, 401, 404, 422]),
    )
    .await;
    c.attack(
        "injection",
        "GET",
        &format!("/api/v1/documents/{}", "a".repeat(10_000)),
        at,
        &[],
        NoBody,
        OneOf(&[414, 422, 431]),
    )
    .await;
    c.attack(
        "injection",
        "GET",
        &format!("/api/v1/audit-logs?action={}", "a".repeat(5_000)),
        at,
        &[],
        NoBody,
        Error(422, "VAL_003"),
    )
    .await;

    // --- Pagination and filter abuse ------------------------------------------------------------
    for limit in ["-1", "1000000", "0", "18446744073709551616", "1e3", "50;DROP"] {
        c.attack(
            "pagination",
            "GET",
            &format!("/api/v1/documents?limit={limit}"),
            at,
            &[],
            NoBody,
            Error(422, "VAL_003"),
        )
        .await;
    }
    let micros = chrono::DateTime::parse_from_rfc3339(&bob_doc_created).unwrap().timestamp_micros();
    let bob_cursor = format!("{micros}.{}", bob_doc_id.replace('-', ""));
    let page = c
        .attack("pagination", "GET", &format!("/api/v1/documents?cursor={bob_cursor}"), at, &[], NoBody, Ok(200))
        .await;
    let own_only =
        page.body["items"].as_array().is_some_and(|items| items.iter().all(|i| i["tenant_id"] == json!(a_id)));
    c.record(
        "pagination",
        "the page after tenant B's document cursor holds tenant A's rows only".into(),
        "own rows only",
        if own_only { "own rows only".into() } else { page.body.to_string() },
    );
    let future = format!("253402300799000000.{}", uuid::Uuid::new_v4().simple());
    c.attack("pagination", "GET", &format!("/api/v1/documents?cursor={future}"), at, &[], NoBody, Ok(200)).await;
    c.attack("pagination", "GET", &format!("/api/v1/audit-logs?cursor={future}"), at, &[], NoBody, Ok(200)).await;
    c.attack(
        "pagination",
        "GET",
        &format!("/api/v1/documents?cursor={}.{}", i64::MAX, uuid::Uuid::new_v4().simple()),
        at,
        &[],
        NoBody,
        Error(422, "VAL_003"),
    )
    .await;
    c.attack(
        "pagination",
        "GET",
        &format!("/api/v1/documents?cursor=-{}.{}", i64::MAX, uuid::Uuid::new_v4().simple()),
        at,
        &[],
        NoBody,
        Error(422, "VAL_003"),
    )
    .await;
    let inverted = c
        .attack(
            "filters",
            "GET",
            "/api/v1/audit-logs?since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z",
            at,
            &[],
            NoBody,
            Ok(200),
        )
        .await;
    c.record(
        "filters",
        "since after until returns an empty page".into(),
        "0 items",
        format!("{} items", inverted.body["items"].as_array().map_or(0, Vec::len)),
    );
    c.attack(
        "filters",
        "GET",
        "/api/v1/audit-logs?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z",
        at,
        &[],
        NoBody,
        Ok(200),
    )
    .await;
    c.attack(
        "filters",
        "GET",
        "/api/v1/audit-logs?since=+275760-09-13T00:00:00Z",
        at,
        &[],
        NoBody,
        Error(422, "VAL_003"),
    )
    .await;
    c.attack("filters", "GET", "/api/v1/documents?limit=1&limit=200", at, &[], NoBody, OneOf(&[200, 422])).await;
    c.attack(
        "filters",
        "POST",
        "/api/v1/documents/search",
        at,
        &[],
        Json(json!({"embedding": vec![0.1; 1024], "limit": 100, "threshold": -1.0})),
        Ok(200),
    )
    .await;
    c.attack(
        "filters",
        "POST",
        "/api/v1/documents/search",
        at,
        &[],
        Json(json!({"embedding": vec![0.1; 1024], "limit": -1})),
        Error(400, "VAL_001"),
    )
    .await;
    c.attack(
        "filters",
        "POST",
        "/api/v1/documents/search",
        at,
        &[],
        Json(json!({"embedding": vec![f32::MAX; 1024]})),
        OneOf(&[200, 422]),
    )
    .await;
    c.attack(
        "filters",
        "POST",
        "/api/v1/documents/search",
        at,
        &[],
        Raw("application/json", format!("{{\"embedding\":[{}]}}", vec!["NaN"; 1024].join(",")).into_bytes()),
        Error(400, "VAL_001"),
    )
    .await;

    // --- A server configured for production: provisioning by domain, rate and connection limits --
    hardening::attempts(&mut c.entries).await;

    // --- Ground truth: tenant B untouched -------------------------------------------------------
    let b_after = app.audit_actions(b).await;
    let b_doc = app.call("GET", &format!("/api/v1/documents/{bob_doc_id}"), Some(&bob.token), None).await;
    let b_docs = app.call("GET", "/api/v1/documents?deleted=include", Some(&bob.token), None).await;
    let b_users = app.call("GET", "/api/v1/users?deleted=include", Some(&bob.token), None).await;
    let observed = format!(
        "documents: {}, users: {}, document unchanged: {}, audit log of B unchanged by the attempts: {}",
        b_docs.body["items"].as_array().map_or(0, Vec::len),
        b_users.body["items"].as_array().map_or(0, Vec::len),
        b_doc.body["metadata"] == json!({"diagnosis": "tenant-b-phi"}) && b_doc.body["status"] == "processing",
        b_after.starts_with(&b_before)
            && b_after[b_before.len()..].iter().all(|a| a.ends_with(".read") || a.ends_with(".list")),
    );
    c.record(
        "ground truth",
        "tenant B read by its own admin after every attempt".into(),
        "documents: 1, users: 1, document unchanged: true, audit log of B unchanged by the attempts: true",
        observed,
    );

    write_evidence(&c.entries);
    let failed: Vec<String> = c
        .entries
        .iter()
        .filter(|e| !e.passed)
        .map(|e| {
            format!(
                "{} {}: expected {}, observed {}",
                e.id,
                e.request.chars().take(200).collect::<String>(),
                e.expected,
                e.observed
            )
        })
        .collect();
    assert!(failed.is_empty(), "attacks with an unexpected outcome:\n{}", failed.join("\n"));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

fn b64(text: &str) -> String {
    use std::fmt::Write;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let _ = write!(out, "{}", ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Writes the catalogue to `$CAREVAULT_EVIDENCE_DIR/api_attacks.json` when the variable is set.
fn write_evidence(entries: &[Entry]) {
    let Some(dir) = std::env::var_os("CAREVAULT_EVIDENCE_DIR") else { return };
    let json: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "category": e.category, "request": e.request, "expected": e.expected,
                "observed": e.observed, "passed": e.passed,
            })
        })
        .collect();
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("api_attacks.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
}
