//! `load`: drives EngageNinja Dispatch and measures it. The library holds what tests and the
//! `load` binary share: the [`simulator`], a stand-in for Twilio's Messages API.

pub mod simulator;
