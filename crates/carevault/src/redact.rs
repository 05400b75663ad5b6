//! Database URLs with their passwords hidden, for logs and error messages.

/// The URL with its password (in the user info or a `password=` parameter) replaced by `***`,
/// for logs and error messages.
pub fn redact(url: &str) -> String {
    let url = redact_password_parameter(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    // The user info ends at the last '@' before the path; a password may itself contain '@'.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url;
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url,
    }
}

/// libpq also accepts the password as a query parameter (`?password=...`).
fn redact_password_parameter(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => parameter.to_string(),
        })
        .collect();
    format!("{base}?{}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact("postgresql://u:p@ss@db/x?sslmode=require"), "postgresql://u:***@db/x?sslmode=require");
        assert_eq!(redact("postgres://u:secret@db"), "postgres://u:***@db");
        assert_eq!(
            redact("postgres://u@db/x?sslmode=require&password=secret"),
            "postgres://u@db/x?sslmode=require&password=***"
        );
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        for url in ["postgres://postgres@localhost/carevault?host=/tmp/x", "postgres://db/x", "not a url"] {
            assert_eq!(redact(url), url);
        }
    }
}
