//! `X-Twilio-Signature`: the HMAC-SHA1 Twilio puts on every webhook it sends.
//!
//! The signed string is the full public URL exactly as configured (scheme, host, port if any,
//! path, query), then the POST parameters sorted by name, each appended as name then value
//! (repeated names: values sorted), with no separators and no URL-encoding. The MAC is keyed
//! with the account's auth token and sent base64-encoded (standard alphabet, padded).
//!
//! Twilio is inconsistent about default ports, so [`verify`] also accepts the signature
//! computed with `:443` / `:80` added when the URL has no port, or removed when it has the
//! default one, as the official validators do. Behind a TLS-terminating proxy, pass the URL
//! the way Twilio saw it, not the one the proxy forwarded to.
//!
//! JSON-bodied webhooks carry `bodySHA256=<hex sha256 of the body>` in the URL's query and sign
//! the URL alone: see [`verify_json`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The query parameter that carries the hex SHA-256 of a JSON webhook's body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// The name of the HTTP header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The base64 HMAC-SHA1 signature Twilio sends for `url` and the POST `params`.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // By name, then by value for repeated names; byte order on UTF-8 is code point order.
    sorted.sort_unstable();
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's signature for `url` (or its default-port variant) and `params`.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let mut valid = false;
    for candidate in url_variants(url) {
        valid |= constant_time_eq(&compute(auth_token, &candidate, params), signature);
    }
    valid
}

/// Whether `signature` signs the JSON webhook at `url` and the URL's `bodySHA256` matches `body`.
pub fn verify_json(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(claimed) = query_param(url, BODY_SHA256_PARAM) else {
        return false;
    };
    let Ok(claimed) = hex::decode(claimed) else {
        return false;
    };
    let actual = Sha256::digest(body);
    let body_matches: bool = actual.as_slice().ct_eq(&claimed).into();
    let signature_matches = verify(auth_token, url, &[], signature);
    body_matches & signature_matches
}

/// Compares two strings in time independent of their contents (not of their lengths).
fn constant_time_eq(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The URLs a signature may have been computed over: `url` as given, then its port variant.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    variants.extend(port_variant(url));
    variants
}

/// `url` with the scheme's default port added when it has no port, or removed when it has the
/// default one; `None` for anything else (other schemes or ports, userinfo, odd authorities).
fn port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return None;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    match port {
        None => Some(format!("{scheme}://{host}:{default_port}{tail}")),
        Some(port) if port == default_port => Some(format!("{scheme}://{host}{tail}")),
        Some(_) => None,
    }
}

/// Splits `host[:port]` or `[ipv6][:port]`; `None` when the authority is not of that shape.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, after) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        authority.split_at(close + 1)
    } else {
        authority.split_at(authority.find(':').unwrap_or(authority.len()))
    };
    if host.is_empty() {
        return None;
    }
    if after.is_empty() {
        return Some((host, None));
    }
    let port = after.strip_prefix(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, Some(port)))
}

/// The first value of the query parameter `name` in `url`, not percent-decoded.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, after) = url.split_once('?')?;
    let query = after.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| match pair.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTOR_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const VECTOR_TOKEN: &str = "12345";
    const VECTOR_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn vector_params() -> Vec<(String, String)> {
        // Deliberately not in sorted order.
        pairs(&[
            ("To", "+18005551212"),
            ("Digits", "1234"),
            ("CallSid", "CA1234567890ABCDE"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
        ])
    }

    /// HMAC-SHA1 over `data`, base64: the definition, written out independently of `compute`.
    fn hmac_b64(token: &str, data: &str) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("any key length");
        mac.update(data.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signature_matches_the_checked_vector() {
        assert_eq!(compute(VECTOR_TOKEN, VECTOR_URL, &vector_params()), VECTOR_SIGNATURE);
        assert!(verify(VECTOR_TOKEN, VECTOR_URL, &vector_params(), VECTOR_SIGNATURE));
    }

    #[test]
    fn signature_vector_fails_with_wrong_inputs() {
        let params = vector_params();
        assert!(!verify("12346", VECTOR_URL, &params, VECTOR_SIGNATURE));
        assert!(!verify(
            VECTOR_TOKEN,
            "https://mycompany.com/myapp.php?foo=1",
            &params,
            VECTOR_SIGNATURE
        ));
        assert!(!verify(VECTOR_TOKEN, VECTOR_URL, &params[1..], VECTOR_SIGNATURE));
        assert!(!verify(VECTOR_TOKEN, VECTOR_URL, &params, ""));
        assert!(!verify(
            VECTOR_TOKEN,
            VECTOR_URL,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ"
        ));
    }

    #[test]
    fn signature_accepts_the_default_port_variants() {
        let params = vector_params();
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        // Signed without the port, received with it.
        assert!(verify(VECTOR_TOKEN, with_port, &params, VECTOR_SIGNATURE));
        // Signed with the port, received without it.
        let signed_with_port = compute(VECTOR_TOKEN, with_port, &params);
        assert_ne!(signed_with_port, VECTOR_SIGNATURE);
        assert!(verify(VECTOR_TOKEN, VECTOR_URL, &params, &signed_with_port));
        assert!(verify(VECTOR_TOKEN, with_port, &params, &signed_with_port));

        let http = "http://mycompany.com/cb";
        let http_port = "http://mycompany.com:80/cb";
        assert!(verify("t", http_port, &params, &compute("t", http, &params)));
        assert!(verify("t", http, &params, &compute("t", http_port, &params)));
        // A port that is the other scheme's default is not a variant.
        let wrong = "http://mycompany.com:443/cb";
        assert!(!verify("t", wrong, &params, &compute("t", http, &params)));
    }

    #[test]
    fn signature_port_variants_are_only_the_default_port() {
        let params = vector_params();
        let custom = "https://mycompany.com:8443/cb";
        let plain = "https://mycompany.com/cb";
        assert!(!verify("t", plain, &params, &compute("t", custom, &params)));
        assert!(!verify("t", custom, &params, &compute("t", plain, &params)));
        assert_eq!(port_variant(custom), None);
        assert_eq!(port_variant(plain).as_deref(), Some("https://mycompany.com:443/cb"));
        assert_eq!(port_variant("HTTPS://h:443?x=1").as_deref(), Some("HTTPS://h?x=1"));
        assert_eq!(port_variant("http://h").as_deref(), Some("http://h:80"));
        assert_eq!(port_variant("https://[::1]/x").as_deref(), Some("https://[::1]:443/x"));
        assert_eq!(port_variant("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
    }

    #[test]
    fn signature_handles_odd_urls_without_panicking() {
        let params = vector_params();
        let odd = [
            "",
            "mycompany.com/myapp.php",
            "/relative?x=1",
            "https://",
            "https:///path",
            "https://[::1",
            "https://[::1]x/",
            "https://user:pw@mycompany.com:443/x",
            "https://mycompany.com:/x",
            "https://mycompany.com:99999999999999999999/x",
            "https://a:b:c/x",
            "ftp://mycompany.com/x",
            "https://mÿcömpany.com/ü?é=1#frag",
            "://",
        ];
        for url in odd {
            let signature = compute("t", url, &params);
            assert!(verify("t", url, &params, &signature), "{url}");
            assert!(!verify("u", url, &params, &signature), "{url}");
        }
        assert_eq!(port_variant("https://user:pw@mycompany.com:443/x"), None);
        assert_eq!(port_variant("https://a:b:c/x"), None);
        assert_eq!(port_variant("https://[::1"), None);
    }

    #[test]
    fn signature_sorts_repeated_names_by_value() {
        let url = "https://example.com/cb";
        let params = pairs(&[("MediaUrl", "b"), ("Body", "hi"), ("MediaUrl", "a")]);
        let expected = hmac_b64("tok", "https://example.com/cbBodyhiMediaUrlaMediaUrlb");
        assert_eq!(compute("tok", url, &params), expected);
    }

    #[test]
    fn signature_does_not_url_encode() {
        let url = "https://example.com/cb?x=a b";
        let params = pairs(&[("Body", "héllo & bye=1")]);
        let expected = hmac_b64("tok", "https://example.com/cb?x=a bBodyhéllo & bye=1");
        assert_eq!(compute("tok", url, &params), expected);
    }

    #[test]
    fn signature_json_webhook_verifies_body_hash() {
        let token = "0123456789abcdef0123456789abcdef";
        let body = br#"{"MessageSid":"SM123","MessageStatus":"delivered"}"#;
        let hash = hex::encode(Sha256::digest(body));
        let url = format!("https://hooks.example.com/twilio/json?{BODY_SHA256_PARAM}={hash}");
        let signature = hmac_b64(token, &url);

        assert!(verify_json(token, &url, body, &signature));
        // The port variant applies here too.
        let with_port = url.replacen("example.com/", "example.com:443/", 1);
        assert!(verify_json(token, &with_port, body, &signature));
        // A changed body fails even with a good signature.
        let changed = br#"{"MessageSid":"SM123","MessageStatus":"failed"}"#;
        assert!(!verify_json(token, &url, changed, &signature));
        // A wrong signature fails even with a good body.
        assert!(!verify_json("wrong", &url, body, &hmac_b64("wrong2", &url)));
        assert!(!verify_json(token, &url, body, ""));
        // No hash, or a hash that is not hex, fails.
        let bare = "https://hooks.example.com/twilio/json";
        assert!(!verify_json(token, bare, body, &hmac_b64(token, bare)));
        let not_hex = format!("{bare}?{BODY_SHA256_PARAM}=zz");
        assert!(!verify_json(token, &not_hex, body, &hmac_b64(token, &not_hex)));
    }

    #[test]
    fn signature_query_param_finds_the_first_value() {
        assert_eq!(query_param("https://h/p?a=1&b=2&b=3#b=4", "b"), Some("2"));
        assert_eq!(query_param("https://h/p?a=1#b=4", "b"), None);
        assert_eq!(query_param("https://h/p", "b"), None);
    }

    fn url_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "https?://[a-z]{1,10}\\.[a-z]{2,3}(:(80|443|[0-9]{1,5}))?(/[a-zA-Z0-9._-]{0,8}){0,3}(\\?[a-z]{1,5}=[a-z0-9]{0,5}(&[a-z]{1,5}=[a-z0-9]{0,5}){0,2})?",
            "https?://\\[[0-9a-f:]{2,12}\\](:[0-9]{1,5})?/[a-z]{0,5}",
            ".{0,40}",
        ]
    }

    fn params_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9]{0,11}", ".{0,20}"), 0..8)
    }

    fn token_strategy() -> impl Strategy<Value = String> {
        "[0-9a-f]{32}"
    }

    proptest! {
        #[test]
        fn signature_prop_verify_accepts_compute(
            token in token_strategy(), url in url_strategy(), params in params_strategy()
        ) {
            let signature = compute(&token, &url, &params);
            prop_assert!(verify(&token, &url, &params, &signature));
            let mut shuffled = params.clone();
            shuffled.reverse();
            prop_assert!(verify(&token, &url, &shuffled, &signature));
        }

        #[test]
        fn signature_prop_changed_url_fails(
            token in token_strategy(), url in url_strategy(), params in params_strategy(),
            suffix in "[a-z0-9/]{1,5}",
        ) {
            // The suffix has no ':' so the changed URL cannot be a port variant of the original.
            let signature = compute(&token, &url, &params);
            let changed = format!("{url}{suffix}");
            prop_assert!(!verify(&token, &changed, &params, &signature));
        }

        #[test]
        fn signature_prop_changed_param_name_fails(
            token in token_strategy(), url in url_strategy(), params in params_strategy(),
            index in any::<prop::sample::Index>(), suffix in "[A-Za-z0-9]{1,4}",
        ) {
            prop_assume!(!params.is_empty());
            let signature = compute(&token, &url, &params);
            let mut changed = params.clone();
            changed[index.index(params.len())].0.push_str(&suffix);
            prop_assert!(!verify(&token, &url, &changed, &signature));
        }

        #[test]
        fn signature_prop_changed_param_value_fails(
            token in token_strategy(), url in url_strategy(), params in params_strategy(),
            index in any::<prop::sample::Index>(), suffix in ".{1,4}",
        ) {
            prop_assume!(!params.is_empty());
            let signature = compute(&token, &url, &params);
            let mut changed = params.clone();
            changed[index.index(params.len())].1.push_str(&suffix);
            prop_assert!(!verify(&token, &url, &changed, &signature));
        }

        #[test]
        fn signature_prop_added_param_fails(
            token in token_strategy(), url in url_strategy(), params in params_strategy(),
            extra in ("[A-Za-z][A-Za-z0-9]{0,11}", ".{0,20}"),
        ) {
            let signature = compute(&token, &url, &params);
            let mut changed = params.clone();
            changed.push(extra);
            prop_assert!(!verify(&token, &url, &changed, &signature));
        }

        #[test]
        fn signature_prop_changed_token_fails(
            token in token_strategy(), url in url_strategy(), params in params_strategy(),
            index in 0usize..32, replacement in "[0-9a-f]",
        ) {
            let mut other = token.clone();
            other.replace_range(index..=index, &replacement);
            prop_assume!(other != token);
            let signature = compute(&token, &url, &params);
            prop_assert!(!verify(&other, &url, &params, &signature));
        }
    }
}
