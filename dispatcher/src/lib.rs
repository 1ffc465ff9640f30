//! The EngageNinja Dispatch dispatcher: consumes the message log, admits, paces and sends
//! messages fairly between tenants, retries what may be retried, and records every status.
//! [`stack::Stack`] runs it together with the admin API over the embedded log and store: the
//! all-in-one process.

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
pub mod stack;
pub mod status;
