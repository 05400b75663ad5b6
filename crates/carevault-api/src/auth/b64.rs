//! Unpadded base64url decoding (RFC 7515 §2), for the few places we read a JWT or JWK part
//! ourselves: the token header (before `jsonwebtoken`, whose header type cannot even represent
//! `alg: none`, so we could not tell "none" from garbage) and RSA modulus sizes.
//!
//! Why not the `base64` crate: it is not a direct dependency and this is 30 lines.

/// Decodes unpadded base64url; `None` on any character outside the alphabet, padding, or an
/// impossible length.
pub(crate) fn decode_url_no_pad(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in bytes.chunks(4) {
        let mut acc: u32 = 0;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= u32::from(sextet(c)?) << (18 - 6 * i);
        }
        // 4 characters carry 3 bytes, 3 carry 2, 2 carry 1.
        let produced = chunk.len() - 1;
        let be = acc.to_be_bytes();
        out.extend_from_slice(&be[1..=produced]);
    }
    Some(out)
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode_url_no_pad;

    #[test]
    fn decodes_all_lengths_and_rejects_garbage() {
        assert_eq!(decode_url_no_pad("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_url_no_pad("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode_url_no_pad("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode_url_no_pad("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode_url_no_pad("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(decode_url_no_pad("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_url_no_pad("Zm9vY"), None);
        assert_eq!(decode_url_no_pad("Zg=="), None);
        assert_eq!(decode_url_no_pad("Z+8/"), None);
    }
}
