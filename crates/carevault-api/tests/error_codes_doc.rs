//! `docs/ERROR_CODES.md` lists exactly the codes of [`ErrorCode::ALL`], each with the status and
//! default message the code gives it.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use carevault_api::ErrorCode;

/// `code → (status, default message)` from the document's table rows `| \`CODE\` | status | message | … |`.
fn documented() -> BTreeMap<String, (u16, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/ERROR_CODES.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut codes = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let code = cells[0].trim_matches('`').to_string();
        let status: u16 = cells[1].parse().unwrap_or_else(|_| panic!("status of {code}: {:?}", cells[1]));
        let previous = codes.insert(code.clone(), (status, cells[2].to_string()));
        assert!(previous.is_none(), "{code} is listed twice");
    }
    codes
}

#[test]
fn error_codes_doc_matches_the_code() {
    let documented = documented();
    let actual: BTreeMap<String, (u16, String)> = ErrorCode::ALL
        .iter()
        .map(|code| (code.as_str().to_string(), (code.status().as_u16(), code.default_message().to_string())))
        .collect();
    for (code, entry) in &actual {
        assert_eq!(documented.get(code), Some(entry), "{code}: docs/ERROR_CODES.md disagrees with error.rs");
    }
    for code in documented.keys() {
        assert!(actual.contains_key(code), "{code} is documented but not in ErrorCode::ALL");
    }
}

/// An exhaustive match (no wildcard): adding a variant to `ErrorCode` breaks this build until it
/// is listed here, and then `error_code_all_lists_every_variant_once` fails until it is in `ALL`
/// (and `error_codes_doc_matches_the_code` until it is documented).
fn variant_count_guard(code: ErrorCode) -> usize {
    use ErrorCode::*;
    match code {
        Auth001 | Auth003 | Auth004 | Auth005 | Auth007 | Auth008 | Auth009 | Auth010 | Plat001 | Val001 | Val002
        | Val003 | Req404 | Req405 | Req413 | Req415 | Req429 | Res404 | Res409 | Res412 | Sys001 | Sys003 | Sys004
        | Sys005 => 24,
    }
}

#[test]
fn error_code_all_lists_every_variant_once() {
    let mut seen = std::collections::BTreeSet::new();
    for code in ErrorCode::ALL {
        // The wire text is `as_str()`.
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        assert!(seen.insert(code.as_str()), "{} twice in ALL", code.as_str());
    }
    assert_eq!(seen.len(), variant_count_guard(ErrorCode::Auth001), "ErrorCode::ALL misses a variant");
}
