//! EngageNinja Dispatch's shared core: the domain types every service parses once at the edge,
//! typed configuration, telemetry, and the two seams the services run on: the partitioned
//! message [`log`] and the [`store`].

pub mod address;
pub mod backends;
pub mod channel;
pub mod config;
pub mod credentials;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod log;
pub mod private_fs;
pub mod process;
pub mod readiness;
pub mod rules;
pub mod segments;
pub mod ses;
pub mod signature;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod twilio;

pub use address::{EmailAddress, PhoneNumber};
pub use channel::{Channel, Priority, Recipient, Sender};
pub use envelope::{Content, Envelope, EnvelopeError};
pub use ids::{CampaignId, ContactId, MessageId, TenantId};
pub use status::MessageStatus;
