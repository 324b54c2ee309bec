//! A notifier and a bastion that record what they are asked (tests only).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Error, Message, Result};
use crate::model::NotificationEvent;
use crate::notifier::Notifier;
use crate::validate::Username;

/// Keeps every event it is given; can be told to fail the next deliveries.
#[derive(Default)]
pub struct RecordingNotifier {
    events: Mutex<Vec<NotificationEvent>>,
    recipients: Mutex<Vec<crate::notifier::Recipient>>,
    failures_left: Mutex<u32>,
    attempts: Mutex<u32>,
}

impl RecordingNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Events delivered successfully, in order.
    pub fn events(&self) -> Vec<NotificationEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Who each delivered event was for, in the order of `events`.
    pub fn recipients(&self) -> Vec<crate::notifier::Recipient> {
        self.recipients.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the next `count` deliveries fail.
    pub fn fail_next(&self, count: u32) {
        *self.failures_left.lock().unwrap_or_else(|p| p.into_inner()) = count;
    }

    /// Every delivery attempt, failed or not.
    pub fn attempts(&self) -> u32 {
        *self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    fn backend_name(&self) -> &'static str {
        "recording"
    }

    async fn notify(&self, event: &NotificationEvent, recipient: &crate::notifier::Recipient) -> Result<()> {
        *self.attempts.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        {
            let mut failures = self.failures_left.lock().unwrap_or_else(|p| p.into_inner());
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::backend("recording", Message(format!("delivery of {} refused", event.name()))));
            }
        }
        // Both lists under the events lock, so that they stay in step.
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event.clone());
        self.recipients.lock().unwrap_or_else(|p| p.into_inner()).push(recipient.clone());
        Ok(())
    }
}

/// A bastion that keeps its logins in memory: uids from 61000 up, the key of each, every call
/// in order; it can be told to fail the next calls, and refuses a name it did not make.
#[derive(Default)]
pub struct RecordingBastion {
    state: Mutex<BastionState>,
}

#[derive(Default)]
struct BastionState {
    logins: BTreeMap<String, (u32, String)>,
    /// Names that exist on the host but are not Basphere's (system accounts).
    foreign: BTreeSet<String>,
    calls: Vec<String>,
    failures_left: u32,
    next_uid: u32,
}

impl RecordingBastion {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BastionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `count` calls fail, as a host whose useradd is broken would.
    pub fn fail_next(&self, count: u32) {
        self.lock().failures_left = count;
    }

    /// A login of this name that Basphere did not make.
    pub fn add_foreign(&self, name: &str) {
        self.lock().foreign.insert(name.to_owned());
    }

    /// The login's uid and its authorized key, if it exists.
    pub fn login(&self, name: &str) -> Option<(u32, String)> {
        self.lock().logins.get(name).cloned()
    }

    /// Every call, as `method:name`, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn call(&self, method: &str, name: &Username) -> Result<std::sync::MutexGuard<'_, BastionState>> {
        let mut state = self.lock();
        state.calls.push(format!("{method}:{name}"));
        if state.failures_left > 0 {
            state.failures_left -= 1;
            return Err(Error::backend("bastion", Message(format!("{method} {name}: useradd failed (injected)"))));
        }
        Ok(state)
    }
}

#[async_trait]
impl crate::bastion::Bastion for RecordingBastion {
    fn backend_name(&self) -> &'static str {
        "recording"
    }

    async fn ensure_login(&self, username: &Username, key: &crate::validate::SshPublicKey) -> Result<Option<u32>> {
        let mut state = self.call("ensure_login", username)?;
        if state.foreign.contains(username.as_str()) {
            return Err(Error::already_exists("bastion login (not Basphere's)", username));
        }
        if let Some((uid, _)) = state.logins.get(username.as_str()).cloned() {
            state.logins.insert(username.to_string(), (uid, key.as_str().to_owned()));
            return Ok(Some(uid));
        }
        let uid = 61000 + state.next_uid;
        state.next_uid += 1;
        state.logins.insert(username.to_string(), (uid, key.as_str().to_owned()));
        Ok(Some(uid))
    }

    async fn set_key(&self, username: &Username, key: &crate::validate::SshPublicKey) -> Result<()> {
        let mut state = self.call("set_key", username)?;
        match state.logins.get_mut(username.as_str()) {
            Some(login) => {
                login.1 = key.as_str().to_owned();
                Ok(())
            }
            None => Err(Error::not_found("bastion login", username)),
        }
    }

    async fn remove_login(&self, username: &Username) -> Result<()> {
        let mut state = self.call("remove_login", username)?;
        if state.foreign.contains(username.as_str()) {
            return Err(Error::Conflict(format!("{username} is not a Basphere login; it is left alone")));
        }
        state.logins.remove(username.as_str());
        Ok(())
    }
}
