//! Pollers: each `poll` or `scan` source is read on its own timer, by one gateway instance at a
//! time (the one holding the source's lease in the store).
//!
//! A poll asks for the changes since the stored watermark, records their events and the new
//! watermark in one transaction, and asks again while a full page came back. The call goes
//! through the backend's shield (bulkhead, breaker, timeout) as a write, so it is never cached.
//! A crash before the commit leaves the watermark where it was: the same changes are read again
//! and their events, already recorded or not, are recorded once.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::detect::{DetectError, Detector};
use super::outbox::{Mark, Recorded, rfc3339};
use super::rules::{MAX_CHANGES_PER_CALL, Source, SourceKind, later_watermark};
use crate::connectors::{Arguments, Connectors};
use crate::shield::{CacheScope, CallKind, ShieldError};

/// The most pages one poll reads before yielding to its timer.
const MAX_PAGES_PER_POLL: usize = 20;

/// Why one poll failed; the next tries again from the same watermark.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The source's connector is not built.
    #[error("connector `{0}` is not available")]
    NoConnector(String),
    /// The backend call failed.
    #[error("the change feed call failed: {0}")]
    Call(#[from] ShieldError),
    /// The answer is not a list of change objects.
    #[error("the change feed answered {0}, not a list of changes")]
    NotAList(&'static str),
    /// More changes in one answer than one transaction should hold.
    #[error("the change feed answered {0} changes in one call (at most {MAX_CHANGES_PER_CALL})")]
    TooMany(usize),
    /// Recording failed.
    #[error(transparent)]
    Record(#[from] DetectError),
}

/// Reads one source once. Returns how many events were recorded (0 while another instance
/// holds the source).
pub async fn poll_once(
    detector: &Detector,
    connectors: &Connectors,
    source: &Source,
    owner: &str,
) -> Result<usize, PollError> {
    let (operation, args, every, cursor, start) = match &source.kind {
        SourceKind::Poll {
            operation,
            cursor,
            start,
            args,
            every,
        } => (operation, args, *every, Some(cursor), start.as_str()),
        SourceKind::Scan {
            operation,
            args,
            every,
        } => (operation, args, *every, None, ""),
        SourceKind::Inbound { .. } | SourceKind::Mutation { .. } => return Ok(0),
    };
    let shield = connectors
        .shield(&source.connector)
        .ok_or_else(|| PollError::NoConnector(source.connector.clone()))?;
    let lease = (every * 3).clamp(Duration::from_secs(10), Duration::from_secs(300));
    // `start = "now"`: a new deployment does not replay the backend's whole history.
    let start = if start == "now" {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    } else {
        start.to_string()
    };
    let Some(mut watermark) = detector
        .outbox()
        .lease_source(&source.name, &start, owner, lease)
        .await
        .map_err(DetectError::from)?
    else {
        return Ok(0);
    };
    let mut total = 0;
    for _ in 0..MAX_PAGES_PER_POLL {
        let mut arguments: Arguments = args.clone().into_iter().collect();
        if cursor.is_some() {
            arguments.insert("since".to_string(), Value::from(watermark.clone()));
        }
        let served = shield
            .call(operation, &arguments, &CacheScope::Shared, CallKind::Write)
            .await?;
        let changes: &[Value] = match &served.reply.value {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => &[],
            Some(Value::Object(_)) => return Err(PollError::NotAList("an object")),
            Some(_) => return Err(PollError::NotAList("a scalar")),
        };
        if changes.len() > MAX_CHANGES_PER_CALL {
            return Err(PollError::TooMany(changes.len()));
        }
        let next = match cursor {
            Some(cursor) => changes
                .iter()
                .filter_map(|change| super::condition::scalar_text(change, cursor))
                .fold(watermark.clone(), |best, seen| {
                    if later_watermark(&seen, &best) {
                        seen
                    } else {
                        best
                    }
                }),
            None => rfc3339(chrono::Utc::now()),
        };
        if changes.is_empty() && cursor.is_some() {
            break;
        }
        let mark = Mark::Watermark {
            value: &next,
            owner,
        };
        match detector.record(&source.name, mark, changes).await? {
            Recorded::Events(events) => total += events.len(),
            Recorded::LeaseLost | Recorded::Replayed => break,
        }
        // A scan reads its whole answer at once; a feed that did not move is drained.
        if cursor.is_none() || next == watermark {
            break;
        }
        watermark = next;
    }
    Ok(total)
}

/// Starts one task per `poll`/`scan` source; each stops when `stop` turns true.
pub fn spawn_pollers(
    detector: &Detector,
    connectors: &Connectors,
    owner: &str,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    detector
        .rules()
        .sources
        .values()
        .filter_map(|source| {
            let every = match &source.kind {
                SourceKind::Poll { every, .. } | SourceKind::Scan { every, .. } => *every,
                SourceKind::Inbound { .. } | SourceKind::Mutation { .. } => return None,
            };
            let (detector, connectors, source, owner, mut stop) = (
                detector.clone(),
                connectors.clone(),
                source.clone(),
                owner.to_string(),
                stop.clone(),
            );
            Some(tokio::spawn(async move {
                loop {
                    match poll_once(&detector, &connectors, &source, &owner).await {
                        Ok(_) => {}
                        Err(error) => tracing::warn!(
                            source = %source.name,
                            %error,
                            "A change feed poll failed; the next poll starts from the same watermark."
                        ),
                    }
                    tokio::select! {
                        _ = stop.changed() => {}
                        () = tokio::time::sleep(every) => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                }
            }))
        })
        .collect()
}
