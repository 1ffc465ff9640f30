//! One-click unsubscribe links (RFC 8058) for marketing email.
//!
//! Every marketing email carries `List-Unsubscribe: <https://…/unsubscribe/TOKEN>,
//! <mailto:…?subject=unsubscribe>` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`;
//! a mail client that offers "unsubscribe" POSTs to the URL, and the admin API suppresses the
//! address at once, without a login. The token names the tenant and the recipient, sealed with
//! AES-256-GCM under the credential key ring (the same keys, bound to their own context so a
//! token can never open as a credential or the reverse): it cannot be forged or altered to name
//! another tenant or address, and the address does not appear in the URL. Rotating the ring
//! keeps old links working while their key stays in it.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::credentials::Keyring;
use crate::ids::TenantId;

/// The header naming where to unsubscribe.
pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
/// The header saying the URL takes a one-click POST (RFC 8058).
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
/// The only value [`LIST_UNSUBSCRIBE_POST`] has.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";
/// The admin API's path the links point at, followed by the token.
pub const PATH: &str = "/unsubscribe";

/// What a token is sealed to: a token never opens as anything else.
const CONTEXT: &[u8] = b"engageninja/list-unsubscribe/v1";
/// The longest token accepted (a 64-character tenant and a 254-character address seal to
/// about 470 characters).
const MAX_TOKEN_CHARS: usize = 1024;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsubscribeError {
    /// Not a token this product made, altered, or sealed under a key no longer in the ring.
    #[error("the unsubscribe token is not valid")]
    InvalidToken,
}

/// Whom a token unsubscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscriber {
    /// The tenant whose mail it was.
    pub tenant_id: TenantId,
    /// The recipient's address, as the message named it.
    pub address: String,
}

/// Makes the unsubscribe headers of a tenant's email (the dispatcher's side).
#[derive(Debug, Clone)]
pub struct UnsubscribeLinks {
    /// The admin API's public URL with [`PATH`] and a trailing `/`.
    prefix: String,
    keyring: Arc<Keyring>,
}

impl UnsubscribeLinks {
    /// Links to the admin API at `public_url` (no trailing `/`), sealed with `keyring`.
    pub fn new(public_url: &str, keyring: Arc<Keyring>) -> Self {
        Self {
            prefix: format!("{}{PATH}/", public_url.trim_end_matches('/')),
            keyring,
        }
    }

    /// The one-click URL that unsubscribes `address` from `tenant`'s mail.
    pub fn url(&self, tenant: &TenantId, address: &str) -> String {
        format!("{}{}", self.prefix, seal(&self.keyring, tenant, address))
    }

    /// The two headers of one email: the URL and a mailto to `mailbox` (where the tenant
    /// reads unsubscribe requests by mail), then the one-click marker.
    pub fn headers(&self, tenant: &TenantId, address: &str, mailbox: &str) -> [(String, String); 2] {
        let subject: String = url::form_urlencoded::byte_serialize(b"unsubscribe").collect();
        [
            (
                LIST_UNSUBSCRIBE.to_owned(),
                format!("<{}>, <mailto:{mailbox}?subject={subject}>", self.url(tenant, address)),
            ),
            (LIST_UNSUBSCRIBE_POST.to_owned(), ONE_CLICK.to_owned()),
        ]
    }
}

/// A token naming `tenant` and `address`: the key id, `.`, and the sealed pair in URL-safe
/// base64.
fn seal(keyring: &Keyring, tenant: &TenantId, address: &str) -> String {
    let plain = format!("{}\n{address}", tenant.as_str());
    let (key_id, sealed) = keyring.seal(CONTEXT, plain.as_bytes());
    format!("{key_id}.{}", URL_SAFE_NO_PAD.encode(sealed))
}

/// Whom `token` unsubscribes, if this product made it with a key still in `keyring`.
pub fn open(keyring: &Keyring, token: &str) -> Result<Unsubscriber, UnsubscribeError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(UnsubscribeError::InvalidToken);
    }
    let (key_id, sealed) = token.rsplit_once('.').ok_or(UnsubscribeError::InvalidToken)?;
    let sealed = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| UnsubscribeError::InvalidToken)?;
    let plain = keyring
        .open(key_id, CONTEXT, &sealed)
        .map_err(|_| UnsubscribeError::InvalidToken)?;
    let plain = String::from_utf8(plain).map_err(|_| UnsubscribeError::InvalidToken)?;
    let (tenant, address) = plain.split_once('\n').ok_or(UnsubscribeError::InvalidToken)?;
    let tenant_id = TenantId::parse(tenant).map_err(|_| UnsubscribeError::InvalidToken)?;
    Ok(Unsubscriber {
        tenant_id,
        address: address.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn ring(spec: &str) -> Arc<Keyring> {
        Arc::new(Keyring::parse(&SecretString::from(spec.to_owned())).unwrap())
    }

    fn token_of(url: &str) -> &str {
        url.rsplit_once('/').unwrap().1
    }

    #[test]
    fn a_link_opens_to_its_tenant_and_address_and_hides_the_address() {
        let keyring = ring("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let links = UnsubscribeLinks::new("https://api.example.com/", Arc::clone(&keyring));
        let tenant = TenantId::parse("acme").unwrap();
        let url = links.url(&tenant, "ann@example.com");
        assert!(url.starts_with("https://api.example.com/unsubscribe/k1."), "{url}");
        assert!(!url.contains("ann"), "the address must not show in the URL: {url}");
        let opened = open(&keyring, token_of(&url)).unwrap();
        assert_eq!(opened.tenant_id, tenant);
        assert_eq!(opened.address, "ann@example.com");
    }

    #[test]
    fn the_headers_are_rfc_8058s() {
        let links = UnsubscribeLinks::new(
            "https://api.example.com",
            ring("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        );
        let [(name, value), (post, one_click)] =
            links.headers(&TenantId::parse("acme").unwrap(), "ann@example.com", "news@acme.com");
        assert_eq!(name, "List-Unsubscribe");
        assert!(value.starts_with("<https://api.example.com/unsubscribe/"), "{value}");
        assert!(
            value.ends_with(">, <mailto:news@acme.com?subject=unsubscribe>"),
            "{value}"
        );
        assert_eq!(
            (post.as_str(), one_click.as_str()),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        );
    }

    #[test]
    fn altered_foreign_and_garbage_tokens_are_refused() {
        let keyring = ring("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let links = UnsubscribeLinks::new("https://api.example.com", Arc::clone(&keyring));
        let url = links.url(&TenantId::parse("acme").unwrap(), "ann@example.com");
        let token = token_of(&url);
        // One character changed anywhere in the sealed part.
        let mut altered = token.to_owned().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        // The same token under another ring (another installation, or a key removed).
        let other = ring("k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        for bad in [
            altered.as_str(),
            "",
            "k1.",
            "k1.!!!",
            "nodot",
            "k9.AAAA",
            &"a".repeat(2000),
        ] {
            assert_eq!(open(&keyring, bad), Err(UnsubscribeError::InvalidToken), "{bad}");
        }
        assert_eq!(open(&other, token), Err(UnsubscribeError::InvalidToken));
    }

    #[test]
    fn a_sealed_credential_does_not_open_as_a_token() {
        let keyring = ring("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let (key_id, sealed) = keyring.seal(b"acme/email", b"acme\nann@example.com");
        let token = format!("{key_id}.{}", URL_SAFE_NO_PAD.encode(sealed));
        assert_eq!(open(&keyring, &token), Err(UnsubscribeError::InvalidToken));
    }
}
