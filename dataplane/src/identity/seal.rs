//! Sealed tokens: the proxy session cookie and the login `state`, both
//! AES-256-GCM with a key from the snapshot. A token is
//! `<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`; the key id picks the
//! key, so a rotated-out key keeps opening old cookies until the operator
//! removes it. The purpose (and the app, for sessions) is bound in as
//! associated data, so a token sealed for one use or app never opens for
//! another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use palisade_schema::access::SessionKey;

/// Longest token accepted (bytes): bounds the work an attacker can cause.
pub const MAX_TOKEN: usize = 3072;

/// The snapshot's keys, ready to use. The first seals.
pub struct Sealer {
    keys: Vec<(Box<str>, LessSafeKey)>,
    rng: SystemRandom,
}

impl Sealer {
    pub fn new(keys: &[SessionKey]) -> Sealer {
        Sealer {
            keys: keys
                .iter()
                .filter_map(|k| {
                    let unbound = UnboundKey::new(&AES_256_GCM, &k.key).ok()?;
                    Some((k.id.as_str().into(), LessSafeKey::new(unbound)))
                })
                .collect(),
            rng: SystemRandom::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plain` bound to `aad`; `None` without keys.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Option<String> {
        let (id, key) = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut data = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .ok()?;
        let mut raw = Vec::with_capacity(NONCE_LEN + data.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&data);
        Some(format!("{id}.{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Opens a token sealed for `aad` by any current key.
    pub fn open(&self, token: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let token = std::str::from_utf8(token).ok()?;
        let (id, body) = token.split_once('.')?;
        let (_, key) = self.keys.iter().find(|(k, _)| &**k == id)?;
        let mut raw = URL_SAFE_NO_PAD.decode(body).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).ok()?;
        let plain_len = key
            .open_in_place(nonce, Aad::from(aad), &mut raw[NONCE_LEN..])
            .ok()?
            .len();
        raw.copy_within(NONCE_LEN..NONCE_LEN + plain_len, 0);
        raw.truncate(plain_len);
        Some(raw)
    }

    /// `n` random bytes, base64url.
    pub fn random_token(&self, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        // SystemRandom reads the kernel's CSPRNG; it does not fail on Linux.
        let _ = self.rng.fill(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, b: u8) -> SessionKey {
        SessionKey {
            id: id.into(),
            key: [b; 32],
        }
    }

    #[test]
    fn seal_open_rotation_and_binding() {
        let old = Sealer::new(&[key("k1", 1)]);
        let token = old.seal(b"alice", b"session|box").unwrap();
        assert_eq!(
            old.open(token.as_bytes(), b"session|box").unwrap(),
            b"alice"
        );
        // Bound to its purpose and app.
        assert!(old.open(token.as_bytes(), b"session|other").is_none());
        // Rotation: the new key seals, the old one still opens until removed.
        let rotated = Sealer::new(&[key("k2", 2), key("k1", 1)]);
        assert_eq!(
            rotated.open(token.as_bytes(), b"session|box").unwrap(),
            b"alice"
        );
        assert!(rotated.seal(b"x", b"a").unwrap().starts_with("k2."));
        let removed = Sealer::new(&[key("k2", 2)]);
        assert!(removed.open(token.as_bytes(), b"session|box").is_none());
        // Any flipped character fails.
        let mut bad = token.clone().into_bytes();
        let i = bad.len() - 5;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert!(old.open(&bad, b"session|box").is_none());
        assert!(old.open(b"k1.", b"session|box").is_none());
        assert!(old.open(b"garbage", b"session|box").is_none());
    }
}
