//! Collecting what sibling resolvers ask for into one round trip (DataLoader style).
//!
//! The resolvers of a list's items run concurrently on the request's task. The first to ask
//! for something becomes the round's leader: it yields until no sibling has joined for two
//! turns, then answers everyone with one call. Later askers start a new round. If the leader
//! is dropped before answering, the others get `None` and ask on their own.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The most keys one round collects; larger lists are split across rounds.
const ROUND_CAPACITY: usize = 1_000;

type Waiting<K, V> = Mutex<Vec<(K, oneshot::Sender<V>)>>;

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
    pub(crate) async fn ask<F, Fut>(&self, key: K, run: F) -> Option<V>
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
            let (mut seen, mut quiet) = (0, 0);
            while quiet < 2 {
                tokio::task::yield_now().await;
                let asked = lock(&round).len();
                if asked >= ROUND_CAPACITY {
                    break;
                }
                if asked == seen {
                    quiet += 1;
                } else {
                    (seen, quiet) = (asked, 0);
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
            let values = run(keys).await;
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn siblings_asking_together_share_one_round() {
        let collector = Collector::<u32, u32>::default();
        let rounds = AtomicUsize::new(0);
        let answers = futures::future::join_all((0..100u32).map(|n| {
            let (collector, rounds) = (&collector, &rounds);
            async move {
                collector
                    .ask(n, |keys| async move {
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
        let leader = collector.ask(1, |_| futures::future::pending());
        let follower = collector.ask(2, |keys| async move { keys });
        let (_, answer) = tokio::join!(
            async {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(20), leader).await;
            },
            follower
        );
        assert_eq!(answer, None, "the follower is told to ask alone");
    }
}
