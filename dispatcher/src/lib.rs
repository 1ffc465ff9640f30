//! The EngageNinja Dispatch dispatcher: consumes the message log, admits, paces and sends
//! messages fairly between tenants, retries what may be retried, and records every status.
//! [`service::Service`] assembles it over a process's opened backends; the `engageninja`
//! package runs it alone or beside the admin API.

pub mod admission;
pub mod claims;
pub mod engine;
pub mod intake;
pub mod metrics;
pub mod offsets;
pub mod pacing;
pub mod provider;
pub mod reconcile;
pub mod retry;
pub mod route;
pub mod service;
pub mod status;
