//! The email domains whose users a tenant lets sign up just in time (`JIT_PROVISIONING=domains`).

use serde::Serialize;

use crate::{Email, ValidationError};

/// A DNS domain name as an email address ends with: at most 253 characters as sent, trimmed and
/// lower-cased, two or more dot-separated labels of 1 to 63 letters, digits or hyphens, no label
/// starting or ending with a hyphen (RFC 1035 §2.3.1, RFC 1123 §2.1). An internationalised name
/// is written in its ASCII form (`xn--…`, RFC 5890), as mail systems exchange it.
///
/// A domain matches an email address only exactly: `clinic.example` admits `ann@clinic.example`,
/// neither `ann@lab.clinic.example` nor `ann@clinic.example.org` (a subdomain may be run by
/// someone else).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailDomain(String);

impl EmailDomain {
    /// The most characters of a domain name (RFC 1035 §3.1: 255 octets on the wire).
    pub const MAX_CHARS: usize = 253;
    /// The most domains one tenant may list (also a CHECK of `tenants.jit_email_domains`).
    pub const MAX_PER_TENANT: usize = 50;

    /// Validates and lower-cases a domain.
    pub fn parse(text: &str) -> Result<EmailDomain, ValidationError> {
        let domain = text.trim().to_ascii_lowercase();
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let labels: Vec<&str> = domain.split('.').collect();
        // Counted as sent, before trimming, so that the rule is a plain maxLength in OpenAPI.
        if text.chars().count() > Self::MAX_CHARS || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) {
            return Err(ValidationError::new(
                "domains",
                "each must be a domain name such as clinic.example (letters, digits and hyphens; internationalised \
                 names in their xn-- form)",
            ));
        }
        Ok(EmailDomain(domain))
    }

    /// A tenant's whole list: each domain valid, at most [`Self::MAX_PER_TENANT`], sorted and
    /// without repeats.
    pub fn parse_list<S: AsRef<str>>(texts: &[S]) -> Result<Vec<EmailDomain>, ValidationError> {
        if texts.len() > Self::MAX_PER_TENANT {
            return Err(ValidationError::new("domains", "at most 50 domains"));
        }
        let mut domains = texts.iter().map(|t| EmailDomain::parse(t.as_ref())).collect::<Result<Vec<_>, _>>()?;
        domains.sort();
        domains.dedup();
        Ok(domains)
    }

    /// Whether `email` is an address of this domain, exactly.
    pub fn admits(&self, email: &Email) -> bool {
        email.as_str().rsplit_once('@').is_some_and(|(_, domain)| domain == self.0)
    }

    /// The domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lower_cased_and_checked_label_by_label() {
        assert_eq!(EmailDomain::parse(" Clinic.Example ").map(|d| d.0), Ok("clinic.example".to_owned()));
        assert!(EmailDomain::parse("xn--bcher-kva.example").is_ok());
        for bad in ["", "example", "-a.example", "a-.example", "a..example", "a b.example", "ä.example", ".example"] {
            assert!(EmailDomain::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(EmailDomain::parse(&long).is_err(), "a 64-character label");
    }

    #[test]
    fn a_domain_admits_its_own_addresses_only() {
        let domain = EmailDomain::parse("clinic.example").expect("valid");
        let admits = |email: &str| domain.admits(&Email::parse(email).expect("valid email"));
        assert!(admits("ann@clinic.example"));
        assert!(admits("Ann@CLINIC.example"), "addresses are lower-cased");
        assert!(!admits("ann@lab.clinic.example"), "a subdomain");
        assert!(!admits("ann@clinic.example.org"), "a longer name");
        assert!(!admits("ann@otherclinic.example"), "a suffix");
    }

    #[test]
    fn a_list_is_sorted_without_repeats_and_bounded() {
        let list = EmailDomain::parse_list(&["b.example", "A.example", "a.example"]).expect("valid");
        assert_eq!(list.iter().map(EmailDomain::as_str).collect::<Vec<_>>(), ["a.example", "b.example"]);
        let too_many: Vec<String> = (0..51).map(|i| format!("d{i}.example")).collect();
        assert!(EmailDomain::parse_list(&too_many).is_err());
    }
}
