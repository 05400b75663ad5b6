//! The OpenAPI document states the validation rules exactly: each pattern accepts what the
//! domain parser accepts and nothing else, and each numeric bound is the parser's own. A pattern
//! that is too loose makes clients send requests that fail; one that is too strict makes the
//! schema fuzzer (and clients) believe valid requests are invalid. No database is needed.

use std::sync::LazyLock;

use carevault_api::schema::{domain_pattern, email_pattern, text_pattern};
use carevault_db::{
    BoundedText, Email, EmailDomain, Embedding, METADATA_MAX_BYTES, METADATA_MAX_DEPTH, METADATA_MAX_NUMBER, Metadata,
};
use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;

/// Characters on both sides of every class boundary the patterns draw: whitespace that is and is
/// not control, control that is not whitespace, Unicode spaces `trim` knows and look-alikes it
/// does not (U+200B, U+FEFF), and the email's separators.
const EDGES: &[char] = &[
    'a',
    'Z',
    'é',
    '@',
    '.',
    ' ',
    '\t',
    '\n',
    '\r',
    '\u{b}',
    '\u{c}',
    '\u{0}',
    '\u{1c}',
    '\u{1f}',
    '\u{7f}',
    '\u{85}',
    '\u{9f}',
    '\u{a0}',
    '\u{1680}',
    '\u{2000}',
    '\u{200a}',
    '\u{200b}',
    '\u{2028}',
    '\u{2029}',
    '\u{202f}',
    '\u{205f}',
    '\u{3000}',
    '\u{feff}',
    '\u{1f600}',
];

fn edge_strings() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(EDGES), 0..10).prop_map(|chars| chars.into_iter().collect())
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the pattern compiles as a Rust regex")
}

static TEXT: LazyLock<Regex> = LazyLock::new(|| compile(&text_pattern()));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| compile(&email_pattern()));
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| compile(&domain_pattern()));

/// Domain-like strings: labels of letters, digits, hyphens and edge characters, joined by dots.
fn domain_strings() -> impl Strategy<Value = String> {
    let label =
        prop::collection::vec(prop::sample::select(vec!['a', 'Z', '0', '-', '.', ' ', '\u{a0}', 'ä', '_']), 0..5);
    prop::collection::vec(label.prop_map(|c| c.into_iter().collect::<String>()), 1..4).prop_map(|l| l.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn text_pattern_is_bounded_texts_rule(text in edge_strings()) {
        prop_assert_eq!(TEXT.is_match(&text), BoundedText::parse("field", &text, 100).is_ok(), "{:?}", text);
    }

    #[test]
    fn domain_pattern_is_email_domains_rule(domain in domain_strings()) {
        prop_assert_eq!(DOMAIN.is_match(&domain), EmailDomain::parse(&domain).is_ok(), "{:?}", domain);
    }

    #[test]
    fn email_pattern_is_emails_rule(local in edge_strings(), domain in edge_strings()) {
        for email in [format!("{local}@{domain}"), format!("{local}{domain}"), format!("{local}@x.{domain}")] {
            prop_assert_eq!(EMAIL.is_match(&email), Email::parse(&email).is_ok(), "{:?}", email);
        }
    }
}

#[test]
fn the_patterns_agree_on_hand_picked_cases() {
    for (value, valid) in [
        ("Acme", true),
        ("  Acme \t\n", true),
        ("a b", true),
        ("", false),
        (" \t ", false),
        ("a\tb", false),
        ("\u{1c}a", false),
        ("a\u{85}", true),
        ("\u{feff}", true),
    ] {
        assert_eq!(TEXT.is_match(value), valid, "{value:?}");
        assert_eq!(BoundedText::parse("field", value, 100).is_ok(), valid, "{value:?}");
    }
    for (value, valid) in [
        ("ann@x.org", true),
        (" Ann@X.org\n", true),
        ("a@b.c", true),
        ("a@b..c", true),
        ("a@.b", false),
        ("a@b.", false),
        ("a@b", false),
        ("@b.c", false),
        ("a@b@c.d", false),
        ("a b@c.d", false),
        ("a\u{a0}b@c.d", false),
    ] {
        assert_eq!(EMAIL.is_match(value), valid, "{value:?}");
        assert_eq!(Email::parse(value).is_ok(), valid, "{value:?}");
    }
    let long_label = format!("{}.example", "a".repeat(64));
    for (value, valid) in [
        ("clinic.example", true),
        (" Clinic.EXAMPLE\t", true),
        ("xn--bcher-kva.example", true),
        ("a-b.c", true),
        ("example", false),
        ("-a.example", false),
        ("a-.example", false),
        ("a..example", false),
        ("a_b.example", false),
        (long_label.as_str(), false),
    ] {
        assert_eq!(DOMAIN.is_match(value), valid, "{value:?}");
        assert_eq!(EmailDomain::parse(value).is_ok(), valid, "{value:?}");
    }
}

#[test]
fn the_documents_numeric_bounds_are_the_parsers() {
    let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(true)).unwrap();
    let schemas = &document["components"]["schemas"];
    let embedding = &schemas["EmbeddingValues"];
    assert_eq!(embedding["items"]["maximum"].as_f64(), Some(Embedding::MAX_MAGNITUDE));
    assert_eq!(embedding["items"]["minimum"].as_f64(), Some(-Embedding::MAX_MAGNITUDE));
    assert_eq!(embedding["minItems"], 1024);
    assert_eq!(embedding["maxItems"], 1024);
    let least = &embedding["contains"]["anyOf"];
    assert_eq!(least[0]["minimum"].as_f64(), Some(Embedding::MIN_LARGEST_MAGNITUDE));
    assert_eq!(least[1]["maximum"].as_f64(), Some(-Embedding::MIN_LARGEST_MAGNITUDE));
}

/// Metadata is a free-form object (what client generators turn into a plain map), and its
/// description states every rule of `Metadata::parse` with the parser's own limits: they are
/// stated nowhere else in the document.
#[test]
fn metadatas_rules_are_in_its_description() {
    let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(true)).unwrap();
    let metadata = &document["components"]["schemas"]["MetadataObject"];
    assert_eq!(metadata["type"], "object");
    assert_eq!(metadata["additionalProperties"], true);
    let description = metadata["description"].as_str().unwrap();
    for rule in [
        format!("{} KiB", METADATA_MAX_BYTES / 1024),
        format!("{METADATA_MAX_DEPTH} levels"),
        format!("below {METADATA_MAX_NUMBER:e} in magnitude"),
        "no NUL character (U+0000) in any key or string".to_owned(),
        "422 VAL_003".to_owned(),
    ] {
        assert!(description.contains(&rule), "{rule:?} is not in {description:?}");
    }
    assert_eq!(format!("{METADATA_MAX_NUMBER:e}"), "1e300");
    // Each rule is the parser's: the largest allowed value passes, one step past it does not.
    let nested = |levels: usize| (1..levels).fold(serde_json::json!({}), |inner, _| serde_json::json!({ "n": inner }));
    assert!(Metadata::parse(nested(METADATA_MAX_DEPTH)).is_ok());
    assert!(Metadata::parse(nested(METADATA_MAX_DEPTH + 1)).is_err());
    assert!(Metadata::parse(serde_json::json!({ "x": 9.99e299, "k": "text" })).is_ok());
    assert!(Metadata::parse(serde_json::json!({ "x": [METADATA_MAX_NUMBER] })).is_err());
    assert!(Metadata::parse(serde_json::json!({ "a": { "b\u{0}": 1 } })).is_err());
    assert!(Metadata::parse(serde_json::json!({ "a": ["\u{0}"] })).is_err());
    let filler = |len: usize| serde_json::json!({ "x": "y".repeat(len) });
    let overhead = filler(0).to_string().len();
    assert!(Metadata::parse(filler(METADATA_MAX_BYTES - overhead)).is_ok());
    assert!(Metadata::parse(filler(METADATA_MAX_BYTES - overhead + 1)).is_err());
}

/// The `$ref`s of a schema, as component names.
fn references(schema: &Value, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("$ref", Some(target)) => {
                        found.push(target.trim_start_matches("#/components/schemas/").to_owned());
                    }
                    _ => references(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

/// The component schemas that refer to themselves, directly or through others.
fn recursive_schemas(document: &Value) -> Vec<String> {
    let schemas = document["components"]["schemas"].as_object().expect("the document has component schemas");
    let mut recursive = Vec::new();
    for name in schemas.keys() {
        let mut seen = std::collections::BTreeSet::new();
        let mut next = Vec::new();
        references(&schemas[name], &mut next);
        while let Some(target) = next.pop() {
            if target == *name {
                recursive.push(name.clone());
                break;
            }
            if seen.insert(target.clone()) {
                references(&schemas[&target], &mut next);
            }
        }
    }
    recursive
}

/// No schema of the document refers to itself, directly or indirectly: openapi-python-client
/// drops such a schema with every operation and model that uses it, and openapi-generator wraps
/// its values in classes of its own. A rule that needs recursion goes into a description instead
/// (metadata's, above).
#[test]
fn no_schema_refers_to_itself() {
    for with_platform in [true, false] {
        let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(with_platform)).unwrap();
        assert_eq!(recursive_schemas(&document), Vec::<String>::new());
    }
    // Not vacuous: the recursive metadata schema of before is found, and so is a longer cycle.
    let mut before: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(false)).unwrap();
    let schemas = before["components"]["schemas"].as_object_mut().unwrap();
    schemas["MetadataObject"]["additionalProperties"] =
        serde_json::json!({"$ref": "#/components/schemas/MetadataValue"});
    schemas.insert(
        "MetadataValue".into(),
        serde_json::json!({"anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"$ref": "#/components/schemas/MetadataValue"}},
            {"$ref": "#/components/schemas/MetadataObject"},
        ]}),
    );
    assert_eq!(recursive_schemas(&before), ["MetadataObject", "MetadataValue"]);
}

#[test]
fn the_platform_paths_are_documented_only_when_served() {
    let paths = |with_platform| {
        let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(with_platform)).unwrap();
        document["paths"].as_object().unwrap().keys().cloned().collect::<Vec<_>>()
    };
    assert!(paths(true).iter().any(|p| p.starts_with("/api/v1/platform/")));
    assert!(!paths(false).iter().any(|p| p.starts_with("/api/v1/platform/")));
    assert_eq!(paths(true).len() - paths(false).len(), 4);
    // Nothing else of the platform API is left behind.
    let without = carevault_api::openapi::openapi_json(false);
    for leftover in [
        "PLATFORM_API_TOKEN",
        "CreateTenantRequest",
        "TenantStatusName",
        "JitEmailDomainsRequest",
        "EmailDomainName",
        "\"platform\"",
    ] {
        assert!(!without.contains(leftover), "{leftover} is still documented");
    }
    assert!(carevault_api::openapi::openapi_json(true).contains("CreateTenantRequest"));
}

/// Every operation has an id of its own, a camelCase verb and noun (`listDocuments`,
/// `createUser`): client generators name their methods after it, and a repeated id makes them
/// drop or rename operations. The ids are part of the API: renaming one breaks generated clients.
#[test]
fn every_operation_has_a_unique_stable_camel_case_id() {
    let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(true)).unwrap();
    let camel_case = Regex::new("^[a-z]+(?:[A-Z][a-z]+)+$").unwrap();
    let mut ids = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(camel_case.is_match(id), "{method} {path}: {id}");
            ids.push(id.to_owned());
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat: {ids:?}");
    assert_eq!(count, 25);
    for expected in ["listDocuments", "createUser", "searchDocuments", "updateDocument", "listAuditLogs"] {
        assert!(ids.iter().any(|id| id == expected), "{expected}");
    }
}

/// Every response says what it means: OpenAPI requires a `description` on each response object,
/// and validators and generators refuse a document without one.
#[test]
fn every_response_has_a_description() {
    let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(true)).unwrap();
    let mut responses = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(!description.trim().is_empty(), "{method} {path} {status} has no description");
                responses += 1;
            }
        }
    }
    assert!(responses >= 44, "{responses}");
}

/// The document is valid OpenAPI 3.1: it is checked against the OpenAPI Initiative's own JSON
/// Schema for 3.1 documents (`tests/fixtures/openapi-3.1-schema.json`, `$id`
/// `https://spec.openapis.org/oas/3.1/schema/2022-10-07`, kept in the repository so that the
/// suite needs no network), with the platform paths and without.
#[test]
fn the_document_is_valid_openapi_3_1() {
    let schema: Value = serde_json::from_str(include_str!("fixtures/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the OpenAPI 3.1 schema compiles");
    for with_platform in [true, false] {
        let document: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(with_platform)).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&document).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{} errors, e.g.: {:#?}", errors.len(), &errors[..errors.len().min(10)]);
    }
    // The validator is not vacuous: a response without its description is refused.
    let mut broken: Value = serde_json::from_str(&carevault_api::openapi::openapi_json(false)).unwrap();
    let responses = broken["paths"]["/api/v1/documents"]["get"]["responses"]["200"].as_object_mut().unwrap();
    responses.remove("description");
    assert!(!validator.is_valid(&broken), "a response without a description must not validate");
}
