//! The cap on distinct citizens an agency client may ask about per window, so that a partner
//! cannot walk the population even with a valid token and a legal basis for each read.
//!
//! A window starts at a client's first counted citizen and lasts `citizen_window_s`; within
//! it the first `max_distinct_citizens` different citizens are admitted, and those stay
//! admitted for the rest of the window, so a caseworker's repeated reads of the same people
//! never hit the cap. Citizen ids are kept in memory only, never logged.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::identity::CitizenId;

#[derive(Debug)]
struct Window {
    started: Instant,
    seen: HashSet<CitizenId>,
}

/// Every agency client's current window.
#[derive(Debug, Default)]
pub(crate) struct CitizenCap {
    windows: Mutex<HashMap<String, Window>>,
}

impl CitizenCap {
    /// Admits `citizen` for `client` (at most `max` distinct per `window`), or says how long
    /// until the client's window ends.
    pub(crate) fn admit(
        &self,
        client: &str,
        citizen: &CitizenId,
        max: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = windows.entry(client.to_string()).or_insert_with(|| Window {
            started: now,
            seen: HashSet::new(),
        });
        let elapsed = now.saturating_duration_since(current.started);
        if elapsed >= window {
            current.started = now;
            current.seen.clear();
        }
        if current.seen.contains(citizen) {
            return Ok(());
        }
        if current.seen.len() < max as usize {
            current.seen.insert(citizen.clone());
            return Ok(());
        }
        Err(window.saturating_sub(now.saturating_duration_since(current.started)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> CitizenId {
        CitizenId::parse(&format!("C{n:07}")).expect("a citizen id")
    }

    #[test]
    fn seen_citizens_stay_allowed_and_new_ones_wait_for_the_next_window() {
        let cap = CitizenCap::default();
        let window = Duration::from_secs(60);
        let start = Instant::now();
        assert_eq!(cap.admit("p", &id(1), 2, window, start), Ok(()));
        assert_eq!(cap.admit("p", &id(2), 2, window, start), Ok(()));
        let later = start + Duration::from_secs(20);
        assert_eq!(
            cap.admit("p", &id(3), 2, window, later),
            Err(Duration::from_secs(40))
        );
        assert_eq!(cap.admit("p", &id(1), 2, window, later), Ok(()));
        // Another client has its own window.
        assert_eq!(cap.admit("q", &id(3), 2, window, later), Ok(()));
        let next = start + window;
        assert_eq!(cap.admit("p", &id(3), 2, window, next), Ok(()));
    }
}
