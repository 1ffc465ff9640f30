//! The providers the dispatcher sends through: the seam itself ([`common::provider`]) with
//! [`demo::DemoProvider`] (simulated end to end, for demo tenants) and the store-backed
//! credential sources ([`credentials`]) of the real ones, whose implementations live in their
//! own folders of `common` ([`common::twilio::provider`], [`common::ses::provider`]).

pub mod credentials;
pub mod demo;
