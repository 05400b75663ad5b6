//! Validated text: email addresses and bounded free text (names, filenames, keys).

use serde::Serialize;

use crate::ValidationError;

/// An email address of at most 255 characters as sent, trimmed, with its ASCII letters
/// lower-cased, `local@domain` with a dot inside the domain and no whitespace or control
/// characters.
///
/// Lower-cased so that the unique index on `(tenant_id, email)` treats `Ann@x.org` and
/// `ann@x.org` as the same person. Only ASCII letters are folded: full Unicode lower-casing can
/// lengthen an address (`İ` becomes two characters), so the stored address could outgrow the
/// length that was checked. Folding is a convention of mail providers, not a rule: RFC 5321 §2.4
/// lets the local part be case-sensitive, so `Ä@x.org` and `ä@x.org` stay two addresses. The
/// rules are stated exactly in the OpenAPI document (`EmailAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// The most characters an address may have (the column is `VARCHAR(255)`).
    pub const MAX_CHARS: usize = 255;

    /// Validates and normalises an address.
    pub fn parse(text: &str) -> Result<Email, ValidationError> {
        let invalid = |reason| Err(ValidationError::new("email", reason));
        // Counted as sent, before trimming, so that the rule is a plain maxLength in OpenAPI.
        let email = text.trim().to_ascii_lowercase();
        if email.is_empty() || text.chars().count() > Self::MAX_CHARS {
            return invalid("must be 1 to 255 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters");
        }
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.') =>
            {
                Ok(Email(email))
            }
            _ => invalid("must look like name@example.org"),
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bounded, trimmed, non-empty text without control characters (names, filenames, keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct BoundedText(String);

impl BoundedText {
    /// Validates `text` for `field`: at most `max` characters as sent (the column's VARCHAR
    /// length), not blank, and no control characters once the surrounding whitespace is trimmed.
    ///
    /// The length is counted before trimming so that the rule is a plain `maxLength` in the
    /// OpenAPI document, which states these rules exactly.
    pub fn parse(field: &'static str, text: &str, max: usize) -> Result<BoundedText, ValidationError> {
        if text.chars().count() > max {
            return Err(ValidationError::new(field, "is too long"));
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(field, "must not contain control characters"));
        }
        Ok(BoundedText(trimmed.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_validated() {
        assert_eq!(Email::parse("  Ann.Lee@Clinic.Example ").unwrap().as_str(), "ann.lee@clinic.example");
        // Only ASCII letters fold: `İ` would lower-case to two characters.
        assert_eq!(Email::parse("İ@X.org").unwrap().as_str(), "İ@x.org");
        for bad in [
            "",
            "ann",
            "@x.org",
            "ann@",
            "ann@x",
            "ann@@x.org",
            "a b@x.org",
            "ann@x.org.",
            "ann@.org",
            "a\u{0}@x.org",
            "a\u{a0}b@x.org",
            "a@x\u{3000}.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        // 255 characters as sent, surrounding whitespace included.
        let longest = format!("{}@x.org", "a".repeat(249));
        assert!(Email::parse(&longest).is_ok());
        assert!(Email::parse(&format!("{longest} ")).is_err());
    }

    #[test]
    fn bounded_text_is_trimmed_bounded_and_printable() {
        assert_eq!(BoundedText::parse("name", "  Acme  ", 10).unwrap().as_str(), "Acme");
        assert!(BoundedText::parse("name", "   ", 10).is_err());
        assert!(BoundedText::parse("name", "x".repeat(11).as_str(), 10).is_err());
        assert!(BoundedText::parse("name", "a\nb", 10).is_err());
        // Counted as sent: trailing whitespace counts towards the limit.
        assert!(BoundedText::parse("name", "x".repeat(10).as_str(), 10).is_ok());
        assert!(BoundedText::parse("name", format!("{} ", "x".repeat(10)).as_str(), 10).is_err());
        // Whitespace control characters are trimmed; other control characters are refused.
        assert_eq!(BoundedText::parse("name", "\tAcme\r\n", 10).unwrap().as_str(), "Acme");
        assert!(BoundedText::parse("name", "\u{1c}Acme", 10).is_err());
    }
}
