//! The fan-out: a delivery succeeds only when every notifier succeeded.

use std::sync::Arc;

use basphere_core::error::Error;
use basphere_core::mock::RecordingNotifier;
use basphere_core::notifier::Notifier;
use basphere_core::testing::notifier::check_all;
use basphere_notify::Fanout;

use crate::common::{alice, vm_failed};

#[tokio::test]
async fn every_notifier_gets_every_event() {
    let (first, second) = (Arc::new(RecordingNotifier::new()), Arc::new(RecordingNotifier::new()));
    let fanout = Fanout::new(vec![first.clone(), second.clone()]);
    check_all(&fanout, &|| first.events()).await;
    assert_eq!(first.events(), second.events());
}

#[tokio::test]
async fn a_failure_names_the_notifier_and_the_others_still_get_the_event() {
    let (first, second) = (Arc::new(RecordingNotifier::new()), Arc::new(RecordingNotifier::new()));
    first.fail_next(1);
    let fanout = Fanout::new(vec![first.clone(), second.clone()]);
    let error = fanout.notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(
        error.to_string().contains("recording failed: recording backend failed: delivery of vm_failed refused"),
        "{error}"
    );
    assert_eq!((first.events().len(), second.events().len()), (0, 1));
    fanout.notify(&vm_failed("x"), &alice()).await.unwrap();
}
