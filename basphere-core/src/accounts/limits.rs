//! Abuse limits on public submissions: sliding windows of recent submissions per client
//! address, per email address and in all (`registration.*`).
//!
//! The windows live in this process: with several replicas each enforces the limits on what it
//! receives (a client spread over N replicas gets up to N times the per-address allowance).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Keys kept at most per kind of window; beyond it the idlest are forgotten (a flood of
/// addresses cannot grow memory without bound).
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub(super) struct Submissions {
    by_address: Mutex<Windows>,
    by_email: Mutex<Windows>,
    all: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    hits: HashMap<String, VecDeque<Instant>>,
}

impl Windows {
    /// Counts a hit for `key` unless `limit` hits happened within `window`; otherwise how long
    /// until the oldest of them leaves the window.
    fn hit(&mut self, key: &str, limit: u32, window: Duration, at: Instant) -> std::result::Result<(), Duration> {
        if self.hits.len() >= MAX_KEYS && !self.hits.contains_key(key) {
            self.forget_idle(window, at);
        }
        let hits = self.hits.entry(key.to_owned()).or_default();
        while hits.front().is_some_and(|first| at.duration_since(*first) >= window) {
            hits.pop_front();
        }
        if hits.len() >= limit as usize {
            let oldest = *hits.front().expect("at least one hit");
            return Err(window.saturating_sub(at.duration_since(oldest)));
        }
        hits.push_back(at);
        Ok(())
    }

    fn forget_idle(&mut self, window: Duration, at: Instant) {
        self.hits.retain(|_, hits| hits.back().is_some_and(|last| at.duration_since(*last) < window));
        if self.hits.len() >= MAX_KEYS {
            // Still full of live keys: drop the ones idle the longest.
            let mut lasts: Vec<Instant> = self.hits.values().filter_map(|hits| hits.back().copied()).collect();
            lasts.sort();
            let cut = lasts[lasts.len() / 2];
            self.hits.retain(|_, hits| hits.back().is_some_and(|last| *last > cut));
        }
    }
}

fn limited(what: &str, wait: Duration) -> Error {
    Error::RateLimited { message: what.to_owned(), retry_after_seconds: wait.as_secs().max(1) }
}

impl Submissions {
    /// Before anything else: the client's hourly allowance and the daily total.
    pub(super) fn admit(&self, client: &str, config: &crate::config::RegistrationLimits) -> Result<()> {
        let at = Instant::now();
        lock(&self.by_address)
            .hit(client, config.per_address_per_hour, HOUR, at)
            .map_err(|wait| limited("too many submissions from your address", wait))?;
        lock(&self.all)
            .hit("all", config.per_day, DAY, at)
            .map_err(|wait| limited("too many submissions today", wait))?;
        Ok(())
    }

    /// Once the email address is known: submissions naming it per day.
    pub(super) fn admit_email(&self, email: &str, config: &crate::config::RegistrationLimits) -> Result<()> {
        lock(&self.by_email)
            .hit(&email.to_lowercase(), config.per_email_per_day, DAY, Instant::now())
            .map_err(|wait| limited("too many submissions for this email address", wait))
    }
}

fn lock(windows: &Mutex<Windows>) -> std::sync::MutexGuard<'_, Windows> {
    windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_limit_then_says_when_to_come_back() {
        let mut windows = Windows::default();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(windows.hit("a", 3, HOUR, start + Duration::from_secs(i)), Ok(()));
        }
        assert_eq!(windows.hit("a", 3, HOUR, start + Duration::from_secs(10)), Err(Duration::from_secs(3590)));
        assert_eq!(windows.hit("b", 3, HOUR, start + Duration::from_secs(10)), Ok(()), "keys are separate");
        assert_eq!(windows.hit("a", 3, HOUR, start + HOUR), Ok(()), "the first hit left the window");
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let mut windows = Windows::default();
        let start = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            let _ = windows.hit(&i.to_string(), 1, HOUR, start + Duration::from_millis(i as u64));
        }
        assert!(windows.hits.len() <= MAX_KEYS, "{}", windows.hits.len());
        assert!(windows.hit(&(MAX_KEYS + 9).to_string(), 1, HOUR, start + HOUR / 2).is_err(), "a recent key is kept");
    }
}
