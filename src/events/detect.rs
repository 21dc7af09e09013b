//! From changes to outbox rows: the rules pick the events, the crosswalk finds each citizen, and
//! the outbox records them together with the source's mark, in one transaction.
//!
//! Pollers, the inbound endpoint and the graph's mutations all come through here, so a change is
//! handled the same way whichever way it arrived.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::Notify;

use super::outbox::{Mark, NewEvent, Outbox, OutboxError, Recorded};
use super::rules::{CitizenFrom, Rules};
use crate::identity::{AnyKey, CitizenId, Crosswalk, CrosswalkError, KeyKind};
use crate::metrics::Metrics;

/// Why changes could not be recorded (they will be seen again: the watermark did not move).
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The crosswalk could not be read to find a citizen.
    #[error(transparent)]
    Crosswalk(#[from] CrosswalkError),
}

/// Turns changes into recorded events.
#[derive(Debug, Clone)]
pub struct Detector {
    rules: Arc<Rules>,
    outbox: Outbox,
    crosswalk: Crosswalk,
    recorded: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Detector {
    /// A detector recording into `outbox`.
    pub fn new(
        rules: Arc<Rules>,
        outbox: Outbox,
        crosswalk: Crosswalk,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            rules,
            outbox,
            crosswalk,
            recorded: Arc::new(Notify::new()),
            metrics,
        }
    }

    /// The rules it applies.
    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    /// The outbox it records into.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Notified after every recording with new events, so this instance's delivery workers
    /// start at once instead of at their next poll.
    pub fn recorded(&self) -> Arc<Notify> {
        Arc::clone(&self.recorded)
    }

    /// Applies the rules of `source` to `changes` and records the events with `mark`. A change
    /// whose agency key is in no identity link is about nobody the gateway knows, and is skipped.
    pub async fn record(
        &self,
        source: &str,
        mark: Mark<'_>,
        changes: &[Value],
    ) -> Result<Recorded, DetectError> {
        let today = Utc::now().date_naive();
        let detections: Vec<_> = changes
            .iter()
            .flat_map(|change| self.rules.detect(source, change, today))
            .collect();
        // One crosswalk query per key kind for the whole batch, not one per change.
        let mut keys: HashMap<KeyKind, Vec<&str>> = HashMap::new();
        for detection in &detections {
            if let (CitizenFrom::Key { kind, .. }, value) = &detection.citizen {
                keys.entry(*kind).or_default().push(value);
            }
        }
        let mut citizens: HashMap<KeyKind, HashMap<String, CitizenId>> = HashMap::new();
        for (kind, values) in keys {
            let valid: Vec<&str> = values
                .into_iter()
                .filter(|value| AnyKey::parse(kind, value).is_ok())
                .collect();
            citizens.insert(kind, self.crosswalk.citizens_of(kind, &valid).await?);
        }
        let mut events = Vec::new();
        let mut unknown = 0usize;
        for detection in detections {
            let (from, value) = &detection.citizen;
            let citizen = match from {
                CitizenFrom::Field(_) => CitizenId::parse(value).ok(),
                CitizenFrom::Key { kind, .. } => citizens
                    .get(kind)
                    .and_then(|found| found.get(value))
                    .cloned(),
            };
            let Some(citizen) = citizen else {
                unknown += 1;
                continue;
            };
            events.push(NewEvent {
                event_type: detection.event_type,
                category: detection.category,
                citizen_id: citizen.as_str().to_string(),
                subject: detection.subject,
                // One event per citizen: a birth reported for both parents is two events.
                idempotency_key: format!("{}@{}", detection.idempotency_key, citizen.as_str()),
                source: source.to_string(),
                occurred_at: detection.occurred_at.unwrap_or_else(Utc::now),
                audience: None,
            });
        }
        if unknown > 0 {
            tracing::info!(
                source,
                skipped = unknown,
                "Changes about citizens with no identity link were skipped."
            );
        }
        let recorded = self.outbox.record(source, mark, events).await?;
        if let Recorded::Events(events) = &recorded
            && !events.is_empty()
        {
            for event in events {
                self.metrics.event_recorded(&event.event_type);
            }
            tracing::info!(source, events = events.len(), "Life events recorded.");
            self.recorded.notify_one();
        }
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::events::rules::Rule;
    use crate::store::testing::TestStore;

    #[tokio::test]
    async fn a_batch_of_changes_finds_its_citizens_by_agency_key_in_one_pass() {
        let db = TestStore::sqlite("detect.db").await;
        let crosswalk = Crosswalk::new(db.store.clone());
        for (citizen, claimant) in [("C0000001", "UI-1"), ("C0000002", "UI-2")] {
            let key = AnyKey::parse(KeyKind::ClaimantId, claimant).unwrap();
            crosswalk
                .link(&CitizenId::parse(citizen).unwrap(), &key, "test")
                .await
                .unwrap();
        }
        let rules = Rules {
            sources: BTreeMap::new(),
            rules: vec![Rule {
                event_type: "JobLost".into(),
                source: "ui-claims".into(),
                category: "ui.claims".into(),
                when: Default::default(),
                citizen: CitizenFrom::Key {
                    field: "claimant_id".into(),
                    kind: KeyKind::ClaimantId,
                },
                subject: BTreeMap::from([("claim".to_string(), "claim_id".to_string())]),
                key: vec!["claim".into()],
                occurred_at: None,
            }],
        };
        let detector = Detector::new(
            Arc::new(rules),
            Outbox::new(db.store.clone()),
            crosswalk,
            Arc::new(Metrics::new()),
        );
        let changes = [
            json!({"claimant_id": "UI-1", "claim_id": "A"}),
            json!({"claimant_id": "UI-2", "claim_id": "B"}),
            json!({"claimant_id": "UI-1", "claim_id": "C"}),
            json!({"claimant_id": "UI-9", "claim_id": "D"}),
            json!({"claimant_id": "not a key!", "claim_id": "E"}),
        ];
        let Recorded::Events(events) = detector
            .record("ui-claims", Mark::Nothing, &changes)
            .await
            .unwrap()
        else {
            panic!("events expected");
        };
        let found: Vec<(&str, &str)> = events
            .iter()
            .map(|e| {
                (
                    e.citizen_id.as_str(),
                    e.subject["claim"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [("C0000001", "A"), ("C0000002", "B"), ("C0000001", "C")],
            "unlinked and malformed keys are nobody the gateway knows"
        );
        db.close().await;
    }
}
