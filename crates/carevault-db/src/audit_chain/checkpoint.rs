//! Signed checkpoints: (tenant, sequence number, head hash, time) signed with Ed25519 by a key
//! the database never holds (`AUDIT_SIGNING_KEY`), kept in the database and in a sink outside it.
//! The signed message is specified in docs/AUDIT_FORMAT.md.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::{DbError, hex};

/// The first line of every signed message: the format and its version.
pub const CHECKPOINT_TAG: &str = "carevault.checkpoint.v1";

/// Why a signing or public key was refused. The refused text is never repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    /// Not 64 hexadecimal digits.
    #[error("must be 64 hexadecimal digits (32 bytes)")]
    Form,
    /// 32 bytes that are no Ed25519 public key.
    #[error("is not an Ed25519 public key")]
    NotAPoint,
}

/// The key that signs checkpoints: an Ed25519 private key, given as its 32-byte seed in hex.
#[derive(Clone)]
pub struct AuditSigningKey(SigningKey);

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigningKey").field("key_id", &self.public_key().key_id()).finish_non_exhaustive()
    }
}

impl AuditSigningKey {
    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Result<AuditSigningKey, AuditKeyError> {
        let seed = hex::decode::<32>(text.trim()).ok_or(AuditKeyError::Form)?;
        Ok(AuditSigningKey(SigningKey::from_bytes(&seed)))
    }

    /// A new key from the operating system's generator.
    pub fn generate() -> Result<AuditSigningKey, DbError> {
        Ok(AuditSigningKey(SigningKey::from_bytes(&crate::tenant_context::random::<32>()?)))
    }

    /// The key as [`AuditSigningKey::parse`] reads it, for writing it to a file.
    pub fn to_config_text(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Its public key, which verifiers need.
    pub fn public_key(&self) -> AuditPublicKey {
        AuditPublicKey(self.0.verifying_key())
    }
}

/// A public key that checkpoints are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPublicKey(VerifyingKey);

impl AuditPublicKey {
    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Result<AuditPublicKey, AuditKeyError> {
        let bytes = hex::decode::<32>(text.trim()).ok_or(AuditKeyError::Form)?;
        VerifyingKey::from_bytes(&bytes).map(AuditPublicKey).map_err(|_| AuditKeyError::NotAPoint)
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Its id: the first 8 bytes of the SHA-256 of the key, in hex.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The chain's head when signed.
    pub seq: i64,
    /// The head's hash (hex).
    pub head_hash: String,
    /// When it was signed, by the signer's clock (microseconds).
    pub signed_at: DateTime<Utc>,
    /// [`AuditPublicKey::key_id`] of the key that signed it.
    pub key_id: String,
    /// The Ed25519 signature of [`Checkpoint::message`] (hex).
    pub signature: String,
}

impl Checkpoint {
    /// Signs the head `seq` / `head_hash` of `tenant_id`'s chain, now.
    pub fn sign(key: &AuditSigningKey, tenant_id: TenantId, seq: i64, head_hash: &[u8; 32]) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            tenant_id,
            seq,
            head_hash: hex::encode(head_hash),
            signed_at: Utc::now().trunc_subsecs(6),
            key_id: key.public_key().key_id(),
            signature: String::new(),
        };
        checkpoint.signature = hex::encode(&key.0.sign(checkpoint.message().as_bytes()).to_bytes());
        checkpoint
    }

    /// The signed bytes: five lines, each ended by `\n`.
    pub fn message(&self) -> String {
        format!(
            "{CHECKPOINT_TAG}\n{}\n{}\n{}\n{}\n",
            self.tenant_id,
            self.seq,
            self.head_hash,
            super::canonical::micros_as_rfc3339::format_time(self.signed_at)
        )
    }

    /// Whether one of `keys` (by key id) made this signature over this content.
    pub fn is_signed_by(&self, keys: &[AuditPublicKey]) -> bool {
        let Some(key) = keys.iter().find(|k| k.key_id() == self.key_id) else { return false };
        let Some(signature) = hex::decode::<64>(&self.signature) else { return false };
        key.0.verify_strict(self.message().as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature)).is_ok()
    }

    /// The head hash's bytes (all ones when the text is not a hash, which matches no entry).
    pub fn head_hash_bytes(&self) -> [u8; 32] {
        hex::decode::<32>(&self.head_hash).unwrap_or([0xff; 32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditSigningKey {
        AuditSigningKey::parse(&"07".repeat(32)).unwrap()
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_only_as_signed() {
        let checkpoint = Checkpoint::sign(&key(), TenantId::SYSTEM, 42, &[9; 32]);
        let public = key().public_key();
        assert!(checkpoint.is_signed_by(std::slice::from_ref(&public)));
        let other = AuditSigningKey::parse(&"08".repeat(32)).unwrap().public_key();
        assert!(!checkpoint.is_signed_by(&[other]));
        let edits: [fn(&mut Checkpoint); 4] = [
            |c| c.seq += 1,
            |c| c.head_hash = "00".repeat(32),
            |c| c.signed_at += chrono::Duration::microseconds(1),
            |c| c.tenant_id = TenantId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
        ];
        for edit in edits {
            let mut changed = checkpoint.clone();
            edit(&mut changed);
            assert!(!changed.is_signed_by(std::slice::from_ref(&public)), "{changed:?}");
        }
    }

    #[test]
    fn keys_are_refused_without_being_repeated() {
        for bad in ["", "xyz", &"0".repeat(63)] {
            let error = AuditSigningKey::parse(bad).unwrap_err().to_string();
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
        assert_eq!(key().public_key().key_id().len(), 16);
        assert!(!format!("{:?}", key()).contains(&"07".repeat(32)));
        let public = key().public_key();
        assert_eq!(AuditPublicKey::parse(&public.to_hex()).unwrap(), public);
    }
}
