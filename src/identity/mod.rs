//! The identity crosswalk: the canonical citizen id ↔ each agency's own key for that person.
//!
//! Agencies never share one number for a person. The gateway keeps the links in its own store,
//! and a connector only says which kind of key it needs (`identifier = "tin"`); the graph looks
//! the key up for the citizen at hand. No link means no call: the field is `null`.

mod crosswalk;
mod keys;

pub use crosswalk::{Crosswalk, CrosswalkError, Link, Links};
pub use keys::{
    AgencyKey, AnyKey, CaseNumber, CitizenId, ClaimantId, KeyError, KeyKind, LicenseNumber, Tin,
};
