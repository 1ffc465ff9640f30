//! Providers' webhooks, one file per provider: [`twilio`] (message status callbacks, inbound
//! messages) and [`ses`] (SES events through SNS). Each verifies its request before anything is
//! read or looked up; the protocol pieces (signatures, forms, status mapping) live in the
//! provider's folder of `common`.

pub(crate) mod ses;
pub(crate) mod twilio;

/// Counts one webhook request by where it came from and what became of it.
pub(crate) fn count(source: &'static str, outcome: &'static str) {
    metrics::counter!("admin_webhooks_total", "source" => source, "outcome" => outcome).increment(1);
}
