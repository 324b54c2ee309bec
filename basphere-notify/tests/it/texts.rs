//! Every event has a text; the welcome text says how to log in, from the configuration.

use basphere_core::model::NotificationEvent;
use basphere_core::notifier::Recipient;
use basphere_core::testing::notifier::{sample_events, sample_recipient};
use basphere_notify::text::{render, TextSettings};

use crate::common::{alice, config, email, username, vm_failed};

fn approved() -> NotificationEvent {
    NotificationEvent::RegistrationApproved { username: username("alice"), email: email("alice@example.com") }
}

#[test]
fn every_event_has_a_subject_and_a_body_for_its_recipient() {
    let settings = TextSettings::from_config(&config(""));
    for event in sample_events() {
        let recipient = sample_recipient(&event);
        let message = render(&event, &recipient, &settings);
        assert!(message.subject.starts_with("[Basphere] ") && message.subject.len() > 12, "{message:?}");
        assert!(!message.subject.contains(['\r', '\n']), "{message:?}");
        assert!(message.body.lines().count() >= 3, "{message:?}");
        match recipient {
            Recipient::Administrators { .. } => {
                assert!(message.body.starts_with("Hello,\n"), "{message:?}");
                assert!(message.body.contains("basphere admin"), "admins are told how to decide: {message:?}");
            }
            _ => assert!(message.body.starts_with("Hello alice,\n"), "{message:?}"),
        }
    }
}

#[test]
fn the_welcome_text_logs_in_on_port_22_without_p() {
    let settings = TextSettings::from_config(&config("bastion: {address: bastion.corp.com}"));
    let body = render(&approved(), &alice(), &settings).body;
    assert!(body.contains("\n    ssh alice@bastion.corp.com\n"), "{body}");
    assert!(!body.contains("ssh -p"), "{body}");
    assert!(
        body.contains("    Host bastion\n        HostName bastion.corp.com\n        User alice\n        Port 22\n"),
        "{body}"
    );
    assert!(body.contains("        ServerAliveInterval 30\n        ServerAliveCountMax 3\n"), "{body}");
    assert!(body.contains("basphere token create laptop"), "how to get a token for elsewhere: {body}");
    assert!(body.contains("basphere vm create web --os ubuntu-24.04 --spec small --wait\n"), "{body}");
    assert!(body.contains("    basphere quota\n"), "{body}");
}

#[test]
fn the_welcome_text_names_another_port_and_the_pools() {
    let yaml = "bastion: {address: bastion.corp.com, port: 50022}\n\
                network: {cidr: 10.254.0.0/22, gateway: 10.254.0.1, block_size: 16,\n\
                          pools: [{name: lab, cidr: 172.20.0.0/16, gateway: 172.20.0.1}]}\n";
    let settings = TextSettings::from_config(&config(yaml));
    let body = render(&approved(), &alice(), &settings).body;
    assert!(body.contains("\n    ssh -p 50022 alice@bastion.corp.com\n"), "{body}");
    assert!(body.contains("        Port 50022\n"), "{body}");
    assert!(
        body.contains(
            "    Host 10.254.0.* 10.254.1.* 10.254.2.* 10.254.3.* 172.20.*\n        User alice\n        ProxyJump bastion\n"
        ),
        "{body}"
    );
}

#[test]
fn the_default_network_gives_its_own_pattern() {
    // The embedded default network is 10.254.0.0/21: eight third octets.
    let settings = TextSettings::from_config(&config(""));
    let expected: Vec<String> = (0..8).map(|octet| format!("10.254.{octet}.*")).collect();
    assert_eq!(settings.vm_host_patterns(), expected);
}

#[test]
fn rejections_carry_the_reason_on_lines_of_its_own() {
    let settings = TextSettings::from_config(&config(""));
    let event = NotificationEvent::RegistrationRejected {
        username: username("alice"),
        email: email("alice@example.com"),
        reason: "unknown team\r\nSubject: hijacked\n\nssh evil@elsewhere".into(),
    };
    let message = render(&event, &alice(), &settings);
    assert!(
        message.body.contains("Reason:\n    unknown team\n    Subject: hijacked\n\n    ssh evil@elsewhere\n"),
        "{}",
        message.body
    );
    assert!(!message.body.contains('\r'));
    let empty = NotificationEvent::KeyChangeRejected {
        username: username("alice"),
        email: email("alice@example.com"),
        reason: String::new(),
    };
    assert!(render(&empty, &alice(), &settings).body.contains("Reason:\n    (no reason was given)\n"));
    assert!(render(&vm_failed("template not found"), &alice(), &settings)
        .body
        .contains("Reason:\n    template not found\n"));
}

#[test]
fn quota_text_gives_used_and_limit() {
    let settings = TextSettings::from_config(&config(""));
    let event =
        NotificationEvent::QuotaNearlyUsed { owner: username("alice"), resource: "vms".into(), used: 8, limit: 10 };
    let message = render(&event, &alice(), &settings);
    assert_eq!(message.subject, "[Basphere] You have used 8 of 10 VMs");
    assert!(message.body.contains("8 of the 10 VMs your quota allows (80%)"), "{}", message.body);
    // A resource name is free text: it cannot break the subject.
    let odd = NotificationEvent::QuotaNearlyUsed {
        owner: username("alice"),
        resource: "disks\r\nBcc: x@evil".into(),
        used: 9,
        limit: 10,
    };
    assert_eq!(render(&odd, &alice(), &settings).subject, "[Basphere] You have used 9 of 10 disks Bcc: x@evil");
}

#[test]
fn vm_ready_says_where_to_log_in() {
    let settings = TextSettings::from_config(&config(""));
    let event = NotificationEvent::VmReady {
        owner: username("alice"),
        name: basphere_core::validate::ResourceName::parse("web").unwrap(),
        ip: Some([10, 254, 0, 33].into()),
    };
    let message = render(&event, &alice(), &settings);
    assert_eq!(message.subject, "[Basphere] VM web is ready");
    assert!(message.body.contains("    ssh alice@10.254.0.33\n"), "{}", message.body);
}

#[test]
#[ignore = "prints every text, for reading: cargo test -p basphere-notify --test it -- --ignored --nocapture"]
fn print_every_text() {
    let settings = TextSettings::from_config(&config("bastion: {address: bastion.corp.com, port: 2222}"));
    for event in sample_events() {
        let message = render(&event, &sample_recipient(&event), &settings);
        println!("==== {}\nSubject: {}\n\n{}", event.name(), message.subject, message.body);
    }
}
