//! The bulkhead: a backend never sees more than `max_concurrency` calls at once. Callers wait
//! a bounded time for a slot and are then refused quickly, so a surge queues in the gateway
//! only briefly and never in the backend (BAD_INPUTS row 48).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The slots of one connector.
#[derive(Debug)]
pub(crate) struct Bulkhead {
    connector: String,
    slots: Arc<Semaphore>,
    limit: usize,
    queue_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// A held slot; the in-flight gauge goes down when it is dropped, however the call ended.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    connector: String,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight_add(&self.connector, -1);
    }
}

/// No slot freed in time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Full {
    pub(crate) limit: usize,
    pub(crate) waited: Duration,
}

struct Queued<'a>(&'a Bulkhead);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.metrics.queued_add(&self.0.connector, -1);
    }
}

impl Bulkhead {
    pub(crate) fn new(
        connector: &str,
        limit: usize,
        queue_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            connector: connector.to_string(),
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            queue_timeout,
            metrics,
        }
    }

    /// Takes a slot, waiting at most the queue timeout.
    pub(crate) async fn enter(&self) -> Result<Slot, Full> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.metrics.queued_add(&self.connector, 1);
                let _queued = Queued(self);
                match tokio::time::timeout(
                    self.queue_timeout,
                    Arc::clone(&self.slots).acquire_owned(),
                )
                .await
                {
                    Ok(Ok(permit)) => permit,
                    // Timed out (the semaphore is never closed).
                    _ => {
                        self.metrics.rejected_busy(&self.connector);
                        return Err(Full {
                            limit: self.limit,
                            waited: self.queue_timeout,
                        });
                    }
                }
            }
        };
        self.metrics.in_flight_add(&self.connector, 1);
        Ok(Slot {
            _permit: permit,
            connector: self.connector.clone(),
            metrics: Arc::clone(&self.metrics),
        })
    }

    /// Calls in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limit_holds_and_waiters_are_refused_after_the_queue_timeout() {
        let bulkhead = Bulkhead::new(
            "dmv",
            2,
            Duration::from_millis(50),
            Arc::new(Metrics::new()),
        );
        let first = bulkhead.enter().await.unwrap();
        let _second = bulkhead.enter().await.unwrap();
        assert_eq!(bulkhead.in_flight(), 2);
        let started = tokio::time::Instant::now();
        let full = bulkhead.enter().await.expect_err("full");
        assert_eq!(full.limit, 2);
        assert_eq!(started.elapsed(), Duration::from_millis(50));

        // A waiter gets the slot as soon as one frees.
        let waiter = tokio::spawn({
            let slots = Arc::clone(&bulkhead.slots);
            async move { slots.acquire_owned().await.map(|_| ()) }
        });
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(bulkhead.in_flight(), 1, "the dropped slot went back");
    }
}
