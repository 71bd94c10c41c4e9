//! Survey keys and contacts as the ledger stores them: keyed hashes
//! (HMAC-SHA-256 with the ledger's own random secret, cut short), never the
//! customer data itself. Also the one place that says what a row's key is.

use std::borrow::Cow;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Claim;
use crate::mapping::{Mapping, Plan};
use crate::request::SurveyRequest;

/// A survey key's hash: 128 bits, so that two different surveys never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 16]);

impl KeyHash {
    /// Its first eight bytes: as evenly spread as any hash of it.
    pub fn prefix(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }
}

/// A contact's hash: 64 bits, enough to tell a few million contacts apart
/// (a false match costs one survey not sent, never a survey sent twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactHash(pub [u8; 8]);

/// Hashes keys and contacts with the ledger's secret. Cheap to clone: the
/// HMAC's padded key is computed once.
#[derive(Clone)]
pub struct Hasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher(<secret>)")
    }
}

/// Domain separation: a key and a contact with the same bytes hash apart.
const KEY: u8 = b'k';
const CONTACT: u8 = b'c';

impl Hasher {
    pub fn new(secret: &[u8]) -> Hasher {
        Hasher {
            // HMAC takes a key of any length.
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length"),
        }
    }

    fn digest(&self, domain: u8, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(&[domain]);
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// The hash of a survey key (see [`survey_key`]).
    pub fn key(&self, key: &[u8]) -> KeyHash {
        let d = self.digest(KEY, key);
        let mut h = [0u8; 16];
        h.copy_from_slice(&d[..16]);
        KeyHash(h)
    }

    /// The hash of a `customer_contact` as sent (E.164, or a lower-cased email).
    pub fn contact(&self, contact: &str) -> ContactHash {
        let d = self.digest(CONTACT, contact.as_bytes());
        let mut h = [0u8; 8];
        h.copy_from_slice(&d[..8]);
        ContactHash(h)
    }
}

/// The bytes a row's survey key is made of: the mapping's `[dedupe] key`
/// template when it has one, else the request body exactly as sent (its
/// field order is fixed by the mapping, so the same row always gives the
/// same body).
pub fn survey_key<'a>(
    plan: &Plan,
    row: &csv::StringRecord,
    _request: &SurveyRequest,
    body: &'a [u8],
) -> Cow<'a, [u8]> {
    match plan.dedupe_key(row) {
        Some(key) => Cow::Owned(key.into_bytes()),
        None => Cow::Borrowed(body),
    }
}

/// A sendable row's claim, as every command computes it: the hash of its
/// survey key and of its `customer_contact`. `body` is the request body as sent.
pub fn claim_for(
    hasher: &Hasher,
    plan: &Plan,
    row: u64,
    fields: &csv::StringRecord,
    request: &SurveyRequest,
    body: &[u8],
) -> Claim {
    Claim {
        row,
        key: hasher.key(&survey_key(plan, fields, request, body)),
        contact: Some(hasher.contact(&request.customer_contact)),
    }
}

/// The mapping's `[dedupe] contact_within`: a contact surveyed within this
/// long is not surveyed again.
pub fn contact_within(mapping: &Mapping) -> Option<Duration> {
    mapping.dedupe().contact_within
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_the_secret_and_the_kind_of_value() {
        let a = Hasher::new(b"secret one");
        let b = Hasher::new(b"secret two");
        assert_eq!(a.key(b"x"), a.clone().key(b"x"));
        assert_ne!(a.key(b"x"), b.key(b"x"));
        assert_ne!(a.key(b"x"), a.key(b"y"));
        assert_ne!(a.key(b"+447700900123").0[..8], a.contact("+447700900123").0);
        // HMAC-SHA-256 of the domain byte and the bytes, cut to 128 bits.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"k");
        mac.update(b"what do ya want for nothing?");
        let full = mac.finalize().into_bytes();
        assert_eq!(
            Hasher::new(b"Jefe").key(b"what do ya want for nothing?").0,
            full[..16]
        );
    }
}
