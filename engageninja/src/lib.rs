//! EngageNinja Dispatch's composition root: the one place where the services are put together
//! into processes. The dispatcher and the admin API know nothing of each other; they meet
//! through the log and the store, and, in the all-in-one process, through the status sink
//! (`common::store::StatusSink`) that the dispatcher's status writer fills for the API's
//! webhooks.
//!
//! - [`stack`]: a process in one of its roles ([`stack::Role`]), built from settings and stopped
//!   in order.
//! - [`testing`]: a stack in the one test harness ([`common::testing::TestApp`]):
//!   `testing::spawn(settings, role)`.
//! - The binaries: `engageninja` (both services, embedded log and store, demo tenant),
//!   `dispatcher` and `admin-api` (each service alone, for the scaled deployment).

pub mod stack;
pub mod testing;
