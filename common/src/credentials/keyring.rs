//! The key ring channel credentials are sealed under: AES-256-GCM keys by id, the first one
//! current.
//!
//! A sealed value is `version (1 byte) | nonce (12) | ciphertext and tag`, stored beside the id
//! of the key that sealed it. The version says what the caller bound the value to (its
//! context): [`SEALED_VERSION`] for values sealed now, [`LEGACY_SEALED_VERSION`] for older ones,
//! which still open. New values are sealed under the current key; values sealed under an
//! older key still open as long as that key stays in the ring, which is how keys rotate: put
//! the new key first, keep the old ones after it until every row has been re-sealed.
//!
//! The ring is written `id:base64key` entries separated by commas or newlines (a file may have
//! `#` comments). Ids are short labels (`[A-Za-z0-9._-]`, at most 64 bytes).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};

/// The format byte of values sealed now.
pub const SEALED_VERSION: u8 = 2;
/// The format byte of values sealed before [`SEALED_VERSION`]: same cipher, another context.
pub const LEGACY_SEALED_VERSION: u8 = 1;
/// AES-GCM's nonce length.
const NONCE_LEN: usize = 12;
/// AES-256's key length.
const KEY_LEN: usize = 32;

/// Why a key ring could not be read, or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The ring has no keys.
    #[error("the credential key ring is empty")]
    Empty,
    /// The store is shared between processes, so they must share their keys too.
    #[error(
        "credentials.keys or credentials.key_file must be set when the store is shared \
         (store.backend = \"cassandra\"): a key made by one process could not open what another sealed"
    )]
    SharedStoreNeedsKeys,
    /// An entry is not `id:base64key` with a valid id.
    #[error("credential key entry {index} is not `id:base64key` with an id of [A-Za-z0-9._-]")]
    Entry {
        /// The entry's position (1-based).
        index: usize,
    },
    /// A key is not 32 bytes of base64.
    #[error("credential key {id:?} is not 32 bytes of base64")]
    KeyLength {
        /// The key's id.
        id: String,
    },
    /// Two entries share an id.
    #[error("credential key id {id:?} appears twice")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// The key file could not be read or created.
    #[error("credential key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The value was sealed under a key the ring does not hold.
    #[error("no credential key with id {id:?} in the ring")]
    UnknownKey {
        /// The key id stored with the value.
        id: String,
    },
    /// The value is not a sealed value, was changed, or belongs to another row.
    #[error("the sealed value is malformed or was tampered with")]
    Tampered,
}

/// AES-256-GCM keys by id; the first is the current one. `Debug` shows ids only.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &ids)
            .finish()
    }
}

impl Keyring {
    /// Parses `id:base64key` entries separated by commas or newlines; `#` starts a comment line.
    pub fn parse(spec: &SecretString) -> Result<Self, KeyringError> {
        let entries = spec
            .expose_secret()
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        let mut current = None;
        let mut keys = HashMap::new();
        for (index, entry) in entries.enumerate() {
            let (id, key) = entry.split_once(':').ok_or(KeyringError::Entry { index: index + 1 })?;
            let id = id.trim();
            if !valid_id(id) {
                return Err(KeyringError::Entry { index: index + 1 });
            }
            let bytes = STANDARD
                .decode(key.trim())
                .ok()
                .filter(|bytes| bytes.len() == KEY_LEN)
                .ok_or_else(|| KeyringError::KeyLength { id: id.to_owned() })?;
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
            if keys.insert(id.to_owned(), cipher).is_some() {
                return Err(KeyringError::DuplicateId { id: id.to_owned() });
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        let current = current.ok_or(KeyringError::Empty)?;
        Ok(Self { current, keys })
    }

    /// Reads a ring from `path`, creating the file with one fresh key (mode 0600) when it does
    /// not exist yet; the boolean says whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyringError> {
        let file_error = |source| KeyringError::File {
            path: path.display().to_string(),
            source,
        };
        let created = if path.exists() {
            false
        } else {
            let entry = format!(
                "# engageninja credential keys: id:base64key, the first one current\nk1:{}\n",
                generate_key().expose_secret()
            );
            write_private(path, &entry).map_err(file_error)?;
            true
        };
        let text = std::fs::read_to_string(path).map_err(file_error)?;
        Ok((Self::parse(&SecretString::from(text))?, created))
    }

    /// The id new values are sealed under.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Seals `plaintext` under the current key, bound to `context` (a row's identity, so a
    /// sealed value moved to another row does not open); answers the key id and the value.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> (String, Vec<u8>) {
        let cipher = &self.keys[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        // Encryption fails only for inputs over AES-GCM's 64 GiB limit, far above any secret.
        let ciphertext = cipher
            .encrypt(&nonce, payload)
            .expect("a credential is far below AES-GCM's length limit");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        (self.current.clone(), sealed)
    }

    /// The format byte of a sealed value, if it has one.
    pub fn version_of(sealed: &[u8]) -> Option<u8> {
        sealed.first().copied()
    }

    /// Opens a value [`seal`](Self::seal)ed under `key_id` with the same `context`.
    pub fn open(&self, key_id: &str, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| KeyringError::UnknownKey { id: key_id.to_owned() })?;
        let (&version, rest) = sealed.split_first().ok_or(KeyringError::Tampered)?;
        if ![SEALED_VERSION, LEGACY_SEALED_VERSION].contains(&version) || rest.len() < NONCE_LEN {
            return Err(KeyringError::Tampered);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: context,
        };
        cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| KeyringError::Tampered)
    }
}

/// A fresh random key, base64: the `base64key` half of a ring entry.
pub fn generate_key() -> SecretString {
    let mut key = [0_u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    SecretString::from(STANDARD.encode(key))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// Creates `path` readable by its owner only and writes `text` to it.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        crate::private_fs::create_dir_all(parent)?;
    }
    let mut file = crate::private_fs::options().write(true).create_new(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(&SecretString::from(spec.to_owned())).unwrap()
    }

    fn entry(id: &str) -> String {
        format!("{id}:{}", generate_key().expose_secret())
    }

    #[test]
    fn a_sealed_value_opens_and_differs_from_the_plaintext() {
        let keys = ring(&entry("k1"));
        let (id, sealed) = keys.seal(b"tenant/sms", b"auth-token-1234");
        assert_eq!(id, "k1");
        assert!(!sealed.windows(15).any(|window| window == b"auth-token-1234"));
        assert_eq!(keys.open(&id, b"tenant/sms", &sealed).unwrap(), b"auth-token-1234");
        let (_, again) = keys.seal(b"tenant/sms", b"auth-token-1234");
        assert_ne!(sealed, again, "a fresh nonce every time");
    }

    #[test]
    fn tampering_a_moved_row_and_unknown_keys_are_refused() {
        let keys = ring(&entry("k1"));
        let (id, sealed) = keys.seal(b"a/sms", b"secret");
        for index in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[index] ^= 0x01;
            assert!(matches!(
                keys.open(&id, b"a/sms", &changed),
                Err(KeyringError::Tampered)
            ));
        }
        assert!(matches!(keys.open(&id, b"b/sms", &sealed), Err(KeyringError::Tampered)));
        assert!(matches!(keys.open(&id, b"a/sms", &[]), Err(KeyringError::Tampered)));
        assert!(matches!(
            keys.open("k0", b"a/sms", &sealed),
            Err(KeyringError::UnknownKey { .. })
        ));
    }

    #[test]
    fn rotation_seals_under_the_new_key_and_still_opens_the_old() {
        let old_entry = entry("2025");
        let old = ring(&old_entry);
        let (old_id, old_sealed) = old.seal(b"t/email", b"aws-secret");
        let rotated = ring(&format!("{},\n{old_entry}", entry("2026")));
        assert_eq!(rotated.current_key_id(), "2026");
        assert_eq!(rotated.open(&old_id, b"t/email", &old_sealed).unwrap(), b"aws-secret");
        let (new_id, new_sealed) = rotated.seal(b"t/email", b"aws-secret");
        assert_eq!(new_id, "2026");
        assert!(matches!(
            old.open(&new_id, b"t/email", &new_sealed),
            Err(KeyringError::UnknownKey { .. })
        ));
    }

    #[test]
    fn bad_rings_are_refused_with_the_reason() {
        let parse = |spec: &str| Keyring::parse(&SecretString::from(spec.to_owned()));
        assert!(matches!(parse(""), Err(KeyringError::Empty)));
        assert!(matches!(parse("# only a comment\n"), Err(KeyringError::Empty)));
        assert!(matches!(parse("nokey"), Err(KeyringError::Entry { index: 1 })));
        assert!(matches!(parse("bad id:AAAA"), Err(KeyringError::Entry { index: 1 })));
        assert!(matches!(parse("k1:AAAA"), Err(KeyringError::KeyLength { .. })));
        let twice = format!("{},{}", entry("k1"), entry("k1"));
        assert!(matches!(parse(&twice), Err(KeyringError::DuplicateId { .. })));
        let debug = format!("{:?}", ring(&entry("k9")));
        assert!(debug.contains("k9") && !debug.contains('='), "{debug}");
    }

    #[test]
    fn a_missing_key_file_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (first, created) = Keyring::load_or_create(&path).unwrap();
        assert!(created);
        let (second, created) = Keyring::load_or_create(&path).unwrap();
        assert!(!created);
        let (id, sealed) = first.seal(b"x", b"y");
        assert_eq!(second.open(&id, b"x", &sealed).unwrap(), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
