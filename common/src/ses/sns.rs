//! SNS message signatures: checking that an SNS HTTP(S) delivery (the SES events) is genuine.
//!
//! SNS POSTs a JSON body (with `Content-Type: text/plain`) that it signs with RSA PKCS#1 v1.5:
//! SHA1 when `SignatureVersion` is `1`, SHA256 when `2`. The signed string lists some of the
//! message's fields as `key\nvalue\n` (see [`string_to_sign`]); the public key is in the X.509
//! certificate at `SigningCertURL`, which must be an AWS SNS URL (see [`check_cert_url`]).
//!
//! [`SnsVerifier`] does the whole check: the topic is one we subscribed to, the certificate URL
//! passes its [`CertUrlPolicy`], the certificate (fetched through a [`CertificateSource`] and
//! cached by URL) verifies the signature. The trust in the certificate comes from fetching it
//! over HTTPS from an AWS host, as in AWS's own validators; its validity dates are not checked.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

/// The most certificates a [`SnsVerifier`] keeps; SNS uses a handful of URLs at a time.
pub const MAX_CACHED_CERTIFICATES: usize = 64;

/// The `Type` of a message that carries a published notification.
pub const TYPE_NOTIFICATION: &str = "Notification";
/// The `Type` of the message that asks to confirm a subscription.
pub const TYPE_SUBSCRIPTION_CONFIRMATION: &str = "SubscriptionConfirmation";
/// The `Type` of the message that confirms an unsubscription.
pub const TYPE_UNSUBSCRIBE_CONFIRMATION: &str = "UnsubscribeConfirmation";

/// Why an SNS message is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    /// The message comes from a topic this verifier does not expect.
    #[error("unexpected topic {0:?}")]
    UnexpectedTopic(String),
    /// `SigningCertURL` does not pass the [`CertUrlPolicy`].
    #[error("signing certificate url {url:?} is not acceptable: {reason}")]
    BadCertificateUrl {
        /// The URL received.
        url: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The certificate could not be fetched.
    #[error("signing certificate {url:?} could not be fetched: {reason}")]
    CertificateFetch {
        /// The certificate's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The certificate is not a PEM X.509 certificate with an RSA public key.
    #[error("signing certificate {url:?} could not be parsed: {reason}")]
    CertificateParse {
        /// The certificate's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A confirmation's `SubscribeURL` is not one we may fetch.
    #[error("subscribe url {url:?} is not acceptable: {reason}")]
    BadSubscribeUrl {
        /// The URL received.
        url: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// `Timestamp` is not an RFC 3339 time, or lies outside the accepted age (a replay).
    #[error("timestamp {0:?} is not within the accepted age")]
    Stale(String),
    /// `Signature` is not base64 of an RSA signature.
    #[error("signature is not valid base64")]
    BadSignatureEncoding,
    /// The signature does not match the message under the certificate's key.
    #[error("signature does not match the message")]
    SignatureMismatch,
    /// `SignatureVersion` is neither `1` nor `2`.
    #[error("signature version {0:?} is not supported (expected 1 or 2)")]
    UnsupportedVersion(String),
    /// `Type` is not one of the three SNS message types.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// A field the message's type needs for its signature is absent.
    #[error("message of type {message_type:?} has no {field}")]
    MissingField {
        /// The message's `Type`.
        message_type: String,
        /// The absent field.
        field: &'static str,
    },
}

/// The JSON body of an SNS HTTP(S) delivery; unknown fields (e.g. `MessageAttributes`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnsMessage {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub message_type: String,
    /// The message's unique id.
    #[serde(rename = "MessageId")]
    pub message_id: String,
    /// The confirmation token (confirmations only).
    #[serde(rename = "Token", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The topic's ARN.
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    /// The subject, when the publisher set one (notifications only).
    #[serde(rename = "Subject", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The payload (for SES events, a JSON document in a string).
    #[serde(rename = "Message")]
    pub message: String,
    /// The URL to GET to confirm the subscription (confirmations only).
    #[serde(rename = "SubscribeURL", default, skip_serializing_if = "Option::is_none")]
    pub subscribe_url: Option<String>,
    /// The URL to GET to unsubscribe (notifications).
    #[serde(rename = "UnsubscribeURL", default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
    /// When the message was published, ISO 8601.
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    /// `1` (SHA1) or `2` (SHA256).
    #[serde(rename = "SignatureVersion")]
    pub signature_version: String,
    /// The base64 RSA signature over [`string_to_sign`] (absent: refused like a wrong one).
    #[serde(rename = "Signature", default)]
    pub signature: String,
    /// Where the signing certificate (PEM) is.
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
}

/// The string SNS signs for `message`: its type's fields in order, each as `key\nvalue\n`.
pub fn string_to_sign(message: &SnsMessage) -> Result<String, SnsError> {
    let missing = |field: &'static str| SnsError::MissingField {
        message_type: message.message_type.clone(),
        field,
    };
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(7);
    match message.message_type.as_str() {
        TYPE_NOTIFICATION => {
            fields.push(("Message", &message.message));
            fields.push(("MessageId", &message.message_id));
            if let Some(subject) = &message.subject {
                fields.push(("Subject", subject));
            }
            fields.push(("Timestamp", &message.timestamp));
            fields.push(("TopicArn", &message.topic_arn));
            fields.push(("Type", &message.message_type));
        }
        TYPE_SUBSCRIPTION_CONFIRMATION | TYPE_UNSUBSCRIBE_CONFIRMATION => {
            let subscribe_url = message
                .subscribe_url
                .as_deref()
                .ok_or_else(|| missing("SubscribeURL"))?;
            let token = message.token.as_deref().ok_or_else(|| missing("Token"))?;
            fields.push(("Message", &message.message));
            fields.push(("MessageId", &message.message_id));
            fields.push(("SubscribeURL", subscribe_url));
            fields.push(("Timestamp", &message.timestamp));
            fields.push(("Token", token));
            fields.push(("TopicArn", &message.topic_arn));
            fields.push(("Type", &message.message_type));
        }
        other => return Err(SnsError::UnknownMessageType(other.to_owned())),
    }
    let mut out = String::new();
    for (key, value) in fields {
        out.push_str(key);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

/// Accepts only `https://sns.<region>.amazonaws.com[.cn]/....pem` (no userinfo, default port).
///
/// The URL is parsed as WHATWG URLs are (the `url` crate, which `reqwest` uses too), so a
/// fetcher sees the host checked here. The host must match
/// `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`.
pub fn check_cert_url(url: &str) -> Result<(), SnsError> {
    let bad = |reason: &'static str| SnsError::BadCertificateUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|_| bad("not a valid absolute url"))?;
    if parsed.scheme() != "https" {
        return Err(bad("scheme is not https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("url has userinfo"));
    }
    // `port()` is `None` for no port and for an explicit default port.
    if parsed.port().is_some() {
        return Err(bad("port is not the default"));
    }
    match parsed.host() {
        Some(url::Host::Domain(host)) if is_sns_host(host) => {}
        _ => return Err(bad("host is not an sns amazonaws.com host")),
    }
    if !parsed.path().ends_with(".pem") {
        return Err(bad("path does not end in .pem"));
    }
    Ok(())
}

/// Whether `host` matches `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`.
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    region.is_some_and(|region| region.len() >= 3 && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Which `SigningCertURL`s a [`SnsVerifier`] accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CertUrlPolicy {
    /// AWS's rule, as in [`check_cert_url`]: the only choice for production.
    #[default]
    Aws,
    /// Only this exact URL: for test and simulator deployments whose SNS stand-in serves its
    /// certificate on loopback. Never configure this in production.
    Exact(String),
}

impl CertUrlPolicy {
    /// Whether `url` is acceptable under this policy.
    pub fn check(&self, url: &str) -> Result<(), SnsError> {
        match self {
            CertUrlPolicy::Aws => check_cert_url(url),
            CertUrlPolicy::Exact(allowed) if allowed == url => Ok(()),
            CertUrlPolicy::Exact(_) => Err(SnsError::BadCertificateUrl {
                url: url.to_owned(),
                reason: "not the configured certificate url",
            }),
        }
    }
}

impl CertUrlPolicy {
    /// Whether a confirmation's `SubscribeURL` may be fetched: under [`CertUrlPolicy::Aws`] an
    /// `https` URL on an SNS host (default port, no userinfo), under [`CertUrlPolicy::Exact`]
    /// a URL on the configured certificate URL's origin. Anything else could make the webhook
    /// fetch an arbitrary URL for whoever can post to it.
    pub fn check_subscribe_url(&self, url: &str) -> Result<(), SnsError> {
        let bad = |reason: &'static str| SnsError::BadSubscribeUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|_| bad("not a valid absolute url"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("url has userinfo"));
        }
        match self {
            CertUrlPolicy::Aws => {
                if parsed.scheme() != "https" || parsed.port().is_some() {
                    return Err(bad("not https on the default port"));
                }
                match parsed.host() {
                    Some(url::Host::Domain(host)) if is_sns_host(host) => Ok(()),
                    _ => Err(bad("host is not an sns amazonaws.com host")),
                }
            }
            CertUrlPolicy::Exact(allowed) => {
                let allowed = url::Url::parse(allowed).map_err(|_| bad("the configured certificate url is invalid"))?;
                if parsed.origin() == allowed.origin() {
                    Ok(())
                } else {
                    Err(bad("not on the configured certificate url's origin"))
                }
            }
        }
    }
}

/// Fetches a signing certificate (PEM bytes) by URL; the admin API plugs in an HTTPS client.
#[async_trait]
pub trait CertificateSource: Send + Sync {
    /// The PEM bytes at `url` (already checked against the [`CertUrlPolicy`]).
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, SnsError>;
}

/// The hash a `SignatureVersion` calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignatureHash {
    Sha1,
    Sha256,
}

impl SignatureHash {
    fn from_version(version: &str) -> Result<Self, SnsError> {
        match version {
            "1" => Ok(SignatureHash::Sha1),
            "2" => Ok(SignatureHash::Sha256),
            other => Err(SnsError::UnsupportedVersion(other.to_owned())),
        }
    }
}

/// Verifies SNS messages for a set of expected topics, caching certificates by URL.
pub struct SnsVerifier {
    topics: HashSet<String>,
    max_age: Option<Duration>,
    cert_url_policy: CertUrlPolicy,
    source: Arc<dyn CertificateSource>,
    cache: Mutex<HashMap<String, RsaPublicKey>>,
}

impl SnsVerifier {
    /// A verifier for messages from `topics`, with the [`CertUrlPolicy::Aws`] policy.
    pub fn new<I, S>(topics: I, source: Arc<dyn CertificateSource>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SnsVerifier {
            topics: topics.into_iter().map(Into::into).collect(),
            max_age: None,
            cert_url_policy: CertUrlPolicy::Aws,
            source,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same verifier with another certificate URL policy (see [`CertUrlPolicy::Exact`]).
    pub fn with_cert_url_policy(mut self, policy: CertUrlPolicy) -> Self {
        self.cert_url_policy = policy;
        self
    }

    /// The same verifier refusing messages published more than `max_age` ago (or more than
    /// five minutes ahead of this clock).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The certificate URL policy in force.
    pub fn cert_url_policy(&self) -> &CertUrlPolicy {
        &self.cert_url_policy
    }

    /// Checks the topic, the certificate URL and the RSA signature of `message`.
    ///
    /// The cheap checks come first, so a forged message cannot make us fetch anything from a
    /// URL that fails the policy.
    pub async fn verify(&self, message: &SnsMessage) -> Result<(), SnsError> {
        if !self.expects_topic(&message.topic_arn) {
            return Err(SnsError::UnexpectedTopic(message.topic_arn.clone()));
        }
        self.verify_signature(message).await
    }

    /// Whether `topic` is one of the topics this verifier was made for.
    pub fn expects_topic(&self, topic: &str) -> bool {
        self.topics.contains(topic)
    }

    /// Checks the certificate URL and the RSA signature of `message`, from any topic: for a
    /// topic the caller checked itself (a tenant's own).
    pub async fn verify_signature(&self, message: &SnsMessage) -> Result<(), SnsError> {
        if let Some(max_age) = self.max_age {
            check_age(&message.timestamp, max_age, OffsetDateTime::now_utc())?;
        }
        let hash = SignatureHash::from_version(&message.signature_version)?;
        self.cert_url_policy.check(&message.signing_cert_url)?;
        let signed = string_to_sign(message)?;
        let signature_bytes = STANDARD
            .decode(&message.signature)
            .map_err(|_| SnsError::BadSignatureEncoding)?;
        let signature = Signature::try_from(signature_bytes.as_slice()).map_err(|_| SnsError::BadSignatureEncoding)?;
        let key = self.public_key(&message.signing_cert_url).await?;
        let verified = match hash {
            SignatureHash::Sha1 => VerifyingKey::<Sha1>::new(key).verify(signed.as_bytes(), &signature),
            SignatureHash::Sha256 => VerifyingKey::<Sha256>::new(key).verify(signed.as_bytes(), &signature),
        };
        verified.map_err(|_| SnsError::SignatureMismatch)
    }

    /// The public key of the certificate at `url`, from the cache or fetched and cached.
    async fn public_key(&self, url: &str) -> Result<RsaPublicKey, SnsError> {
        if let Some(key) = self.lock_cache().get(url) {
            return Ok(key.clone());
        }
        let pem = self.source.fetch(url).await?;
        let key = public_key_from_pem(&pem).map_err(|reason| SnsError::CertificateParse {
            url: url.to_owned(),
            reason,
        })?;
        let mut cache = self.lock_cache();
        if cache.len() >= MAX_CACHED_CERTIFICATES
            && !cache.contains_key(url)
            && let Some(evicted) = cache.keys().next().cloned()
        {
            cache.remove(&evicted);
        }
        cache.insert(url.to_owned(), key.clone());
        Ok(key)
    }

    /// The cache, even if a panic elsewhere poisoned its lock (it holds no invariant to break).
    fn lock_cache(&self) -> MutexGuard<'_, HashMap<String, RsaPublicKey>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many certificates are cached.
    pub fn cached_certificates(&self) -> usize {
        self.lock_cache().len()
    }
}

/// Refuses a `Timestamp` more than `max_age` before `now`, more than five minutes after it
/// (clock skew), or not RFC 3339.
fn check_age(timestamp: &str, max_age: Duration, now: OffsetDateTime) -> Result<(), SnsError> {
    const SKEW: Duration = Duration::from_secs(300);
    let stale = || SnsError::Stale(timestamp.chars().take(64).collect());
    let published = OffsetDateTime::parse(timestamp, &Rfc3339).map_err(|_| stale())?;
    let fresh = published >= now - max_age && published <= now + SKEW;
    if fresh { Ok(()) } else { Err(stale()) }
}

/// The RSA public key of a PEM X.509 certificate.
fn public_key_from_pem(pem: &[u8]) -> Result<RsaPublicKey, String> {
    let certificate = Certificate::from_pem(pem).map_err(|e| format!("not a pem certificate: {e}"))?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("cannot encode the public key info: {e}"))?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("not an rsa public key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// TEST ONLY: a throwaway self-signed certificate and its key (see tests/fixtures/README.md).
    const TEST_CERT_PEM: &str = include_str!("../../tests/fixtures/sns-test-only-cert.pem");
    const TEST_KEY_PEM: &str = include_str!("../../tests/fixtures/sns-test-only-key.pem");

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
    const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";

    /// Serves the test certificate for any URL and counts the fetches.
    struct TestSource {
        pem: Vec<u8>,
        fetches: AtomicUsize,
    }

    impl TestSource {
        fn new(pem: &str) -> Arc<Self> {
            Arc::new(TestSource {
                pem: pem.as_bytes().to_vec(),
                fetches: AtomicUsize::new(0),
            })
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl CertificateSource for TestSource {
        async fn fetch(&self, _url: &str) -> Result<Vec<u8>, SnsError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Ok(self.pem.clone())
        }
    }

    /// A source that always fails.
    struct FailingSource;

    #[async_trait]
    impl CertificateSource for FailingSource {
        async fn fetch(&self, url: &str) -> Result<Vec<u8>, SnsError> {
            Err(SnsError::CertificateFetch {
                url: url.to_owned(),
                reason: "connection refused".to_owned(),
            })
        }
    }

    fn private_key() -> RsaPrivateKey {
        RsaPrivateKey::from_pkcs8_pem(TEST_KEY_PEM).expect("test key parses")
    }

    fn sign(message: &mut SnsMessage, key: &RsaPrivateKey) {
        let text = string_to_sign(message).expect("known type");
        let bytes = match message.signature_version.as_str() {
            "1" => SigningKey::<Sha1>::new(key.clone()).sign(text.as_bytes()).to_vec(),
            _ => SigningKey::<Sha256>::new(key.clone()).sign(text.as_bytes()).to_vec(),
        };
        message.signature = STANDARD.encode(bytes);
    }

    fn notification(version: &str, subject: Option<&str>) -> SnsMessage {
        SnsMessage {
            message_type: TYPE_NOTIFICATION.to_owned(),
            message_id: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".to_owned(),
            token: None,
            topic_arn: TOPIC.to_owned(),
            subject: subject.map(str::to_owned),
            message: r#"{"eventType":"Delivery","mail":{"messageId":"0100abc"}}"#.to_owned(),
            subscribe_url: None,
            unsubscribe_url: Some(
                "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x".to_owned(),
            ),
            timestamp: "2026-01-02T03:04:05.678Z".to_owned(),
            signature_version: version.to_owned(),
            signature: String::new(),
            signing_cert_url: CERT_URL.to_owned(),
        }
    }

    fn confirmation(message_type: &str, version: &str) -> SnsMessage {
        SnsMessage {
            message_type: message_type.to_owned(),
            message_id: "165545c9-2a5c-472c-8df2-7ff2be2b3b1b".to_owned(),
            token: Some("2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736".to_owned()),
            topic_arn: TOPIC.to_owned(),
            subject: None,
            message: format!("You have chosen to subscribe to the topic {TOPIC}."),
            subscribe_url: Some(format!(
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f"
            )),
            unsubscribe_url: None,
            timestamp: "2026-01-02T03:04:05.678Z".to_owned(),
            signature_version: version.to_owned(),
            signature: String::new(),
            signing_cert_url: CERT_URL.to_owned(),
        }
    }

    fn signed(mut message: SnsMessage) -> SnsMessage {
        sign(&mut message, &private_key());
        message
    }

    fn verifier(source: Arc<TestSource>) -> SnsVerifier {
        SnsVerifier::new([TOPIC], source)
    }

    #[test]
    fn signature_sns_message_deserializes_from_sns_json() {
        let body = r#"{
          "Type" : "Notification",
          "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
          "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
          "Subject" : "My First Message",
          "Message" : "Hello world!",
          "Timestamp" : "2012-05-02T00:54:06.655Z",
          "SignatureVersion" : "1",
          "Signature" : "EXAMPLEw6JRN...",
          "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
          "UnsubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0",
          "MessageAttributes" : {}
        }"#;
        let message: SnsMessage = serde_json::from_str(body).expect("valid SNS JSON");
        assert_eq!(message.message_type, "Notification");
        assert_eq!(message.subject.as_deref(), Some("My First Message"));
        assert_eq!(message.token, None);
        assert!(message.unsubscribe_url.is_some());
        assert_eq!(
            string_to_sign(&message).expect("notification"),
            "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
             Subject\nMy First Message\nTimestamp\n2012-05-02T00:54:06.655Z\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n"
        );
        let round_trip: SnsMessage =
            serde_json::from_str(&serde_json::to_string(&message).expect("serializes")).expect("deserializes");
        assert_eq!(round_trip, message);
    }

    #[test]
    fn signature_string_to_sign_per_type() {
        let without_subject = notification("1", None);
        assert_eq!(
            string_to_sign(&without_subject).expect("notification"),
            format!(
                "Message\n{}\nMessageId\n{}\nTimestamp\n{}\nTopicArn\n{TOPIC}\nType\nNotification\n",
                without_subject.message, without_subject.message_id, without_subject.timestamp
            )
        );
        let confirm = confirmation(TYPE_SUBSCRIPTION_CONFIRMATION, "1");
        assert_eq!(
            string_to_sign(&confirm).expect("confirmation"),
            format!(
                "Message\n{}\nMessageId\n{}\nSubscribeURL\n{}\nTimestamp\n{}\nToken\n{}\nTopicArn\n{TOPIC}\nType\nSubscriptionConfirmation\n",
                confirm.message,
                confirm.message_id,
                confirm.subscribe_url.as_deref().unwrap_or_default(),
                confirm.timestamp,
                confirm.token.as_deref().unwrap_or_default(),
            )
        );
        let mut unknown = notification("1", None);
        unknown.message_type = "Bogus".to_owned();
        assert_eq!(
            string_to_sign(&unknown),
            Err(SnsError::UnknownMessageType("Bogus".to_owned()))
        );
        let mut no_token = confirmation(TYPE_UNSUBSCRIBE_CONFIRMATION, "1");
        no_token.token = None;
        assert!(matches!(
            string_to_sign(&no_token),
            Err(SnsError::MissingField { field: "Token", .. })
        ));
    }

    #[test]
    fn signature_cert_url_aws_rule() {
        for good in [
            CERT_URL,
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com:443/x.pem",
        ] {
            assert_eq!(check_cert_url(good), Ok(()), "{good}");
        }
        for bad in [
            "https://sns.evil.com/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x",
            "https://sns.us-east-1.amazonaws.com/x.pem.txt",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.a.amazonaws.com/x.pem",
            "https://sns.evil.com.amazonaws.com/x.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com./x.pem",
            "https://xsns.us-east-1.amazonaws.com/x.pem",
            "https://127.0.0.1/x.pem",
            "sns.us-east-1.amazonaws.com/x.pem",
            "",
        ] {
            assert!(
                matches!(check_cert_url(bad), Err(SnsError::BadCertificateUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn signature_cert_url_exact_policy() {
        let url = "http://127.0.0.1:4575/test-cert.pem";
        let policy = CertUrlPolicy::Exact(url.to_owned());
        assert_eq!(policy.check(url), Ok(()));
        assert!(policy.check(CERT_URL).is_err());
        assert!(policy.check("http://127.0.0.1:4575/test-cert.pem?x").is_err());
        assert!(CertUrlPolicy::default().check(url).is_err());
    }

    #[tokio::test]
    async fn signature_sns_valid_messages_verify() {
        let source = TestSource::new(TEST_CERT_PEM);
        let verifier = verifier(source.clone());
        for version in ["1", "2"] {
            for message in [
                notification(version, Some("Amazon SES Email Event Notification")),
                notification(version, None),
                confirmation(TYPE_SUBSCRIPTION_CONFIRMATION, version),
                confirmation(TYPE_UNSUBSCRIBE_CONFIRMATION, version),
            ] {
                let message = signed(message);
                assert_eq!(verifier.verify(&message).await, Ok(()), "{message:?}");
            }
        }
        assert_eq!(source.fetches(), 1);
    }

    #[tokio::test]
    async fn signature_sns_tampered_messages_fail() {
        let verifier = verifier(TestSource::new(TEST_CERT_PEM));
        let original = signed(notification("2", Some("subject")));

        let mut tampered = original.clone();
        tampered.message.push(' ');
        assert_eq!(verifier.verify(&tampered).await, Err(SnsError::SignatureMismatch));

        let mut no_subject = original.clone();
        no_subject.subject = None;
        assert_eq!(verifier.verify(&no_subject).await, Err(SnsError::SignatureMismatch));

        // Signed with SHA256 but claiming SHA1.
        let mut wrong_version = original.clone();
        wrong_version.signature_version = "1".to_owned();
        assert_eq!(verifier.verify(&wrong_version).await, Err(SnsError::SignatureMismatch));

        let mut confirm = signed(confirmation(TYPE_SUBSCRIPTION_CONFIRMATION, "1"));
        confirm.subscribe_url = Some("https://evil.example/confirm".to_owned());
        assert_eq!(verifier.verify(&confirm).await, Err(SnsError::SignatureMismatch));

        let mut garbage = original.clone();
        garbage.signature = "not base64!".to_owned();
        assert_eq!(verifier.verify(&garbage).await, Err(SnsError::BadSignatureEncoding));

        let mut short = original;
        short.signature = STANDARD.encode([1u8, 2, 3]);
        assert_eq!(verifier.verify(&short).await, Err(SnsError::SignatureMismatch));
    }

    #[tokio::test]
    async fn signature_sns_unexpected_topic_fails_without_fetching() {
        let source = TestSource::new(TEST_CERT_PEM);
        let verifier = verifier(source.clone());
        let mut message = notification("1", None);
        message.topic_arn = "arn:aws:sns:us-east-1:999999999999:other".to_owned();
        let message = signed(message);
        assert_eq!(
            verifier.verify(&message).await,
            Err(SnsError::UnexpectedTopic(message.topic_arn.clone()))
        );
        assert_eq!(source.fetches(), 0);
    }

    #[tokio::test]
    async fn signature_sns_bad_cert_urls_are_rejected_without_fetching() {
        let source = TestSource::new(TEST_CERT_PEM);
        let verifier = verifier(source.clone());
        for url in [
            "https://sns.evil.com/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x",
        ] {
            let mut message = notification("1", None);
            message.signing_cert_url = url.to_owned();
            let message = signed(message);
            assert!(
                matches!(verifier.verify(&message).await, Err(SnsError::BadCertificateUrl { .. })),
                "{url}"
            );
        }
        assert_eq!(source.fetches(), 0);
    }

    #[tokio::test]
    async fn signature_sns_exact_policy_serves_a_simulator() {
        let url = "http://127.0.0.1:4575/test-cert.pem";
        let source = TestSource::new(TEST_CERT_PEM);
        let verifier = verifier(source.clone()).with_cert_url_policy(CertUrlPolicy::Exact(url.to_owned()));
        let mut message = notification("2", None);
        message.signing_cert_url = url.to_owned();
        assert_eq!(verifier.verify(&signed(message)).await, Ok(()));
        // The AWS URL is not the configured one.
        let aws = signed(notification("2", None));
        assert!(matches!(
            verifier.verify(&aws).await,
            Err(SnsError::BadCertificateUrl { .. })
        ));
    }

    #[tokio::test]
    async fn signature_sns_unsupported_version_and_type_fail() {
        let verifier = verifier(TestSource::new(TEST_CERT_PEM));
        let mut message = signed(notification("2", None));
        message.signature_version = "3".to_owned();
        assert_eq!(
            verifier.verify(&message).await,
            Err(SnsError::UnsupportedVersion("3".to_owned()))
        );
        let mut unknown = signed(notification("1", None));
        unknown.message_type = "Bogus".to_owned();
        assert_eq!(
            verifier.verify(&unknown).await,
            Err(SnsError::UnknownMessageType("Bogus".to_owned()))
        );
    }

    #[tokio::test]
    async fn signature_sns_cache_fetches_each_url_once_and_is_bounded() {
        let source = TestSource::new(TEST_CERT_PEM);
        let verifier = verifier(source.clone());
        let message = signed(notification("1", None));
        for _ in 0..3 {
            assert_eq!(verifier.verify(&message).await, Ok(()));
        }
        assert_eq!(source.fetches(), 1);

        let mut other = notification("1", None);
        other.signing_cert_url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem".to_owned();
        let other = signed(other);
        assert_eq!(verifier.verify(&other).await, Ok(()));
        assert_eq!(verifier.verify(&other).await, Ok(()));
        assert_eq!(source.fetches(), 2);

        // A tampered message is refused from the cached key too, without a fetch.
        let mut tampered = message.clone();
        tampered.timestamp = "2026-01-02T03:04:06.000Z".to_owned();
        assert_eq!(verifier.verify(&tampered).await, Err(SnsError::SignatureMismatch));
        assert_eq!(source.fetches(), 2);

        // Filling the cache past its bound evicts instead of growing.
        for i in 0..(MAX_CACHED_CERTIFICATES + 10) {
            verifier
                .public_key(&format!("https://sns.us-east-1.amazonaws.com/cert-{i}.pem"))
                .await
                .expect("test certificate");
        }
        assert_eq!(verifier.cached_certificates(), MAX_CACHED_CERTIFICATES);
    }

    #[tokio::test]
    async fn signature_sns_certificate_failures_are_reported() {
        let message = signed(notification("1", None));

        let failing = SnsVerifier::new([TOPIC], Arc::new(FailingSource));
        assert!(matches!(
            failing.verify(&message).await,
            Err(SnsError::CertificateFetch { .. })
        ));

        let garbage = verifier(TestSource::new(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ));
        assert!(matches!(
            garbage.verify(&message).await,
            Err(SnsError::CertificateParse { .. })
        ));
        assert_eq!(garbage.cached_certificates(), 0);

        let key_not_cert = verifier(TestSource::new(TEST_KEY_PEM));
        assert!(matches!(
            key_not_cert.verify(&message).await,
            Err(SnsError::CertificateParse { .. })
        ));
    }

    #[test]
    fn signature_subscribe_urls_are_only_sns_or_the_configured_origin() {
        let aws = CertUrlPolicy::Aws;
        assert!(
            aws.check_subscribe_url("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x")
                .is_ok()
        );
        for bad in [
            "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "https://sns.us-east-1.amazonaws.com:8443/",
            "https://evil.example.com/?Action=ConfirmSubscription",
            "https://user@sns.us-east-1.amazonaws.com/",
            "http://169.254.169.254/latest/meta-data/",
            "not a url",
        ] {
            assert!(
                matches!(aws.check_subscribe_url(bad), Err(SnsError::BadSubscribeUrl { .. })),
                "{bad}"
            );
        }
        let exact = CertUrlPolicy::Exact("http://127.0.0.1:4010/sns/cert.pem".to_owned());
        assert!(
            exact
                .check_subscribe_url("http://127.0.0.1:4010/sns/confirm?token=1")
                .is_ok()
        );
        assert!(exact.check_subscribe_url("http://127.0.0.1:4011/sns/confirm").is_err());
        assert!(
            exact
                .check_subscribe_url("https://sns.us-east-1.amazonaws.com/")
                .is_err()
        );
    }

    #[test]
    fn signature_sns_errors_are_lowercase() {
        let errors = [
            SnsError::UnexpectedTopic("t".to_owned()),
            SnsError::BadCertificateUrl {
                url: "u".to_owned(),
                reason: "r",
            },
            SnsError::CertificateFetch {
                url: "u".to_owned(),
                reason: "r".to_owned(),
            },
            SnsError::CertificateParse {
                url: "u".to_owned(),
                reason: "r".to_owned(),
            },
            SnsError::BadSignatureEncoding,
            SnsError::SignatureMismatch,
            SnsError::UnsupportedVersion("3".to_owned()),
            SnsError::UnknownMessageType("x".to_owned()),
            SnsError::MissingField {
                message_type: "Notification".to_owned(),
                field: "Token",
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
        }
    }

    #[test]
    fn messages_older_than_the_max_age_or_from_the_future_are_stale() {
        let now = OffsetDateTime::parse("2026-12-06T12:00:00Z", &Rfc3339).unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(check_age("2026-12-06T11:30:00.000Z", hour, now), Ok(()));
        assert_eq!(check_age("2026-12-06T12:04:00.000Z", hour, now), Ok(()));
        for stale in ["2026-12-06T10:59:59.000Z", "2026-12-06T12:06:00.000Z", "yesterday", ""] {
            assert!(
                matches!(check_age(stale, hour, now), Err(SnsError::Stale(_))),
                "{stale}"
            );
        }
    }
}
