//! The documents name audit actions (`document.searched`, `access.denied`, ...): every name they
//! give must be one `AuditAction` writes, so that a reader filtering `GET /audit-logs?action=` by
//! a documented name finds rows. The catalogue is `AuditAction::ALL`; no second list.

use std::collections::BTreeSet;
use std::path::PathBuf;

use carevault_db::AuditAction;

/// The Markdown files of the repository: `README.md` and `docs/*.md`.
fn documents() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            paths.push(path);
        }
    }
    paths.into_iter().map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The code spans of `text` shaped like an action of the catalogue: `prefix.name`, where
/// `prefix` is the part before the dot of some wire name (`document`, `user`, ...). Spans are
/// read line by line, fence lines skipped, so that the comments of code blocks count too. File
/// names such as `audit.rs` are not actions.
fn action_like_spans(text: &str, prefixes: &BTreeSet<&str>) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("```"))
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .filter_map(|span| span.split_once('.').map(|(prefix, name)| (span, prefix, name)))
        .filter(|(_, prefix, name)| {
            prefixes.contains(prefix)
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && !["rs", "md", "sql", "toml", "json"].contains(name)
        })
        .map(|(span, _, _)| span.to_string())
        .collect()
}

#[test]
fn every_audit_action_the_documents_name_is_in_the_catalogue() {
    let prefixes: BTreeSet<&str> =
        AuditAction::ALL.iter().filter_map(|a| a.as_str().split_once('.')).map(|(p, _)| p).collect();
    let mut named = 0;
    let mut unknown = Vec::new();
    for (path, text) in documents() {
        for span in action_like_spans(&text, &prefixes) {
            named += 1;
            if AuditAction::parse(&span).is_err() {
                unknown.push(format!("{path}: `{span}`"));
            }
        }
    }
    assert!(unknown.is_empty(), "documented audit actions that AuditAction does not have:\n{}", unknown.join("\n"));
    // The documents do name actions; a scan that finds none is broken.
    assert!(named > 0);
}

#[test]
fn the_scan_finds_actions_and_skips_file_names() {
    let prefixes: BTreeSet<&str> = ["document", "audit"].into();
    let text = "audited `document.searched`, see `audit.rs` and `document.Read`,\n\
                ```rust\nlist(); // audited `document.bogus`\n```\nand `note.created`";
    assert_eq!(action_like_spans(text, &prefixes), ["document.searched", "document.bogus"]);
}
