//! Collecting what sibling resolvers ask for into one round trip (DataLoader style).
//!
//! The resolvers of a list's items run concurrently on the request's task, but the fields of
//! each item one after another (async-graphql resolves a nested object's fields serially). The
//! first to ask for something becomes the round's leader: it waits until the request has been
//! idle (no resolver started or finished, no sibling joined, no other round's call in flight)
//! for two timer ticks, then answers everyone with one call. An item whose earlier field had
//! nothing to fetch reaches the next field early; waiting for the other rounds keeps it in the
//! same round as the items still waiting on their earlier fields' calls. Only reads inside a list
//! are collected, so a single entity pays nothing for it. Later askers start a new round. If the leader
//! is dropped before answering, the others get `None` and ask on their own.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Turns a leader yields before it starts waiting on the timer.
const QUICK_TURNS: usize = 3;
/// How long a round waits for one more asker (tokio's timer ticks in milliseconds).
const TICK: std::time::Duration = std::time::Duration::from_micros(500);
/// Ticks in a row with the request idle that close a round.
const QUIET_TICKS: usize = 2;
/// The most ticks a round waits while the request stays busy or other rounds are in flight
/// (a few seconds: a stuck backend delays the rounds queued behind it by at most this).
const MAX_TICKS: usize = 4_000;

/// The most keys one round collects; larger lists are split across rounds.
const ROUND_CAPACITY: usize = 1_000;

type Waiting<K, V> = Mutex<Vec<(K, oneshot::Sender<V>)>>;

/// What a round's leader watches to decide its round is complete.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace<'a> {
    /// Bumped by every resolver of the request that starts or finishes.
    pub(crate) activity: &'a AtomicU64,
    /// Rounds of the request whose call is in flight.
    pub(crate) running: &'a AtomicUsize,
    /// Every round of the request not yet answered, by the order it opened in.
    pub(crate) open: &'a Mutex<BTreeSet<u64>>,
    /// Numbers rounds in the order they open.
    pub(crate) opened: &'a AtomicU64,
}

/// Keeps a round in the request's open rounds until it is dropped (answered, or its leader
/// gone).
struct OpenRound<'a> {
    open: &'a Mutex<BTreeSet<u64>>,
    id: u64,
}

impl<'a> OpenRound<'a> {
    fn new(pace: Pace<'a>) -> Self {
        let id = pace.opened.fetch_add(1, Ordering::SeqCst);
        lock(pace.open).insert(id);
        Self {
            open: pace.open,
            id,
        }
    }

    /// Whether a round that opened before this one is still unanswered: its askers go on to
    /// ask later fields, so they may still join this round.
    fn older_ones_open(&self) -> bool {
        lock(self.open).range(..self.id).next().is_some()
    }
}

impl Drop for OpenRound<'_> {
    fn drop(&mut self) {
        lock(self.open).remove(&self.id);
    }
}

/// Counts a round's call as in flight until it is dropped (answered, or its leader gone).
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One kind of question collected across sibling resolvers.
#[derive(Debug)]
pub(crate) struct Collector<K, V> {
    round: Mutex<Option<Arc<Waiting<K, V>>>>,
}

impl<K, V> Default for Collector<K, V> {
    fn default() -> Self {
        Self {
            round: Mutex::new(None),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K, V> Collector<K, V> {
    /// Asks `key` in the current round. The leader answers the whole round with `run`, which
    /// gets every key asked (in order, duplicates included) and must answer one value per key.
    pub(crate) async fn ask<F, Fut>(&self, key: K, pace: Pace<'_>, run: F) -> Option<V>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Vec<V>>,
    {
        let (sender, receiver) = oneshot::channel();
        let led = {
            let mut current = lock(&self.round);
            match current.as_ref() {
                Some(round) => {
                    lock(round).push((key, sender));
                    None
                }
                None => {
                    let round = Arc::new(Mutex::new(vec![(key, sender)]));
                    *current = Some(Arc::clone(&round));
                    Some(round)
                }
            }
        };
        if let Some(round) = led {
            let open = OpenRound::new(pace);
            // A few turns let siblings already on their way join cheaply; then the round
            // stays open until a timer tick passes with no one joining. The timer, not only
            // `yield_now`, matters: a future that wakes itself makes the executor's set of
            // futures end its pass early, so several leaders yielding together would keep the
            // siblings behind them from ever being polled.
            for _ in 0..QUICK_TURNS {
                tokio::task::yield_now().await;
            }
            let progress = || (lock(&round).len(), pace.activity.load(Ordering::Relaxed));
            let (mut seen, mut quiet) = (progress(), 0);
            for _ in 0..MAX_TICKS {
                tokio::time::sleep(TICK).await;
                let now = progress();
                if now.0 >= ROUND_CAPACITY {
                    break;
                }
                // Another round answering now, or an older one still collecting, may release
                // askers of this one: the fields of a nested object resolve one after another,
                // so an item's next field asks only when its previous field's round has
                // answered. (The oldest open round waits for no collecting round, so rounds
                // never wait on each other in a circle.)
                let others_busy = pace.running.load(Ordering::SeqCst) > 0 || open.older_ones_open();
                if now == seen && !others_busy {
                    quiet += 1;
                    if quiet >= QUIET_TICKS {
                        break;
                    }
                } else {
                    (seen, quiet) = (now, 0);
                }
            }
            {
                let mut current = lock(&self.round);
                if current.as_ref().is_some_and(|r| Arc::ptr_eq(r, &round)) {
                    *current = None;
                }
            }
            let waiting = std::mem::take(&mut *lock(&round));
            let (keys, senders): (Vec<K>, Vec<_>) = waiting.into_iter().unzip();
            let values = {
                let _running = Running::new(pace.running);
                run(keys).await
            };
            for (sender, value) in senders.into_iter().zip(values) {
                let _ = sender.send(value);
            }
        }
        receiver.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace() -> Pace<'static> {
        static ACTIVITY: AtomicU64 = AtomicU64::new(0);
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static OPEN: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
        static OPENED: AtomicU64 = AtomicU64::new(0);
        Pace {
            activity: &ACTIVITY,
            running: &RUNNING,
            open: &OPEN,
            opened: &OPENED,
        }
    }

    #[tokio::test]
    async fn siblings_asking_together_share_one_round() {
        let collector = Collector::<u32, u32>::default();
        let rounds = AtomicUsize::new(0);
        let answers = futures::future::join_all((0..100u32).map(|n| {
            let (collector, rounds) = (&collector, &rounds);
            async move {
                collector
                    .ask(n, pace(), |keys| async move {
                        rounds.fetch_add(1, Ordering::SeqCst);
                        keys.into_iter().map(|k| k * 2).collect()
                    })
                    .await
            }
        }))
        .await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        assert_eq!(
            answers,
            (0..100u32).map(|n| Some(n * 2)).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_leaves_the_others_to_ask_alone() {
        let collector = Collector::<u32, u32>::default();
        let leader = collector.ask(1, pace(), |_| futures::future::pending());
        let follower = collector.ask(2, pace(), |keys| async move { keys });
        let (_, answer) = tokio::join!(
            async {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(20), leader).await;
            },
            follower
        );
        assert_eq!(answer, None, "the follower is told to ask alone");
    }
}
