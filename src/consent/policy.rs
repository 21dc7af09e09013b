//! Who may read a field: the decision for one field, one caller, one citizen.
//!
//! The rules, in the order they apply to a field holding personal data:
//!
//! 1. anonymous callers read public fields only;
//! 2. a citizen reads their own record, never another's;
//! 3. an agency client needs the field's scopes first;
//! 4. the agency that owns the data reads it on the legal basis declared for it in config;
//! 5. any other agency also needs the citizen's live consent for this category and for the
//!    purpose the request states.
//!
//! Operators run the gateway; they do not read citizens' personal data. The decision is a pure
//! function of its inputs: the caller states them, the ledger supplies the live consents, and
//! nothing here caches anything, so a decision can never be staler than the ledger read.

use std::collections::BTreeSet;

use crate::auth::Principal;
use crate::config::TrustConfig;
use crate::identity::CitizenId;

/// What a field declares in the SDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPolicy {
    /// `@public`: anyone, signed in or not.
    Public,
    /// `@requiresScopes` alone: not personal data, but not for everyone either (e.g. looking a
    /// citizen up by id). Agencies need the scopes; operators may; citizens use `me`.
    Restricted {
        /// Scopes an agency client needs.
        scopes: ScopeRule,
    },
    /// `@consent(category:)`: personal data about one citizen.
    Personal {
        /// The data category, a code from `[trust.categories]`.
        category: String,
        /// `@owner(agency:)`: the agency whose data it is.
        owner: Option<String>,
        /// Scopes an agency client needs (`@requiresScopes`), before anything else.
        scopes: ScopeRule,
    },
}

/// `@requiresScopes(scopes: [["a", "b"], ["c"]])`: the caller needs every scope of at least
/// one inner set. No sets at all means no scope is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRule(pub Vec<BTreeSet<String>>);

impl ScopeRule {
    /// Whether `held` satisfies the rule.
    pub fn allows(&self, held: &BTreeSet<String>) -> bool {
        self.0.is_empty() || self.0.iter().any(|set| set.is_subset(held))
    }

    /// The rule in words for an error message: `` `a` and `b`, or `c` ``.
    pub fn describe(&self) -> String {
        let sets: Vec<String> = self
            .0
            .iter()
            .map(|set| {
                let names: Vec<String> = set.iter().map(|s| format!("`{s}`")).collect();
                names.join(" and ")
            })
            .collect();
        sets.join(", or ")
    }
}

/// A consent the ledger says is live for this citizen, grantee and purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConsent {
    /// Its handle, recorded in the audit trail.
    pub handle: String,
    /// The categories it covers.
    pub categories: BTreeSet<String>,
}

/// Why a read is allowed; what the audit trail records as its basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The field is public.
    Public,
    /// A restricted (non-personal) field, allowed by the caller's role or scopes.
    Role,
    /// The citizen reads their own record.
    OwnRecord,
    /// The owning agency, under the law named.
    LegalBasis(String),
    /// The citizen's consent with this handle.
    Consent(String),
}

impl Basis {
    /// How the audit trail writes it.
    pub fn audit_text(&self) -> String {
        match self {
            Self::Public => "public".to_string(),
            Self::Role => "role".to_string(),
            Self::OwnRecord => "self".to_string(),
            Self::LegalBasis(text) => format!("legal basis: {text}"),
            Self::Consent(handle) => format!("consent {handle}"),
        }
    }
}

/// Why a read is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// `FORBIDDEN`: this caller may not read this field at all.
    Forbidden(String),
    /// `CONSENT_REQUIRED`: the agency may, once the citizen consents to this category for this
    /// purpose.
    ConsentRequired {
        /// The category consent is needed for.
        category: String,
        /// The purpose the request stated.
        purpose: String,
    },
}

/// The outcome for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Read it, on this basis.
    Allowed(Basis),
    /// Do not: the field is `null` with this error, and its backend is not called.
    Denied(Denial),
}

/// A decision that may still need the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Decided without the ledger.
    Decided(Access),
    /// Only a live consent of the subject for `category` and `purpose` can allow it: ask the
    /// ledger, then call [`with_consents`].
    NeedsConsent {
        /// The category.
        category: String,
        /// The purpose stated by the request.
        purpose: String,
    },
}

/// Everything about the request the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Who is asking.
    pub principal: &'a Principal,
    /// The purpose the request stated (agencies only; checked against the catalogue and the
    /// token before the graph runs).
    pub purpose: Option<&'a str>,
}

/// The denial that holds whoever the field turns out to be about and whatever the ledger
/// says: the caller's kind and scopes alone refuse it. `None` when only the citizen the data is
/// about, or their consents, can decide. `on_denied = "reject"` uses it to refuse an operation
/// before anything runs.
pub fn certain_denial(policy: &FieldPolicy, principal: &Principal) -> Option<Denial> {
    let forbidden = |reason: &str| Some(Denial::Forbidden(reason.to_string()));
    let missing = |scopes: &ScopeRule| {
        Some(Denial::Forbidden(format!(
            "This field needs the scope {}.",
            scopes.describe()
        )))
    };
    match (policy, principal) {
        (FieldPolicy::Public, _) => None,
        (FieldPolicy::Restricted { .. }, Principal::Anonymous) => {
            forbidden("This field needs a signed-in caller.")
        }
        (FieldPolicy::Restricted { .. }, Principal::Citizen(_)) => {
            forbidden("Citizens read their own record through `me`, not by id.")
        }
        (FieldPolicy::Restricted { .. }, Principal::Operator { .. }) => None,
        (FieldPolicy::Personal { .. }, Principal::Anonymous) => {
            forbidden("Personal data needs a signed-in caller.")
        }
        (FieldPolicy::Personal { .. }, Principal::Operator { .. }) => {
            forbidden("Operators run the gateway; they do not read citizens' personal data.")
        }
        (FieldPolicy::Personal { .. }, Principal::Citizen(_)) => None,
        (
            FieldPolicy::Restricted { scopes } | FieldPolicy::Personal { scopes, .. },
            Principal::Agency(client),
        ) => (!scopes.allows(&client.scopes))
            .then(|| missing(scopes))
            .flatten(),
    }
}

/// Decides what can be decided without the ledger. `subject` is the citizen whose data the
/// field holds (`None` when the gateway cannot tell, which only ever denies).
pub fn decide(
    policy: &FieldPolicy,
    caller: Caller<'_>,
    subject: Option<&CitizenId>,
    trust: &TrustConfig,
) -> Pending {
    if let Some(denial) = certain_denial(policy, caller.principal) {
        return Pending::Decided(Access::Denied(denial));
    }
    let forbidden =
        |reason: &str| Pending::Decided(Access::Denied(Denial::Forbidden(reason.into())));
    let FieldPolicy::Personal {
        category, owner, ..
    } = policy
    else {
        // Public fields, and restricted ones the caller's role and scopes already allow.
        let basis = if matches!(policy, FieldPolicy::Public) {
            Basis::Public
        } else {
            Basis::Role
        };
        return Pending::Decided(Access::Allowed(basis));
    };
    match caller.principal {
        Principal::Citizen(me) => match subject {
            Some(subject) if subject == me => Pending::Decided(Access::Allowed(Basis::OwnRecord)),
            _ => forbidden("A citizen may read only their own record."),
        },
        Principal::Agency(client) => {
            if subject.is_none() {
                return forbidden("The gateway cannot tell whose data this is.");
            }
            if owner.as_deref() == Some(client.agency.as_str())
                && let Some(basis) = trust
                    .agencies
                    .get(&client.agency)
                    .and_then(|a| a.legal_basis.as_ref())
            {
                return Pending::Decided(Access::Allowed(Basis::LegalBasis(
                    basis.get_ref().clone(),
                )));
            }
            match caller.purpose {
                Some(purpose) => Pending::NeedsConsent {
                    category: category.clone(),
                    purpose: purpose.to_string(),
                },
                None => forbidden("Agency requests must state a purpose."),
            }
        }
        // `certain_denial` refused these already.
        Principal::Anonymous | Principal::Operator { .. } => {
            forbidden("Personal data needs a signed-in caller.")
        }
    }
}

/// Finishes a [`Pending::NeedsConsent`] decision with the subject's live consents to the
/// calling agency for the stated purpose.
pub fn with_consents(category: &str, purpose: &str, live: &[LiveConsent]) -> Access {
    match live.iter().find(|c| c.categories.contains(category)) {
        Some(consent) => Access::Allowed(Basis::Consent(consent.handle.clone())),
        None => Access::Denied(Denial::ConsentRequired {
            category: category.to_string(),
            purpose: purpose.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AgencyClient;

    fn trust() -> TrustConfig {
        toml::from_str(
            r#"
            [agencies.dmv]
            name = "the Motor Vehicle Agency"
            legal_basis = "Motor Vehicle Act §12"
            [agencies.tax]
            name = "the Tax Agency"
            "#,
        )
        .unwrap()
    }

    fn agency(agency: &str, scopes: &[&str]) -> Principal {
        Principal::Agency(AgencyClient {
            client_id: format!("{agency}-client"),
            agency: agency.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            purposes: BTreeSet::new(),
            purpose: None,
        })
    }

    fn license() -> FieldPolicy {
        FieldPolicy::Personal {
            category: "dmv.license".into(),
            owner: Some("dmv".into()),
            scopes: ScopeRule(vec![BTreeSet::from(["dmv:read".to_string()])]),
        }
    }

    fn citizen(id: &str) -> CitizenId {
        CitizenId::parse(id).unwrap()
    }

    #[test]
    fn scope_rules_need_every_scope_of_one_set() {
        let rule = ScopeRule(vec![
            BTreeSet::from(["a".to_string(), "b".to_string()]),
            BTreeSet::from(["c".to_string()]),
        ]);
        let held = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(rule.allows(&held(&["a", "b"])));
        assert!(rule.allows(&held(&["c"])));
        assert!(!rule.allows(&held(&["a"])));
        assert!(ScopeRule::default().allows(&held(&[])));
        assert_eq!(rule.describe(), "`a` and `b`, or `c`");
    }

    #[test]
    fn the_owner_reads_on_its_legal_basis_and_others_need_consent() {
        let trust = trust();
        let subject = citizen("C0000001");
        let dmv = agency("dmv", &["dmv:read"]);
        let tax = agency("tax", &["dmv:read"]);
        let caller = |p| Caller {
            principal: p,
            purpose: Some("tax-assessment"),
        };
        assert_eq!(
            decide(&license(), caller(&dmv), Some(&subject), &trust),
            Pending::Decided(Access::Allowed(Basis::LegalBasis(
                "Motor Vehicle Act §12".into()
            )))
        );
        assert_eq!(
            decide(&license(), caller(&tax), Some(&subject), &trust),
            Pending::NeedsConsent {
                category: "dmv.license".into(),
                purpose: "tax-assessment".into()
            }
        );
        let live = [LiveConsent {
            handle: "cns_1".into(),
            categories: BTreeSet::from(["dmv.license".to_string()]),
        }];
        assert_eq!(
            with_consents("dmv.license", "tax-assessment", &live),
            Access::Allowed(Basis::Consent("cns_1".into()))
        );
        assert_eq!(
            with_consents("dmv.vehicles", "tax-assessment", &live),
            Access::Denied(Denial::ConsentRequired {
                category: "dmv.vehicles".into(),
                purpose: "tax-assessment".into()
            })
        );
    }

    #[test]
    fn an_owner_without_a_declared_legal_basis_needs_consent_too() {
        let trust = trust();
        let tax_field = FieldPolicy::Personal {
            category: "tax.account".into(),
            owner: Some("tax".into()),
            scopes: ScopeRule::default(),
        };
        let tax = agency("tax", &[]);
        let caller = Caller {
            principal: &tax,
            purpose: Some("tax-assessment"),
        };
        assert!(matches!(
            decide(&tax_field, caller, Some(&citizen("C0000001")), &trust),
            Pending::NeedsConsent { .. }
        ));
    }

    #[test]
    fn scopes_come_before_ownership_and_consent() {
        let trust = trust();
        let dmv = agency("dmv", &["tax:read"]);
        let caller = Caller {
            principal: &dmv,
            purpose: Some("p"),
        };
        assert!(matches!(
            decide(&license(), caller, Some(&citizen("C0000001")), &trust),
            Pending::Decided(Access::Denied(Denial::Forbidden(_)))
        ));
    }

    #[test]
    fn certain_denials_need_neither_the_subject_nor_the_ledger() {
        let citizen = Principal::Citizen(citizen("C0000001"));
        let operator = Principal::Operator { name: "ops".into() };
        let lookup = FieldPolicy::Restricted {
            scopes: ScopeRule(vec![BTreeSet::from(["citizen:lookup".to_string()])]),
        };
        // Only the caller's kind and scopes: known before anything runs.
        assert!(certain_denial(&license(), &Principal::Anonymous).is_some());
        assert!(certain_denial(&license(), &operator).is_some());
        assert!(certain_denial(&license(), &agency("tax", &["tax:read"])).is_some());
        assert!(certain_denial(&lookup, &citizen).is_some());
        // Whose data it is, or a consent, decides these: not certain.
        assert_eq!(certain_denial(&license(), &citizen), None);
        assert_eq!(
            certain_denial(&license(), &agency("tax", &["dmv:read"])),
            None
        );
        assert_eq!(certain_denial(&lookup, &operator), None);
        assert_eq!(
            certain_denial(&FieldPolicy::Public, &Principal::Anonymous),
            None
        );
    }

    #[test]
    fn citizens_read_only_their_own_record_and_operators_none() {
        let trust = trust();
        let me = Principal::Citizen(citizen("C0000001"));
        let caller = Caller {
            principal: &me,
            purpose: None,
        };
        assert_eq!(
            decide(&license(), caller, Some(&citizen("C0000001")), &trust),
            Pending::Decided(Access::Allowed(Basis::OwnRecord))
        );
        for subject in [Some(citizen("C0000002")), None] {
            assert!(matches!(
                decide(&license(), caller, subject.as_ref(), &trust),
                Pending::Decided(Access::Denied(Denial::Forbidden(_)))
            ));
        }
        for principal in [
            Principal::Anonymous,
            Principal::Operator { name: "ops".into() },
        ] {
            let caller = Caller {
                principal: &principal,
                purpose: None,
            };
            assert!(matches!(
                decide(&license(), caller, Some(&citizen("C0000001")), &trust),
                Pending::Decided(Access::Denied(Denial::Forbidden(_)))
            ));
            assert_eq!(
                decide(&FieldPolicy::Public, caller, None, &trust),
                Pending::Decided(Access::Allowed(Basis::Public))
            );
        }
    }
}
