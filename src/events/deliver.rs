//! Delivery workers: claim due deliveries from the outbox, send them, record the outcome.
//!
//! Each gateway instance runs one dispatcher. It claims deliveries with a lease, so instances
//! sharing a PostgreSQL outbox never send one delivery at the same time, and a crashed
//! instance's claims are taken again once their lease runs out (with the same `webhook-id`).
//! A subscriber with `max_in_flight_per_subscriber` deliveries in flight is skipped by the next
//! claims, so a slow receiver waits on itself and nobody else. Before a webhook leaves, the
//! receiving agency's right to the event is checked again against the consent ledger: consent
//! withdrawn after the event was recorded still stops it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::egress::Egress;
use super::nats::NatsPublisher;
use super::outbox::{Attempt, Claimed, Outbox, SubscriberKind};
use super::signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSecret};
use crate::config::{EventsConfig, TrustConfig};
use crate::consent::ConsentLedger;
use crate::metrics::Metrics;

/// The most deliveries one instance has in flight at once.
const MAX_IN_FLIGHT: usize = 64;

/// How much longer than the delivery timeout a claim's lease lasts at least. An attempt
/// (consent check, POST, answer) must end while its claim is held: once the lease runs out,
/// another worker may claim the delivery and send the same event while this one still is.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// What a dispatcher needs.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outbox: Outbox,
    ledger: ConsentLedger,
    trust: Arc<TrustConfig>,
    egress: Egress,
    nats: Option<NatsPublisher>,
    settings: EventsConfig,
    owner: String,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    in_flight: Mutex<HashMap<String, usize>>,
}

/// How one attempt ended, before it is written.
#[derive(Debug)]
enum Sent {
    Delivered(Option<u16>),
    Filtered,
    /// Failed; retried on the schedule unless `final` (410, a blocked endpoint).
    Failed {
        status: Option<u16>,
        error: String,
        disable: Option<&'static str>,
    },
}

impl Dispatcher {
    /// A dispatcher claiming as `owner` (this instance's id), woken early by `wake`.
    #[allow(clippy::too_many_arguments, reason = "assembled once, at start-up")]
    pub fn new(
        outbox: Outbox,
        ledger: ConsentLedger,
        trust: Arc<TrustConfig>,
        egress: Egress,
        nats: Option<NatsPublisher>,
        settings: EventsConfig,
        owner: String,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                outbox,
                ledger,
                trust,
                egress,
                nats,
                settings,
                owner,
                metrics,
                wake,
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Runs until `stop` turns true; deliveries still in flight then get a moment to finish,
    /// and any cut short are sent again after their lease (at least once, same id).
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let inner = self.inner;
            let mut tasks = JoinSet::new();
            let poll = Duration::from_millis(inner.settings.dispatch_poll_ms.max(10));
            let lease = inner.lease();
            loop {
                while tasks.try_join_next().is_some() {}
                let room = MAX_IN_FLIGHT.saturating_sub(tasks.len());
                let mut full = false;
                if room > 0 {
                    let in_flight = inner.in_flight();
                    // Taken before the claim, so the deadline is never later than the lease.
                    let deadline =
                        tokio::time::Instant::now() + lease.saturating_sub(LEASE_MARGIN / 2);
                    match inner
                        .outbox
                        .claim_capped(
                            &inner.owner,
                            lease,
                            room as i64,
                            inner.settings.max_in_flight_per_subscriber.max(1),
                            &in_flight,
                        )
                        .await
                    {
                        Ok(claimed) => {
                            full = claimed.len() == room;
                            for claim in claimed {
                                inner.enter(&claim.subscriber.id);
                                let inner = Arc::clone(&inner);
                                tasks.spawn(async move {
                                    let subscriber = claim.subscriber.id.clone();
                                    inner.attempt(claim, deadline).await;
                                    inner.leave(&subscriber);
                                });
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Could not claim event deliveries.");
                        }
                    }
                }
                if full {
                    tokio::task::yield_now().await;
                    continue;
                }
                tokio::select! {
                    _ = stop.changed() => {}
                    () = inner.wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
                if *stop.borrow() {
                    break;
                }
            }
            let drain = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(2), drain)
                .await
                .is_err()
            {
                tasks.shutdown().await;
            }
        })
    }
}

impl Inner {
    /// How long a claim is held: `lease_s`, raised when a delivery attempt may take longer,
    /// so no claim runs out while its attempt is still under way.
    fn lease(&self) -> Duration {
        let configured = Duration::from_secs(self.settings.lease_s.max(1));
        let attempt = Duration::from_millis(self.settings.delivery_timeout_ms.max(1));
        let lease = configured.max(attempt + LEASE_MARGIN);
        if lease > configured {
            tracing::warn!(
                lease_s = self.settings.lease_s,
                delivery_timeout_ms = self.settings.delivery_timeout_ms,
                lease_ms = lease.as_millis() as u64,
                "[events] lease_s is not longer than a delivery attempt may take; claims are held longer, so no event is sent twice at once."
            );
        }
        lease
    }

    /// This instance's deliveries in flight, by subscriber. Only this loop adds to them, so
    /// the claim that follows never takes more than a subscriber has room for.
    fn in_flight(&self) -> Vec<(String, usize)> {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        in_flight.iter().map(|(id, n)| (id.clone(), *n)).collect()
    }

    fn enter(&self, subscriber: &str) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *in_flight.entry(subscriber.to_string()).or_default() += 1;
    }

    fn leave(&self, subscriber: &str) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = in_flight.get_mut(subscriber) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(subscriber);
            }
        }
    }

    /// Sends one claimed delivery and records the outcome; an attempt still under way at
    /// `deadline` (shortly before the claim's lease runs out) is abandoned as failed.
    async fn attempt(&self, claim: Claimed, deadline: tokio::time::Instant) {
        let channel = match claim.subscriber.kind {
            SubscriberKind::Webhook => "webhook",
            SubscriberKind::Nats => "nats",
        };
        let send = async {
            match claim.subscriber.kind {
                SubscriberKind::Webhook => self.send_webhook(&claim).await,
                SubscriberKind::Nats => self.publish_nats(&claim).await,
            }
        };
        let sent = match tokio::time::timeout_at(deadline, send).await {
            Ok(sent) => sent,
            Err(_) => Sent::Failed {
                status: None,
                error: "the attempt did not end within its claim's lease".into(),
                disable: None,
            },
        };
        let (attempt, outcome) = match &sent {
            Sent::Delivered(status) => (Attempt::Delivered { status: *status }, "delivered"),
            Sent::Filtered => (Attempt::Filtered, "filtered"),
            Sent::Failed {
                status,
                error,
                disable,
            } => {
                let retry_at = if disable.is_some() {
                    None
                } else {
                    self.retry_at(claim.attempts)
                };
                let outcome = match (disable, retry_at) {
                    (Some(_), _) => "disabled",
                    (None, Some(_)) => "retry",
                    (None, None) => "dead",
                };
                (
                    Attempt::Failed {
                        status: *status,
                        error,
                        retry_at,
                    },
                    outcome,
                )
            }
        };
        if let Sent::Failed {
            disable: Some(reason),
            ..
        } = &sent
        {
            tracing::warn!(
                subscriber = %claim.subscriber.id,
                reason,
                "Event subscriber disabled."
            );
            if let Err(error) = self
                .outbox
                .set_subscriber_active(&claim.subscriber.id, false, Some(reason))
                .await
            {
                tracing::warn!(%error, "Could not disable an event subscriber.");
            }
        }
        if outcome == "dead" {
            tracing::warn!(
                subscriber = %claim.subscriber.id,
                event = %claim.event.id,
                attempts = claim.attempts + 1,
                "Event delivery dead-lettered after its retry schedule; replay it through the graph."
            );
        }
        let delay = (outcome == "delivered").then(|| {
            (Utc::now() - claim.event.recorded_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        });
        self.metrics.event_delivery(channel, outcome, delay);
        match self
            .outbox
            .finish(&self.owner, claim.event.seq, &claim.subscriber.id, attempt)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                subscriber = %claim.subscriber.id,
                event = %claim.event.id,
                "A delivery's lease ran out before its outcome was written; another worker has it."
            ),
            Err(error) => {
                tracing::warn!(%error, "Could not record a delivery's outcome; it will be sent again.")
            }
        }
    }

    /// When to try again after `attempts` earlier failures (this one included in the count
    /// next time), jittered ±20 %; `None` once the schedule is spent.
    fn retry_at(&self, attempts: i64) -> Option<chrono::DateTime<Utc>> {
        let index = usize::try_from(attempts).ok()?;
        let base = *self.settings.retry_schedule_s.get(index)?;
        let mut bytes = [0u8; 2];
        let jitter = match getrandom::getrandom(&mut bytes) {
            Ok(()) => 0.8 + 0.4 * f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
            Err(_) => 1.0,
        };
        let wait_ms = (base as f64 * 1000.0 * jitter) as i64;
        Some(Utc::now() + chrono::Duration::milliseconds(wait_ms))
    }

    async fn send_webhook(&self, claim: &Claimed) -> Sent {
        let subscriber = &claim.subscriber;
        match super::agency_may_receive(
            &self.ledger,
            &self.trust,
            &subscriber.agency,
            &subscriber.purpose,
            &claim.event,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => return Sent::Filtered,
            Err(error) => {
                return Sent::Failed {
                    status: None,
                    error: format!("the consent ledger could not be read: {error}"),
                    disable: None,
                };
            }
        }
        let Ok(secret) = WebhookSecret::parse(&subscriber.secret) else {
            return Sent::Failed {
                status: None,
                error: "the subscriber's stored secret is not a webhook secret".into(),
                disable: Some("its stored signing secret is unreadable"),
            };
        };
        let Ok(url) = reqwest::Url::parse(&subscriber.endpoint) else {
            return Sent::Failed {
                status: None,
                error: "the stored endpoint is not a URL".into(),
                disable: Some("its stored endpoint is not a URL"),
            };
        };
        let body = Bytes::from(claim.event.payload().to_string());
        let timestamp = Utc::now().timestamp();
        let signature = secret.sign(&claim.event.id, timestamp, &body);
        let headers = [
            ("content-type", "application/json".to_string()),
            (ID_HEADER, claim.event.id.clone()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, signature),
        ];
        match self.egress.post(&url, &headers, body).await {
            Ok(status) if (200..300).contains(&status) => Sent::Delivered(Some(status)),
            Ok(410) => Sent::Failed {
                status: Some(410),
                error: "the endpoint answered 410 Gone".into(),
                disable: Some("the endpoint answered 410 Gone"),
            },
            Ok(status) => Sent::Failed {
                status: Some(status),
                error: format!("the endpoint answered {status}"),
                disable: None,
            },
            Err(error) if error.is_blocked() => Sent::Failed {
                status: None,
                error: error.to_string(),
                disable: Some("its endpoint resolves to an address that is not public"),
            },
            Err(error) => Sent::Failed {
                status: None,
                error: error.to_string(),
                disable: None,
            },
        }
    }

    async fn publish_nats(&self, claim: &Claimed) -> Sent {
        let Some(nats) = &self.nats else {
            return Sent::Failed {
                status: None,
                error: "NATS is not connected on this instance".into(),
                disable: None,
            };
        };
        let body = Bytes::from(claim.event.payload().to_string());
        match nats
            .publish(&claim.event.event_type, &claim.event.id, body)
            .await
        {
            Ok(()) => Sent::Delivered(None),
            Err(error) => Sent::Failed {
                status: None,
                error: error.to_string(),
                disable: None,
            },
        }
    }
}
