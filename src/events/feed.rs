//! The live feed behind `Subscription.lifeEvents`: one tail of the outbox per gateway, fanned
//! out to every subscriber of this instance.
//!
//! The feed reads the shared `life_events` table, never memory, so an event recorded by another
//! gateway instance reaches this instance's subscribers too. It reads only while someone
//! listens: the first subscriber starts it at the newest event (a subscription sees what is
//! recorded from then on), and it stops when the last one leaves.
//!
//! PostgreSQL numbers an event when it is inserted, not when it commits, so a transaction that
//! took `seq` 41 may commit after one that took 42. The tail remembers such gaps for a while and
//! sends a late event when it shows up (out of global order, but never out of its citizen's
//! order: one citizen's events are recorded one transaction after another). SQLite writes one
//! transaction at a time and leaves no gaps.
//!
//! A subscriber that reads too slowly is not silently skipped ahead: its next read is a
//! [`FeedError::Lagged`] naming how many events it missed after which `seq`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast, watch};

use super::outbox::rfc3339;
use super::{LifeEvent, Outbox, OutboxError};

/// Events one read of the outbox takes at most; a longer backlog is read in several.
const BATCH: i64 = 500;

/// How many events a subscriber may fall behind before it is told it lagged.
pub const DEFAULT_CAPACITY: usize = 4096;

/// How long a gap in `seq` is watched for a late commit before it is taken as a rollback.
const GAP_WAIT: Duration = Duration::from_secs(10);

/// The most gaps watched at once (a large rolled-back batch leaves a long run of them).
const MAX_GAPS: usize = 10_000;

/// The most gaps checked per read, oldest first, so gaps never crowd out new events.
const GAP_PROBES: usize = 32;

/// Why a subscriber gets no further events.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The subscriber read too slowly and the feed moved on: these events were not delivered
    /// to it. It can subscribe again and read the missed ones through the graph.
    #[error(
        "this subscription fell behind and missed {missed} event(s) recorded after seq {after_seq}; subscribe again"
    )]
    Lagged {
        /// The last event it received (or where its subscription started).
        after_seq: i64,
        /// How many it missed.
        missed: u64,
    },
    /// The gateway is shutting down.
    #[error("the live event feed has stopped")]
    Closed,
    /// The outbox could not be read when the feed started.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// The gateway's live feed of life events. Cheap to clone: clones share one tail.
#[derive(Debug, Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outbox: Outbox,
    poll: Duration,
    capacity: usize,
    /// The running tail's sender; `None` while nobody listens. Held across the first read of
    /// `last_seq` so two first subscribers start one tail.
    tail: Mutex<Option<broadcast::Sender<Arc<LifeEvent>>>>,
    /// The newest `seq` the tail has sent.
    sent: AtomicI64,
    stopping: watch::Sender<bool>,
}

impl EventFeed {
    /// A feed that reads `outbox` every `poll` (`[events] feed_poll_ms`) while anyone listens.
    pub fn new(outbox: Outbox, poll: Duration) -> Self {
        Self::with_capacity(outbox, poll, DEFAULT_CAPACITY)
    }

    /// [`EventFeed::new`] letting a subscriber fall `capacity` events behind before it lags.
    pub fn with_capacity(outbox: Outbox, poll: Duration, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                outbox,
                poll: poll.max(Duration::from_millis(1)),
                capacity: capacity.max(1),
                tail: Mutex::new(None),
                sent: AtomicI64::new(0),
                stopping: watch::Sender::new(false),
            }),
        }
    }

    /// Starts receiving every event recorded from now on (starting the tail when this is the
    /// first subscriber).
    pub async fn subscribe(&self) -> Result<FeedReceiver, FeedError> {
        if *self.inner.stopping.borrow() {
            return Err(FeedError::Closed);
        }
        let mut tail = self.inner.tail.lock().await;
        if let Some(sender) = tail.as_ref() {
            // Read first: the receiver gets what is sent from here on, so a gap it is told
            // about may name an event it did receive, never hide one it did not.
            let last_seq = self.inner.sent.load(Ordering::Acquire);
            return Ok(FeedReceiver {
                receiver: sender.subscribe(),
                last_seq,
            });
        }
        let from = self.inner.outbox.last_seq().await?;
        self.inner.sent.store(from, Ordering::Release);
        let (sender, receiver) = broadcast::channel(self.inner.capacity);
        *tail = Some(sender.clone());
        tokio::spawn(run_tail(Arc::clone(&self.inner), sender, from));
        Ok(FeedReceiver {
            receiver,
            last_seq: from,
        })
    }

    /// How many subscribers are listening on this instance (for tests and operators).
    pub async fn subscribers(&self) -> usize {
        self.inner
            .tail
            .lock()
            .await
            .as_ref()
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// Whether the tail is reading the outbox (someone listens).
    pub async fn is_tailing(&self) -> bool {
        self.inner.tail.lock().await.is_some()
    }

    /// Ends every subscription (their streams end) and refuses new ones: the gateway is
    /// shutting down.
    pub fn shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Resolves once [`EventFeed::shutdown`] was called, so open sockets can close.
    pub async fn stopped(&self) {
        let mut stopping = self.inner.stopping.subscribe();
        // An error means the sender is gone, which only happens once no feed exists.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// One subscriber's end of the feed.
#[derive(Debug)]
pub struct FeedReceiver {
    receiver: broadcast::Receiver<Arc<LifeEvent>>,
    /// The newest event received, or where the subscription started.
    last_seq: i64,
}

impl FeedReceiver {
    /// The next event; an error ends the subscription.
    pub async fn recv(&mut self) -> Result<Arc<LifeEvent>, FeedError> {
        match self.receiver.recv().await {
            Ok(event) => {
                self.last_seq = self.last_seq.max(event.seq);
                Ok(event)
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => Err(FeedError::Lagged {
                after_seq: self.last_seq,
                missed,
            }),
            Err(broadcast::error::RecvError::Closed) => Err(FeedError::Closed),
        }
    }

    /// The events as a stream that ends after its first error (which it yields) or when the
    /// feed stops (which it does not: a shutdown is not the subscriber's problem).
    pub fn into_stream(self) -> impl Stream<Item = Result<Arc<LifeEvent>, FeedError>> + Send {
        futures::stream::unfold(Some(self), |state| async move {
            let mut receiver = state?;
            match receiver.recv().await {
                Ok(event) => Some((Ok(event), Some(receiver))),
                Err(FeedError::Closed) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
    }
}

/// An event as the graph's `LifeEvent` type reads it: its fields by name, the subject as
/// `[{name, id}]` and times in RFC 3339, so every field resolves from this value.
pub fn graph_value(event: &LifeEvent) -> Value {
    let subject: Vec<Value> = event
        .subject
        .iter()
        .map(|(name, id)| {
            let id = match id {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            json!({ "name": name, "id": id })
        })
        .collect();
    json!({
        "id": event.id,
        "type": event.event_type,
        "citizenId": event.citizen_id,
        "citizenSequence": event.citizen_seq,
        "category": event.category,
        "subject": subject,
        "occurredAt": rfc3339(event.occurred_at),
        "recordedAt": rfc3339(event.recorded_at),
    })
}

/// Reads the outbox after `cursor` every poll until nobody listens or the feed stops.
async fn run_tail(inner: Arc<Inner>, sender: broadcast::Sender<Arc<LifeEvent>>, cursor: i64) {
    let mut tail = Tail {
        cursor,
        gaps: BTreeMap::new(),
        failing: false,
    };
    let mut stopping = inner.stopping.subscribe();
    let mut ticks = tokio::time::interval(inner.poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => break,
        }
        {
            // Under the lock a new subscriber cannot join between the count and the stop.
            let mut running = inner.tail.lock().await;
            if sender.receiver_count() == 0 {
                *running = None;
                tracing::debug!(seq = tail.cursor, "Live event feed idle; stopped reading.");
                return;
            }
        }
        tail.read(&inner.outbox, &sender).await;
        inner.sent.store(tail.cursor, Ordering::Release);
    }
    // Dropping every sender ends every receiver.
    *inner.tail.lock().await = None;
}

/// Where the tail is, and the gaps it still expects to fill.
struct Tail {
    cursor: i64,
    /// Missing `seq`s and when each was first seen missing.
    gaps: BTreeMap<i64, Instant>,
    /// Whether the last read failed (so a long outage logs once, not every poll).
    failing: bool,
}

impl Tail {
    async fn read(&mut self, outbox: &Outbox, sender: &broadcast::Sender<Arc<LifeEvent>>) {
        match self.step(outbox, sender).await {
            Ok(()) => {
                if self.failing {
                    tracing::info!("Live event feed reads the outbox again.");
                }
                self.failing = false;
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, "Live event feed cannot read the outbox; retrying.");
                }
                self.failing = true;
            }
        }
    }

    async fn step(
        &mut self,
        outbox: &Outbox,
        sender: &broadcast::Sender<Arc<LifeEvent>>,
    ) -> Result<(), OutboxError> {
        let now = Instant::now();
        self.gaps
            .retain(|_, since| now.duration_since(*since) < GAP_WAIT);
        let probes: Vec<i64> = self.gaps.keys().take(GAP_PROBES).copied().collect();
        for seq in probes {
            let found = outbox.events_after(seq - 1, 1).await?;
            if let Some(event) = found.into_iter().next()
                && event.seq == seq
            {
                self.gaps.remove(&seq);
                // No receiver is not an error: the tail stops at its next tick.
                let _ = sender.send(Arc::new(event));
            }
        }
        loop {
            let events = outbox.events_after(self.cursor, BATCH).await?;
            let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= BATCH;
            for event in events {
                let room = MAX_GAPS.saturating_sub(self.gaps.len());
                for missing in (self.cursor + 1..event.seq).take(room) {
                    self.gaps.insert(missing, now);
                }
                self.cursor = self.cursor.max(event.seq);
                let _ = sender.send(Arc::new(event));
            }
            if !full {
                return Ok(());
            }
            // A long backlog: let subscribers drain what was sent before sending more.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
