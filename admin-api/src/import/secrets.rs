//! The legacy installation's encrypted secrets: AES-192-CBC values in the two formats Node
//! applications of its kind write, opened with the legacy key so that they can be sealed again
//! under this product's key ring at once.
//!
//! - `crypto.createCipheriv('aes-192-cbc', key, iv)`, stored as `iv:ciphertext` in hex or
//!   base64: the key file holds the 24-byte key (48 hex characters, or base64).
//! - `crypto.createCipher('aes192', password)`, stored as the bare ciphertext in hex or base64:
//!   the key and IV come from the password by OpenSSL's `EVP_BytesToKey` (MD5, one round, no
//!   salt); the key file's text is the password.
//!
//! Which one a value is in is told by its shape (a `:` separates an IV); the format found is
//! reported per row. A plaintext is only ever held as a [`SecretString`].

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Serialize;

/// AES-192's key length.
const KEY_LEN: usize = 24;
/// AES's block (and CBC IV) length.
const IV_LEN: usize = 16;

/// How a legacy value was encrypted and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegacyFormat {
    /// `createCipheriv('aes-192-cbc')`, `iv:ciphertext` in hex.
    CreateCipherivHex,
    /// `createCipheriv('aes-192-cbc')`, `iv:ciphertext` in base64.
    CreateCipherivBase64,
    /// `createCipher('aes192', password)`, the ciphertext in hex.
    CreateCipherHex,
    /// `createCipher('aes192', password)`, the ciphertext in base64.
    CreateCipherBase64,
}

impl std::fmt::Display for LegacyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LegacyFormat::CreateCipherivHex => "createCipheriv iv:ciphertext, hex",
            LegacyFormat::CreateCipherivBase64 => "createCipheriv iv:ciphertext, base64",
            LegacyFormat::CreateCipherHex => "createCipher, hex",
            LegacyFormat::CreateCipherBase64 => "createCipher, base64",
        })
    }
}

/// Why a legacy value could not be opened (never containing any part of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key file is empty.
    #[error("the legacy key file is empty")]
    EmptyKey,
    /// An `iv:ciphertext` value, but the key file holds no 24-byte key.
    #[error("an iv:ciphertext value needs a 24-byte key in the legacy key file (48 hex characters or base64)")]
    NoRawKey,
    /// Neither hex nor base64, or an IV that is not 16 bytes.
    #[error("not a value of either legacy format ({0})")]
    Shape(&'static str),
    /// The padding did not check out: another key, or a damaged value.
    #[error("does not decrypt with the legacy key (read as {0}): wrong key or damaged value")]
    Decrypt(LegacyFormat),
    /// It decrypted to bytes that are not text.
    #[error("decrypts (read as {0}) to something that is not text: wrong key or damaged value")]
    NotText(LegacyFormat),
}

/// The legacy key: the raw AES-192 key where the file holds one, and the file's text as the
/// `createCipher` password.
pub struct LegacyKey {
    raw: Option<SecretBox<[u8; KEY_LEN]>>,
    password: SecretBox<Vec<u8>>,
}

impl LegacyKey {
    /// Reads the key file's contents (surrounding whitespace ignored).
    pub fn parse(contents: &[u8]) -> Result<LegacyKey, SecretError> {
        let text = contents.trim_ascii();
        if text.is_empty() {
            return Err(SecretError::EmptyKey);
        }
        let decoded = if text.len() == 2 * KEY_LEN {
            hex::decode(text).ok()
        } else {
            STANDARD.decode(text).ok()
        };
        let raw = decoded
            .or_else(|| (text.len() == KEY_LEN).then(|| text.to_vec()))
            .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes.as_slice()).ok())
            .map(|key| SecretBox::new(Box::new(key)));
        Ok(LegacyKey {
            raw,
            password: SecretBox::new(Box::new(text.to_vec())),
        })
    }

    /// Opens a stored value; answers the plaintext and the format it was in.
    pub fn decrypt(&self, stored: &str) -> Result<(SecretString, LegacyFormat), SecretError> {
        let stored = stored.trim();
        let (format, key, iv, ciphertext) = match stored.split_once(':') {
            Some((iv, ciphertext)) => {
                let key = self.raw.as_ref().ok_or(SecretError::NoRawKey)?.expose_secret();
                let (format, iv, ciphertext) = if is_hex(iv) && is_hex(ciphertext) {
                    (
                        LegacyFormat::CreateCipherivHex,
                        hex::decode(iv),
                        hex::decode(ciphertext),
                    )
                } else {
                    let (iv, ciphertext) = (STANDARD.decode(iv), STANDARD.decode(ciphertext));
                    let (Ok(iv), Ok(ciphertext)) = (iv, ciphertext) else {
                        return Err(SecretError::Shape("iv:ciphertext is neither hex nor base64"));
                    };
                    (LegacyFormat::CreateCipherivBase64, Ok(iv), Ok(ciphertext))
                };
                let (Ok(iv), Ok(ciphertext)) = (iv, ciphertext) else {
                    return Err(SecretError::Shape("iv:ciphertext is neither hex nor base64"));
                };
                let iv = <[u8; IV_LEN]>::try_from(iv.as_slice())
                    .map_err(|_| SecretError::Shape("the IV is not 16 bytes"))?;
                (format, *key, iv, ciphertext)
            }
            None => {
                let (format, ciphertext) = if is_hex(stored) {
                    (LegacyFormat::CreateCipherHex, hex::decode(stored).ok())
                } else {
                    (LegacyFormat::CreateCipherBase64, STANDARD.decode(stored).ok())
                };
                let ciphertext = ciphertext.ok_or(SecretError::Shape("neither hex nor base64"))?;
                let (key, iv) = bytes_to_key(self.password.expose_secret());
                (format, key, iv, ciphertext)
            }
        };
        let plaintext = cbc::Decryptor::<aes::Aes192>::new(&key.into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
            .map_err(|_| SecretError::Decrypt(format))?;
        let text = String::from_utf8(plaintext).map_err(|_| SecretError::NotText(format))?;
        Ok((SecretString::from(text), format))
    }
}

impl LegacyKey {
    /// Encrypts `plaintext` as the legacy installation did, in `format` (with `iv` for the
    /// `createCipheriv` formats): what builds legacy databases for tests, and proves a key
    /// file against a value known to the operator.
    pub fn encrypt(&self, plaintext: &str, format: LegacyFormat, iv: [u8; IV_LEN]) -> Result<String, SecretError> {
        let (key, iv) = match format {
            LegacyFormat::CreateCipherivHex | LegacyFormat::CreateCipherivBase64 => {
                (*self.raw.as_ref().ok_or(SecretError::NoRawKey)?.expose_secret(), iv)
            }
            LegacyFormat::CreateCipherHex | LegacyFormat::CreateCipherBase64 => {
                bytes_to_key(self.password.expose_secret())
            }
        };
        let ciphertext = cbc::Encryptor::<aes::Aes192>::new(&key.into(), &iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
        Ok(match format {
            LegacyFormat::CreateCipherivHex => format!("{}:{}", hex::encode(iv), hex::encode(ciphertext)),
            LegacyFormat::CreateCipherivBase64 => format!("{}:{}", STANDARD.encode(iv), STANDARD.encode(ciphertext)),
            LegacyFormat::CreateCipherHex => hex::encode(ciphertext),
            LegacyFormat::CreateCipherBase64 => STANDARD.encode(ciphertext),
        })
    }
}

/// Whether `raw` is a non-empty, even-length run of hex digits.
fn is_hex(raw: &str) -> bool {
    !raw.is_empty() && raw.len().is_multiple_of(2) && raw.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// OpenSSL's `EVP_BytesToKey` with MD5, one round and no salt, as `createCipher` uses it:
/// `D1 = MD5(password)`, `Di = MD5(D(i-1) || password)`, the key then the IV taken from
/// `D1 || D2 || D3`.
fn bytes_to_key(password: &[u8]) -> ([u8; KEY_LEN], [u8; IV_LEN]) {
    let mut material = Vec::with_capacity(3 * 16);
    let mut previous: Option<[u8; 16]> = None;
    while material.len() < KEY_LEN + IV_LEN {
        let mut md5 = Md5::new();
        if let Some(previous) = previous {
            md5.update(previous);
        }
        md5.update(password);
        let digest: [u8; 16] = md5.finalize().into();
        material.extend_from_slice(&digest);
        previous = Some(digest);
    }
    let mut key = [0; KEY_LEN];
    let mut iv = [0; IV_LEN];
    key.copy_from_slice(&material[..KEY_LEN]);
    iv.copy_from_slice(&material[KEY_LEN..KEY_LEN + IV_LEN]);
    (key, iv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key file of the vectors below: 48 hex characters, the raw key for `createCipheriv`
    /// and the password for `createCipher`.
    const KEY: &str = "000102030405060708090a0b0c0d0e0f1011121314151617\n";

    // Written by Node 20's crypto module (createCipheriv with IV a0..af, and createCipher).
    const IV_HEX: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf:3585cf574d016a41ca1b5268d995329892bdca235d5f6c373913fb99e93ef2bf8ec82854dd299d89acb56f5db72ea1eb";
    const IV_BASE64: &str = "oKGio6SlpqeoqaqrrK2urw==:hXQb30tpKGQveZxwnJGfmOpp4wmeLoq3zV8DlywLqe2C1mcX7tBOlwJ9DLdJw7Ef";
    const PASSWORD_HEX: &str = "9579a3d34095a064a6caf9b4c98458632671407d09764f1dfa98e590b130c448";
    const PASSWORD_BASE64: &str = "lXmj00CVoGSmyvm0yYRYYyZxQH0Jdk8d+pjlkLEwxEg=";

    fn open(stored: &str) -> Result<(String, LegacyFormat), SecretError> {
        let key = LegacyKey::parse(KEY.as_bytes()).unwrap();
        key.decrypt(stored)
            .map(|(secret, format)| (secret.expose_secret().to_owned(), format))
    }

    #[test]
    fn node_values_of_both_formats_open_and_name_their_format() {
        assert_eq!(
            open(IV_HEX),
            Ok((
                "twilio-auth-token-0123456789abcdef".to_owned(),
                LegacyFormat::CreateCipherivHex
            ))
        );
        assert_eq!(
            open(IV_BASE64),
            Ok((
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
                LegacyFormat::CreateCipherivBase64
            ))
        );
        assert_eq!(
            open(PASSWORD_HEX),
            Ok(("legacy-token-abc".to_owned(), LegacyFormat::CreateCipherHex))
        );
        assert_eq!(
            open(PASSWORD_BASE64),
            Ok(("legacy-token-abc".to_owned(), LegacyFormat::CreateCipherBase64))
        );
    }

    #[test]
    fn encrypting_writes_what_node_wrote() {
        let key = LegacyKey::parse(KEY.as_bytes()).unwrap();
        let iv: [u8; IV_LEN] = std::array::from_fn(|index| 0xa0 + index as u8);
        let written = |plaintext, format| key.encrypt(plaintext, format, iv).unwrap();
        assert_eq!(
            written("twilio-auth-token-0123456789abcdef", LegacyFormat::CreateCipherivHex),
            IV_HEX
        );
        assert_eq!(
            written(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                LegacyFormat::CreateCipherivBase64
            ),
            IV_BASE64
        );
        assert_eq!(written("legacy-token-abc", LegacyFormat::CreateCipherHex), PASSWORD_HEX);
        assert_eq!(
            written("legacy-token-abc", LegacyFormat::CreateCipherBase64),
            PASSWORD_BASE64
        );
    }

    #[test]
    fn another_key_or_a_damaged_value_is_refused_without_the_value() {
        let other = LegacyKey::parse(b"ffffffffffffffffffffffffffffffffffffffffffffffff").unwrap();
        for stored in [IV_HEX, PASSWORD_HEX] {
            let error = other.decrypt(stored).map(|_| ()).unwrap_err();
            assert!(
                matches!(error, SecretError::Decrypt(_) | SecretError::NotText(_)),
                "{error}"
            );
        }
        let damaged = format!("{}00", &PASSWORD_HEX[..PASSWORD_HEX.len() - 2]);
        assert!(open(&damaged).is_err());
        assert_eq!(
            open("a0a1:zz"),
            Err(SecretError::Shape("iv:ciphertext is neither hex nor base64"))
        );
        assert_eq!(open("00ff:00ff"), Err(SecretError::Shape("the IV is not 16 bytes")));
        assert!(matches!(open("not base64 at all!"), Err(SecretError::Shape(_))));
    }

    #[test]
    fn a_password_only_key_file_opens_create_cipher_values_only() {
        let key = LegacyKey::parse(b"correct horse battery staple").unwrap();
        assert_eq!(key.decrypt(IV_HEX).map(|_| ()).unwrap_err(), SecretError::NoRawKey);
        assert_eq!(
            LegacyKey::parse(b" \n").err().map(|e| e.to_string()),
            Some("the legacy key file is empty".to_owned())
        );
    }

    #[test]
    fn bytes_to_key_matches_openssl() {
        // `openssl enc -aes-192-cbc -k secret -nosalt -md md5 -P`
        let (key, iv) = bytes_to_key(b"secret");
        assert_eq!(hex::encode(key), "5ebe2294ecd0e0f08eab7690d2a6ee6926ae5cc854e36b6b");
        assert_eq!(hex::encode(iv), "dfca366848dea6bbe8c80b4b831fbb64");
    }
}
