//! `load`: drives EngageNinja Dispatch and measures it. The library holds what tests and the
//! `load` binary share: the [`simulator`], a stand-in for Twilio's Messages API, and
//! [`fixtures`], tenants it can serve.
//!
//! The binary's modules (`src/main.rs`): `run` (`load run`: the stack as processes, offered
//! traffic, a report), `http` (`load http` against a running stack), `scenario` (`load scenario
//! NAME`, the benchmarks in process), `simulate` (`load simulate`), `measure` (CPU and memory).

pub mod fixtures;
pub mod simulator;
