//! What came of one email: [`SesSendOutcome`], and the mapping of SES's answers to it (the table is
//! in the module docs of [`crate::ses`]).

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// What the dispatcher does about an email SES refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectClass {
    /// This email can never succeed as sent (rejected content, unverified domain, bad input):
    /// fail it.
    Permanent,
    /// The tenant's account or setup is at fault (sending paused, suspended, quota spent,
    /// credentials or template missing): fail it and tell the tenant.
    NeedsAttention,
}

/// What came of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SesSendOutcome {
    /// SES accepted it.
    Accepted {
        /// SES's message id, the `mail.messageId` of its events.
        message_id: String,
    },
    /// SES did not process it: safe to send again later.
    Transient {
        /// A stable, low-cardinality label (`SES_THROTTLED`, `SES_CONNECT`, ...).
        reason: String,
        /// How long SES asked us to wait, if it said (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// SES refused it.
    Rejected {
        /// A stable label (`SES_MESSAGE_REJECTED`, `SES_SENDING_PAUSED`, ...).
        code: String,
        /// What to do about it.
        class: RejectClass,
    },
    /// SES may have processed it but no usable answer came: never resend blindly.
    Unknown {
        /// A stable label (`SES_TIMEOUT`, `SES_CONNECTION_LOST`, ...).
        reason: String,
    },
}

impl SesSendOutcome {
    fn transient(reason: &str, retry_after: Option<Duration>) -> Self {
        SesSendOutcome::Transient {
            reason: reason.to_owned(),
            retry_after,
        }
    }

    fn rejected(code: &str, class: RejectClass) -> Self {
        SesSendOutcome::Rejected {
            code: code.to_owned(),
            class,
        }
    }

    pub(crate) fn unknown(reason: &str) -> Self {
        SesSendOutcome::Unknown {
            reason: reason.to_owned(),
        }
    }
}

/// Maps the `Status` of one `SendBulkEmail` entry (as SES spells it, `SUCCESS`,
/// `MESSAGE_REJECTED`, ...) and its `MessageId`.
pub fn bulk_status_outcome(status: &str, message_id: Option<&str>) -> SesSendOutcome {
    use RejectClass::{NeedsAttention, Permanent};
    match status {
        "SUCCESS" => match message_id.filter(|id| !id.is_empty()) {
            Some(id) => SesSendOutcome::Accepted {
                message_id: id.to_owned(),
            },
            None => SesSendOutcome::unknown("SES_RESPONSE_UNREADABLE"),
        },
        "ACCOUNT_THROTTLED" => SesSendOutcome::transient("SES_ACCOUNT_THROTTLED", None),
        "TRANSIENT_FAILURE" => SesSendOutcome::transient("SES_TRANSIENT_FAILURE", None),
        "MESSAGE_REJECTED" => SesSendOutcome::rejected("SES_MESSAGE_REJECTED", Permanent),
        "MAIL_FROM_DOMAIN_NOT_VERIFIED" => SesSendOutcome::rejected("SES_MAIL_FROM_DOMAIN_NOT_VERIFIED", Permanent),
        "FAILED" => SesSendOutcome::rejected("SES_FAILED", Permanent),
        "INVALID_PARAMETER" => SesSendOutcome::rejected("SES_INVALID_PARAMETER", Permanent),
        "ACCOUNT_SUSPENDED" => SesSendOutcome::rejected("SES_ACCOUNT_SUSPENDED", NeedsAttention),
        "ACCOUNT_SENDING_PAUSED" | "CONFIGURATION_SET_SENDING_PAUSED" => {
            SesSendOutcome::rejected("SES_SENDING_PAUSED", NeedsAttention)
        }
        "ACCOUNT_DAILY_QUOTA_EXCEEDED" => SesSendOutcome::rejected("SES_DAILY_QUOTA_EXCEEDED", NeedsAttention),
        "TEMPLATE_NOT_FOUND" => SesSendOutcome::rejected("SES_TEMPLATE_NOT_FOUND", NeedsAttention),
        "CONFIGURATION_SET_NOT_FOUND" => SesSendOutcome::rejected("SES_CONFIGURATION_SET_NOT_FOUND", NeedsAttention),
        "INVALID_SENDING_POOL_NAME" => SesSendOutcome::rejected("SES_INVALID_SENDING_POOL_NAME", NeedsAttention),
        // A status added after this table: SES may have sent it.
        _ => SesSendOutcome::unknown("SES_ENTRY_STATUS_UNRECOGNIZED"),
    }
}

/// Maps an error answer from SES: its error code (`__type` / `x-amzn-ErrorType`, if any), HTTP
/// status and `Retry-After`.
pub(crate) fn service_error_outcome(
    code: Option<&str>,
    http_status: u16,
    retry_after: Option<Duration>,
) -> SesSendOutcome {
    use RejectClass::{NeedsAttention, Permanent};
    match code {
        Some("TooManyRequestsException" | "Throttling" | "ThrottlingException") => {
            return SesSendOutcome::transient("SES_THROTTLED", retry_after);
        }
        Some("MessageRejected") => return SesSendOutcome::rejected("SES_MESSAGE_REJECTED", Permanent),
        Some("MailFromDomainNotVerifiedException") => {
            return SesSendOutcome::rejected("SES_MAIL_FROM_DOMAIN_NOT_VERIFIED", Permanent);
        }
        Some("BadRequestException") => return SesSendOutcome::rejected("SES_BAD_REQUEST", Permanent),
        Some("SendingPausedException") => return SesSendOutcome::rejected("SES_SENDING_PAUSED", NeedsAttention),
        Some("AccountSuspendedException") => return SesSendOutcome::rejected("SES_ACCOUNT_SUSPENDED", NeedsAttention),
        Some("LimitExceededException") => return SesSendOutcome::rejected("SES_LIMIT_EXCEEDED", NeedsAttention),
        Some("NotFoundException") => return SesSendOutcome::rejected("SES_NOT_FOUND", NeedsAttention),
        Some(
            "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "AccessDeniedException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "MissingAuthenticationTokenException",
        ) => return SesSendOutcome::rejected("SES_AUTH", NeedsAttention),
        _ => {}
    }
    match http_status {
        429 => SesSendOutcome::transient("SES_THROTTLED", retry_after),
        504 => SesSendOutcome::unknown("SES_HTTP_504"),
        500..=599 => SesSendOutcome::Transient {
            reason: format!("SES_HTTP_{http_status}"),
            retry_after,
        },
        401 | 403 => SesSendOutcome::rejected("SES_AUTH", NeedsAttention),
        // A 2xx that the SDK could not read as a success: SES probably sent it.
        200..=299 => SesSendOutcome::unknown("SES_RESPONSE_UNREADABLE"),
        _ => SesSendOutcome::Rejected {
            code: format!("SES_HTTP_{http_status}"),
            class: Permanent,
        },
    }
}

/// Maps an SDK error of a send call; see the module docs of [`crate::ses`].
pub(crate) fn sdk_error_outcome<E>(error: &SdkError<E, HttpResponse>) -> SesSendOutcome
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            service_error_outcome(service.err().code(), raw.status().as_u16(), retry_after(raw))
        }
        SdkError::ResponseError(response) => {
            let raw = response.raw();
            let status = raw.status().as_u16();
            if status == 429 || (status >= 500 && status != 504) {
                service_error_outcome(None, status, retry_after(raw))
            } else {
                SesSendOutcome::unknown("SES_RESPONSE_UNREADABLE")
            }
        }
        SdkError::ConstructionFailure(_) => SesSendOutcome::transient("SES_REQUEST_BUILD", None),
        SdkError::TimeoutError(_) => SesSendOutcome::unknown("SES_TIMEOUT"),
        SdkError::DispatchFailure(dispatch) => {
            let Some(connector) = dispatch.as_connector_error() else {
                return SesSendOutcome::unknown("SES_CONNECTION_LOST");
            };
            if is_connect_error(connector) {
                SesSendOutcome::transient("SES_CONNECT", None)
            } else if connector.is_user() {
                // The request could not be turned into HTTP: it was never written.
                SesSendOutcome::transient("SES_REQUEST_BUILD", None)
            } else if connector.is_timeout() {
                SesSendOutcome::unknown("SES_TIMEOUT")
            } else {
                SesSendOutcome::unknown("SES_CONNECTION_LOST")
            }
        }
        // `SdkError` is non-exhaustive: an error kind added later may follow a sent request.
        _ => SesSendOutcome::unknown("SES_CONNECTION_LOST"),
    }
}

/// Whether the connector failed while connecting: hyper-util's client marks DNS, TCP connect,
/// TLS handshake and connect-timeout failures as connect errors, and nothing else.
fn is_connect_error(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(client_error) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
            return client_error.is_connect();
        }
        next = error.source();
    }
    false
}

/// `Retry-After` in its delay-seconds form, at most [`MAX_RETRY_AFTER`].
fn retry_after(response: &HttpResponse) -> Option<Duration> {
    let seconds: u64 = response.headers().get("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_statuses_map_one_by_one() {
        assert_eq!(
            bulk_status_outcome("SUCCESS", Some("0100")),
            SesSendOutcome::Accepted {
                message_id: "0100".into()
            }
        );
        assert_eq!(
            bulk_status_outcome("SUCCESS", None),
            SesSendOutcome::unknown("SES_RESPONSE_UNREADABLE")
        );
        assert_eq!(
            bulk_status_outcome("ACCOUNT_THROTTLED", None),
            SesSendOutcome::transient("SES_ACCOUNT_THROTTLED", None)
        );
        assert_eq!(
            bulk_status_outcome("TRANSIENT_FAILURE", None),
            SesSendOutcome::transient("SES_TRANSIENT_FAILURE", None)
        );
        for (status, code) in [
            ("MESSAGE_REJECTED", "SES_MESSAGE_REJECTED"),
            ("MAIL_FROM_DOMAIN_NOT_VERIFIED", "SES_MAIL_FROM_DOMAIN_NOT_VERIFIED"),
            ("FAILED", "SES_FAILED"),
        ] {
            assert_eq!(
                bulk_status_outcome(status, None),
                SesSendOutcome::rejected(code, RejectClass::Permanent)
            );
        }
        for status in [
            "ACCOUNT_SUSPENDED",
            "ACCOUNT_SENDING_PAUSED",
            "ACCOUNT_DAILY_QUOTA_EXCEEDED",
            "TEMPLATE_NOT_FOUND",
        ] {
            assert!(matches!(
                bulk_status_outcome(status, None),
                SesSendOutcome::Rejected {
                    class: RejectClass::NeedsAttention,
                    ..
                }
            ));
        }
        assert_eq!(
            bulk_status_outcome("SOMETHING_NEW", Some("x")),
            SesSendOutcome::unknown("SES_ENTRY_STATUS_UNRECOGNIZED")
        );
    }

    #[test]
    fn service_errors_follow_the_table() {
        let wait = Some(Duration::from_secs(2));
        assert_eq!(
            service_error_outcome(Some("TooManyRequestsException"), 429, wait),
            SesSendOutcome::transient("SES_THROTTLED", wait)
        );
        assert_eq!(
            service_error_outcome(Some("MessageRejected"), 400, None),
            SesSendOutcome::rejected("SES_MESSAGE_REJECTED", RejectClass::Permanent)
        );
        assert_eq!(
            service_error_outcome(Some("BadRequestException"), 400, None),
            SesSendOutcome::rejected("SES_BAD_REQUEST", RejectClass::Permanent)
        );
        for code in [
            "SendingPausedException",
            "AccountSuspendedException",
            "LimitExceededException",
            "UnrecognizedClientException",
        ] {
            assert!(matches!(
                service_error_outcome(Some(code), 400, None),
                SesSendOutcome::Rejected {
                    class: RejectClass::NeedsAttention,
                    ..
                }
            ));
        }
        assert_eq!(
            service_error_outcome(None, 503, None),
            SesSendOutcome::transient("SES_HTTP_503", None)
        );
        assert_eq!(
            service_error_outcome(None, 504, None),
            SesSendOutcome::unknown("SES_HTTP_504")
        );
        assert_eq!(
            service_error_outcome(Some("InternalFailure"), 500, None),
            SesSendOutcome::transient("SES_HTTP_500", None)
        );
        assert_eq!(
            service_error_outcome(None, 403, None),
            SesSendOutcome::rejected("SES_AUTH", RejectClass::NeedsAttention)
        );
        assert_eq!(
            service_error_outcome(Some("Whatever"), 409, None),
            SesSendOutcome::rejected("SES_HTTP_409", RejectClass::Permanent)
        );
    }
}
