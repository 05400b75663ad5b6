//! Database URLs for logs and error messages: who and where, never a secret.

/// The user and the host (with its port) of a PostgreSQL URL, as `user@host:port`, for logs and
/// error messages. Nothing else of the URL is shown: the password, wherever it was written (the
/// user info, a `password=` parameter), the database name and the other parameters stay out.
///
/// The URL is parsed, not cut at the first `/` or `?`: a password may hold those characters
/// unencoded (`postgres://carevault:Sup3r/Secret@db/carevault`), and then the URL does not parse
/// at all. A URL that does not parse is never echoed, since any part of it may be the password.
pub fn redact(url: &str) -> String {
    const UNPARSABLE: &str = "(a URL that does not parse as postgres://user@host:port/database; not shown)";
    let Ok(parsed) = url::Url::parse(url) else {
        return UNPARSABLE.to_string();
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return UNPARSABLE.to_string();
    }
    // An '@' the parser did not take as the end of the user info ends a password that held a '/',
    // '?' or '#': `postgres://cv:8080/Secret@db/x` parses with `cv` as the host and `8080` as
    // its port, both of them parts of the credentials.
    if parsed.username().is_empty() && url.contains('@') {
        return UNPARSABLE.to_string();
    }
    let user = match parsed.username() {
        "" => String::new(),
        user => format!("{user}@"),
    };
    // No host: libpq's default socket (a `host=` parameter, when present, is not shown either).
    let host = parsed.host_str().filter(|h| !h.is_empty()).unwrap_or("(default socket)");
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{user}{host}{port}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn only_the_user_and_the_host_are_shown() {
        assert_eq!(redact("postgres://u:secret@db:5432/x"), "u@db:5432");
        assert_eq!(redact("postgresql://u:p%40ss@db/x?sslmode=require"), "u@db");
        assert_eq!(redact("postgres://u@db/x?sslmode=require&password=secret"), "u@db");
        assert_eq!(redact("postgres://db/x"), "db");
        // The embedded cluster's form: the socket directory is a parameter, and not shown.
        assert_eq!(redact("postgres://postgres@localhost/carevault?host=/tmp/x&port=5432"), "postgres@localhost");
    }

    #[test]
    fn a_url_that_does_not_parse_is_never_echoed() {
        for url in [
            "postgres://carevault:Sup3r/Secret@db.internal:5432/carevault",
            "postgres://carevault:Sup3r?Secret@db.internal:5432/carevault",
            "postgres://cv:8080/Sup3rSecret@db/x",
            "not a url Sup3rSecret",
            "mysql://u:Sup3rSecret@db/x",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("Sup3r") && !shown.contains("Secret"), "{url} -> {shown}");
        }
        // The part of a password before its '/' is not shown as a host and port either.
        assert!(!redact("postgres://cv:8080/Sup3rSecret@db/x").contains("8080"));
    }
}
