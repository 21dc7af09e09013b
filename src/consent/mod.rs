//! Consent: what each citizen lets an agency read, and the signed receipts that prove it.
//!
//! - [`ledger`]: consents in the gateway's store: grant, revoke, pause, resume, and the lookups
//!   the policy makes per request (`live`) and just before personal data leaves (`still_live`).
//! - [`policy`]: who may read a field: the decision per field, caller and citizen.
//! - [`receipt`]: the compact JWS a citizen keeps for each change, shaped after the Kantara
//!   Consent Receipt, checked offline by `civicgraph consent verify`.
//! - [`broadcast`]: revokes and pauses announced to every instance on one PostgreSQL
//!   (`LISTEN`/`NOTIFY`), so each drops the agency's cached reads at once.

pub mod broadcast;
pub mod ledger;
pub mod policy;
pub mod receipt;

pub use ledger::{
    Consent, ConsentEvent, ConsentLedger, ConsentState, ConsentStatus, LedgerError, NewConsent,
};
pub use receipt::{RECEIPT_TYPE, ReceiptAction, ReceiptClaims};
