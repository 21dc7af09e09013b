//! Life events: changes in agency backends become events (a birth, a job loss, a move) that
//! reach subscribers at least once, in order per citizen, and trigger proactive services.
//!
//! # Layout
//!
//! Data flows one way, down this list:
//!
//! - [`rules`]: `schema/life-events.toml` — the change sources, and which change is which
//!   event, about which citizen, with which (thin) payload.
//! - detection: pollers with a stored watermark, inbound signed webhooks
//!   (`POST /events/{connector}`), and the gateway's own mutations, all ending in
//! - [`outbox`]: the events, written in the same transaction as the watermark, and one
//!   delivery row per subscriber, claimed by workers with a lease.
//! - delivery: Standard Webhooks ([`signature`]) and NATS JetStream.

pub mod condition;
pub mod deliver;
pub mod detect;
pub mod egress;
pub mod feed;
pub mod inbound;
pub mod nats;
pub mod outbox;
pub mod poll;
pub mod rules;
pub mod services;
pub mod signature;

pub use outbox::{
    Attempt, Claimed, Delivery, DeliveryState, LifeEvent, Mark, NewEvent, NewSubscriber, Outbox,
    OutboxError, Recorded, Subscriber, SubscriberKind,
};

use chrono::Utc;

pub use detect::Detector;

use crate::auth::Principal;
use crate::config::TrustConfig;
use crate::consent::{ConsentLedger, LedgerError};
use crate::identity::CitizenId;

/// The agency whose data an event category is: the part before the first `.` when it names a
/// configured agency with a legal basis (`ui.claims` → `ui`). It receives its own events on that
/// basis, as it reads its own fields; any other agency needs the citizen's consent.
pub fn category_owner<'a>(trust: &TrustConfig, category: &'a str) -> Option<&'a str> {
    let prefix = category.split('.').next()?;
    trust
        .agencies
        .get(prefix)
        .filter(|agency| agency.legal_basis.is_some())
        .map(|_| prefix)
}

/// Whether `agency`, acting for `purpose`, may receive `event`: an event addressed to one
/// agency goes to that agency only; otherwise the category's owner receives it, and any other
/// agency only with the citizen's live consent covering the category for that purpose.
pub async fn agency_may_receive(
    ledger: &ConsentLedger,
    trust: &TrustConfig,
    agency: &str,
    purpose: &str,
    event: &LifeEvent,
) -> Result<bool, LedgerError> {
    if let Some(audience) = &event.audience {
        return Ok(audience == agency);
    }
    if category_owner(trust, &event.category) == Some(agency) {
        return Ok(true);
    }
    let Ok(citizen) = CitizenId::parse(&event.citizen_id) else {
        return Ok(false);
    };
    let live = ledger.live(&citizen, agency, purpose, Utc::now()).await?;
    Ok(live.iter().any(|consent| consent.covers(&event.category)))
}

/// Whether a live feed's caller sees `event`: an operator sees every event, a citizen their
/// own, an agency what [`agency_may_receive`] allows for the request's purpose; nobody else
/// any. A ledger that cannot be read hides the event (it fails closed).
pub async fn visible_to(
    ledger: Option<&ConsentLedger>,
    trust: &TrustConfig,
    principal: &Principal,
    purpose: Option<&str>,
    event: &LifeEvent,
) -> bool {
    match principal {
        Principal::Operator { .. } => true,
        Principal::Citizen(id) => id.as_str() == event.citizen_id,
        Principal::Agency(client) => match (ledger, purpose) {
            (Some(ledger), Some(purpose)) => {
                agency_may_receive(ledger, trust, &client.agency, purpose, event)
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        },
        Principal::Anonymous => false,
    }
}

/// What the graph and the HTTP layer reach events through: recording (mutation sources,
/// inbound webhooks) and subscriber management.
#[derive(Debug, Clone)]
pub struct EventServices {
    /// Applies the rules and records into the outbox.
    pub detector: Detector,
    /// Whether webhook endpoints may be on loopback or private networks (`[events]`).
    pub allow_private_endpoints: bool,
}
