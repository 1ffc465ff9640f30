//! The EngageNinja Dispatch dispatcher: consumes the message log, admits and sends messages,
//! and records their status. [`stack::Stack`] runs it together with the admin API over the
//! embedded log and store: the all-in-one process.

pub mod pipeline;
pub mod provider;
pub mod stack;
pub mod status;
