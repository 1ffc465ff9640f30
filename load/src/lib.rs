//! `load`: drives EngageNinja Dispatch and measures it. The library holds what tests and the
//! `load` binary share: the [`simulator`], a stand-in for Twilio's Messages API, and
//! [`fixtures`], tenants it can serve.

pub mod fixtures;
pub mod simulator;
