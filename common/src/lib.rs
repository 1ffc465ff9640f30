//! EngageNinja Dispatch's shared core: the domain types every service parses once at the edge,
//! typed configuration, telemetry, and the two seams the services run on: the partitioned
//! message [`log`] and the [`store`].
//!
//! Layout:
//! - Domain types, parsed once at the edge: [`ids`], [`address`], [`channel`], [`envelope`],
//!   [`status`] (the forward-only rule), [`segments`], [`rules`] (the shape of every string
//!   the API takes).
//! - The seams: [`log`] (embedded and Kafka), [`store`] (SQLite and Cassandra/ScyllaDB, and the
//!   status sink), [`backends`] (opens the configured pair).
//! - Providers: the seam every one implements ([`provider`]), then one folder per provider
//!   holding everything about it: [`twilio`] (client, request building, error table, status
//!   mapping, onboarding operations, webhook signatures and callbacks, its [`provider::Provider`]),
//!   [`ses`] (the same, and the SNS signatures its events come with); [`credentials`] (the key
//!   ring and sealed credentials), [`readiness`] (whether a live tenant's channel can send),
//!   [`unsubscribe`] (the one-click unsubscribe links of marketing email).
//! - Running a process: [`config`], [`telemetry`], [`process`], [`http`]; and, with the
//!   `testing` feature, running one in a test (`testing`: the one harness every suite uses).

pub mod address;
pub mod backends;
pub mod channel;
pub mod config;
pub mod credentials;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod log;
mod private_fs;
pub mod process;
pub mod provider;
pub mod quiet_hours;
pub mod readiness;
pub mod rules;
pub mod segments;
pub mod ses;
pub mod status;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod twilio;
pub mod unsubscribe;

pub use address::{EmailAddress, PhoneNumber};
pub use channel::{Channel, Priority, Recipient, Sender};
pub use envelope::{Content, EmailParts, Envelope, EnvelopeError};
pub use ids::{CampaignId, ContactId, MessageId, TenantId};
pub use status::MessageStatus;
