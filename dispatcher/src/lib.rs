//! The EngageNinja Dispatch dispatcher: consumes the message log, admits, paces and sends
//! messages fairly between tenants, retries what may be retried, and records every status.
//! [`service::Service`] assembles it over a process's opened backends; the `engageninja`
//! package runs it alone or beside the admin API.
//!
//! Layout, in the order a message meets it:
//! - [`intake`]: the consumer loop: reads records, dead-letters malformed ones, moves misplaced
//!   ones, claims (with [`claims`]), admits, hands admitted messages to the engine, records
//!   outcomes, commits offsets (`offsets`), pauses partitions that hold too much.
//! - [`admission`]: why a message may not go (refusal codes), the per-tenant directory of
//!   routes ([`route`]), the quota book.
//! - [`engine`]: the one task that queues, paces ([`pacing`]), shares senders fairly between
//!   tenants, calls providers and retries (`retry`).
//! - [`provider`]: the seam where a message leaves: the demo provider, Twilio, SES.
//! - [`status`]: the status writer, batching every status change into the store.
//! - [`reconcile`]: the periodic job that asks providers about messages stuck in `sent` or
//!   `unknown`.
//! - [`service`]: all of the above assembled over opened backends.
//! - `metrics`: the catalogue of the dispatcher's metrics.

pub mod admission;
pub mod claims;
pub mod engine;
pub mod intake;
mod metrics;
mod offsets;
pub mod pacing;
pub mod provider;
pub mod reconcile;
mod retry;
pub mod route;
pub mod service;
pub mod status;
