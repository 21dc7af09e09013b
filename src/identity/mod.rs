//! The identity crosswalk: the canonical citizen id ↔ each agency's own key for that person.

mod keys;

pub use keys::{
    AgencyKey, AnyKey, CaseNumber, CitizenId, ClaimantId, KeyError, KeyKind, LicenseNumber, Tin,
};
