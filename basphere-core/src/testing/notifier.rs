//! The `Notifier` conformance suite.

use crate::model::NotificationEvent;
use crate::notifier::{Notifier, Recipient};
use crate::validate::{Email, ResourceName};

use super::username;

/// Events of every kind the platform sends.
pub fn sample_events() -> Vec<NotificationEvent> {
    let alice = username("alice");
    let email = Email::parse("alice@example.com").expect("valid");
    let web = ResourceName::parse("web").expect("valid");
    vec![
        NotificationEvent::RegistrationSubmitted { username: alice.clone(), email: email.clone() },
        NotificationEvent::RegistrationApproved { username: alice.clone(), email: email.clone() },
        NotificationEvent::RegistrationRejected {
            username: alice.clone(),
            email: email.clone(),
            reason: "unknown \"team\"\nline".into(),
        },
        NotificationEvent::KeyChangeRequested { username: alice.clone() },
        NotificationEvent::KeyChangeRequestReceived { username: alice.clone() },
        NotificationEvent::KeyChangeApproved { username: alice.clone(), email: email.clone() },
        NotificationEvent::KeyChangeRejected { username: alice.clone(), email, reason: "no".into() },
        NotificationEvent::VmReady { owner: alice.clone(), name: web.clone(), ip: Some([10, 254, 0, 33].into()) },
        NotificationEvent::VmFailed { owner: alice.clone(), name: web.clone(), reason: "template not found".into() },
        NotificationEvent::ClusterReady { owner: alice.clone(), name: web.clone() },
        NotificationEvent::ClusterFailed { owner: alice.clone(), name: web, reason: "timeout".into() },
        NotificationEvent::QuotaNearlyUsed { owner: alice, resource: "vms".into(), used: 8, limit: 10 },
    ]
}

/// Who the platform says each sample event is for.
pub fn sample_recipient(event: &NotificationEvent) -> Recipient {
    let alice = username("alice");
    let email = Email::parse("alice@example.com").expect("valid");
    match event {
        NotificationEvent::RegistrationSubmitted { .. } | NotificationEvent::KeyChangeRequested { .. } => {
            Recipient::Administrators { emails: vec![Email::parse("ops@example.com").expect("valid")] }
        }
        _ => Recipient::Person { username: alice, email },
    }
}

/// Every kind of event is delivered, and delivering one again is accepted (at-least-once).
/// `delivered` reads what the receiving end got, in order.
pub async fn check_all(notifier: &dyn Notifier, delivered: &dyn Fn() -> Vec<NotificationEvent>) {
    let events = sample_events();
    for event in &events {
        notifier
            .notify(event, &sample_recipient(event))
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", event.name()));
    }
    notifier.notify(&events[0], &sample_recipient(&events[0])).await.expect("a repeated delivery is accepted");
    let mut expected = events.clone();
    expected.push(events[0].clone());
    assert_eq!(delivered(), expected, "every event arrives, in order, unchanged");
}
