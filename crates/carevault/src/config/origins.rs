//! Whom the HTTP layer believes: the browser origins allowed by CORS (`ALLOWED_ORIGINS`) and the
//! proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).

use std::net::IpAddr;

use carevault_api::Environment;

use super::vars::Vars;

/// `ALLOWED_ORIGINS`, comma-separated; required in production, where `*` is refused.
pub(super) fn origins_with(vars: &mut Vars<'_>, environment: Environment) -> Vec<String> {
    let origins: Vec<String> = vars
        .get("ALLOWED_ORIGINS")
        .map(|text| text.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    for origin in &origins {
        if origin != "*" && !is_origin(origin) {
            vars.problem(format!(
                "ALLOWED_ORIGINS: {origin:?} is not an origin: write scheme://host[:port] with no path or trailing \
                 slash, e.g. https://app.example.com"
            ));
        }
    }
    if environment == Environment::Production {
        if origins.is_empty() {
            vars.problem(
                "ALLOWED_ORIGINS is required in production: set it to the comma-separated origins of your web \
                 front-ends, e.g. https://app.example.com",
            );
        } else if origins.iter().any(|o| o == "*") {
            vars.problem(
                "ALLOWED_ORIGINS must not contain `*` in production: list your front-ends' origins instead, e.g. \
                 https://app.example.com",
            );
        }
    }
    origins
}

/// `scheme://host[:port]`: what a browser sends in `Origin`, compared byte for byte.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.parse::<axum::http::uri::Authority>().is_ok()
}

/// `TRUSTED_PROXIES`, comma-separated CIDRs or addresses; none when unset.
pub(super) fn proxies_with(vars: &mut Vars<'_>) -> Vec<ipnet::IpNet> {
    let Some(text) = vars.get("TRUSTED_PROXIES") else { return Vec::new() };
    let mut proxies = Vec::new();
    for item in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // A bare address means that one host.
        match item.parse::<ipnet::IpNet>().or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from)) {
            Ok(net) => proxies.push(net),
            Err(_) => vars.problem(format!(
                "TRUSTED_PROXIES: {item:?} is not an IP address or CIDR (e.g. 10.0.0.0/8 or 192.168.1.7)"
            )),
        }
    }
    proxies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{mentions, problems, production_with, serve};

    #[test]
    fn production_refuses_missing_or_wildcard_origins() {
        let found = problems(&production_with(&[("ALLOWED_ORIGINS", "")]));
        assert!(mentions(&found, &["ALLOWED_ORIGINS", "required in production"]), "{found:?}");
        let found = problems(&production_with(&[("ALLOWED_ORIGINS", "https://app.example.com,*")]));
        assert!(mentions(&found, &["ALLOWED_ORIGINS", "`*`", "production"]), "{found:?}");
        // Outside production a wildcard is allowed.
        let config = serve(&[("ALLOWED_ORIGINS", "*")], None).expect("development allows *");
        assert_eq!(config.api.allowed_origins, ["*"]);
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in ["https://app.example.com", "http://localhost:3000", "https://[::1]:8443"] {
            assert!(is_origin(good), "{good}");
        }
        for bad in ["https://app.example.com/", "app.example.com", "ftp://x.example", "https://", "https://u@h"] {
            assert!(!is_origin(bad), "{bad}");
        }
        let found = problems(&[("ALLOWED_ORIGINS", "https://ok.example.com, https://app.example.com/")]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(mentions(&found, &["ALLOWED_ORIGINS", "\"https://app.example.com/\"", "trailing"]), "{found:?}");
    }

    #[test]
    fn proxies_are_networks_or_single_addresses() {
        let config = serve(&[("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7, ::1,")], None).expect("valid");
        let proxies: Vec<String> = config.api.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
        let found = problems(&[("TRUSTED_PROXIES", "10.0.0.0/8, nope, 10.0.0.0/33")]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(mentions(&found, &["TRUSTED_PROXIES", "\"nope\""]), "{found:?}");
    }
}
