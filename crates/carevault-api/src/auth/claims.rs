//! Token header parsing and claim checks shared by IdP and development tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{AuthConfig, AuthError, MAX_TOKEN_BYTES, VerifiedToken};

/// The token header fields we route on. Read by us rather than by `jsonwebtoken` because its
/// `Header` rejects unknown algorithms (including `none`) as a JSON error, which would surface as
/// "malformed" instead of "algorithm not allowed" (AUTH_004).
#[derive(Debug)]
pub(crate) struct TokenHeader {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
}

pub(crate) fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(format!("token longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not a JWT (expected three dot-separated parts)".into()));
    };
    // Unpadded base64url (RFC 7515 §2), canonical only: the engine refuses padding and a last
    // character with non-zero unused bits (RFC 4648 §3.5), so one header has one spelling.
    let bytes =
        URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed("the JWT header is not base64url".into()))?;
    let raw: RawHeader = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the JWT header is not a JSON object".into()))?;
    if raw.crit.is_some() {
        // RFC 7515 §4.1.11: a recipient must reject critical extensions it does not understand,
        // and we understand none.
        return Err(AuthError::Malformed("the JWT header has unsupported critical extensions (`crit`)".into()));
    }
    let alg = match raw.alg {
        Some(Value::String(alg)) => alg,
        _ => return Err(AuthError::Malformed("the JWT header has no `alg`".into())),
    };
    let kid = match raw.kid {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(AuthError::Malformed("the JWT header's `kid` is not a string".into())),
    };
    Ok(TokenHeader { alg, kid })
}

/// Renders an attacker-controlled header value for an error message: short printable ASCII only.
pub(crate) fn printable(value: &str) -> String {
    if value.len() <= 16 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        format!("{value:?}")
    } else {
        "(unprintable)".to_owned()
    }
}

/// Verifies the signature with exactly `alg` and `key`, then every claim rule of docs/ARCHITECTURE.md, "Authentication".
pub(crate) fn decode_and_check(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    audience: &str,
    config: &AuthConfig,
) -> Result<VerifiedToken, AuthError> {
    let leeway = config.leeway.as_secs();
    // Built from our side only: one algorithm (from config or the JWK), never the token's list.
    let mut validation = Validation::new(alg);
    validation.leeway = leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);

    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(map_jwt_error)?;
    let claims = data.claims;

    // jsonwebtoken also accepts an array `iss` containing ours; an issuer is a single string.
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => {}
        _ => return Err(AuthError::Malformed("`iss` is not the expected issuer".into())),
    }
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(AuthError::Malformed("`sub` must be a non-empty string".into())),
    };
    let expires_at = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or_else(|| AuthError::Malformed("`exp` is not a NumericDate".into()))?;
    // Required: without `iat` the maximum lifetime cannot be enforced (module docs).
    let issued_at = match claims.get("iat") {
        None | Some(Value::Null) => return Err(AuthError::Malformed("required claim `iat` is missing".into())),
        Some(v) => numeric_date(v).ok_or_else(|| AuthError::Malformed("`iat` is not a NumericDate".into()))?,
    };
    let now = chrono::Utc::now().timestamp();
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    if issued_at > now.saturating_add(leeway) {
        return Err(AuthError::NotYetValid);
    }
    if expires_at <= issued_at {
        return Err(AuthError::Malformed("`exp` is not after `iat`".into()));
    }
    let max = i64::try_from(config.max_lifetime.as_secs()).unwrap_or(i64::MAX);
    if expires_at.checked_sub(issued_at).is_none_or(|lifetime| lifetime > max) {
        return Err(AuthError::Malformed(format!(
            "token lifetime (exp - iat) is above the maximum of {max} s (JWT_MAX_LIFETIME_MINUTES)"
        )));
    }

    let tenant = match claims.get(&config.tenant_claim) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.clone()),
    };
    let email = match claims.get("email") {
        Some(Value::String(e)) => Some(e.clone()),
        _ => None,
    };
    // OIDC's `email_verified` is a boolean; Cognito sends the string "true".
    let email_verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || matches!(claims.get("email_verified"), Some(Value::String(v)) if v == "true");
    Ok(VerifiedToken { sub, tenant, email, email_verified, issued_at, expires_at })
}

/// RFC 7519 NumericDate: seconds since the epoch, possibly fractional (truncated).
fn numeric_date(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f.trunc() as i64))
        }
        _ => None,
    }
}

/// Maps `jsonwebtoken` errors to ours. Messages are fixed strings: serde's errors can quote claim
/// values (an email is PHI).
fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Malformed(format!("required claim `{}` is missing", printable(claim)))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::Malformed(format!("claim `{}` has the wrong type", printable(claim)))
        }
        ErrorKind::InvalidIssuer => AuthError::Malformed("`iss` is not the expected issuer".into()),
        ErrorKind::InvalidAudience => AuthError::Malformed("`aud` does not contain the expected audience".into()),
        ErrorKind::InvalidSubject => AuthError::Malformed("`sub` is not valid".into()),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::Malformed("not a well-formed JWT".into())
        }
        ErrorKind::InvalidSignature => AuthError::BadSignature("signature does not verify".into()),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::BadSignature("algorithm not allowed for this key".into())
        }
        // Key-format and provider errors, and future kinds: fail closed as a signature problem.
        _ => AuthError::BadSignature("the token cannot be verified with this key".into()),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::alphabet::URL_SAFE;
    use base64::engine::general_purpose::{GeneralPurpose, NO_PAD, URL_SAFE_NO_PAD};

    use super::{AuthError, parse_header};

    #[test]
    fn the_header_is_read_in_canonical_base64url_only() {
        // 14 bytes: 19 characters, the last one carrying 4 bits of data and 2 unused bits.
        let json = br#"{"alg":"none"}"#;
        let canonical = URL_SAFE_NO_PAD.encode(json);
        assert_eq!(parse_header(&format!("{canonical}.e30.sig")).unwrap().alg, "none");

        // The next character of the alphabet sets an unused bit: a second spelling of the same
        // bytes (a lenient decoder reads it), which is refused.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let (head, last) = canonical.split_at(canonical.len() - 1);
        let index = alphabet.iter().position(|&c| c == last.as_bytes()[0]).unwrap();
        let tweaked = format!("{head}{}", alphabet[index + 1] as char);
        let lenient = GeneralPurpose::new(&URL_SAFE, NO_PAD.with_decode_allow_trailing_bits(true));
        assert_eq!(lenient.decode(&tweaked).unwrap(), json);
        let refused = parse_header(&format!("{tweaked}.e30.sig"));
        assert!(matches!(refused, Err(AuthError::Malformed(_))), "{refused:?}");

        // Padding, the standard alphabet's characters and an impossible length are refused too.
        for bad in [format!("{canonical}="), "eyJ+".to_string(), "eyJ/".to_string(), "eyJhb".to_string()] {
            let refused = parse_header(&format!("{bad}.e30.sig"));
            assert!(matches!(refused, Err(AuthError::Malformed(_))), "{bad}: {refused:?}");
        }
    }
}
