//! Behaviour of the simulated vSphere and the fault injector beyond the shared contract.

use std::sync::Arc;
use std::time::Duration;

use basphere_core::mock::*;
use basphere_core::provisioner::{PowerAction, Provisioner};
use basphere_core::testing::provisioner::request;
use basphere_core::Notifier;

#[tokio::test]
async fn simulator_needs_the_folder_and_a_known_template() {
    let sim = MockProvisioner::with_default_catalog();
    let request = request("alice", "web", [10, 254, 0, 33]);
    let error = sim.create_vm(&request).await.unwrap_err().to_string();
    assert!(error.contains("folder basphere-vms/alice not found"), "{error}");
    sim.ensure_folder(&request.owner).await.unwrap();
    let mut unknown = request.clone();
    unknown.os.template = "windows-2022".into();
    let error = sim.create_vm(&unknown).await.unwrap_err().to_string();
    assert!(error.contains("template windows-2022 not found"), "{error}");
    assert!(sim.vms().is_empty(), "failed clones leave nothing behind");
    sim.create_vm(&request).await.unwrap();
    let vm = sim.vm("alice-web").unwrap();
    assert_eq!(vm.clone, Some(CloneSpec::from(&request)), "the simulator keeps what it was asked to clone");
    assert_eq!(
        sim.calls(),
        ["create_vm:alice-web", "ensure_folder:alice", "create_vm:alice-web", "create_vm:alice-web"]
    );
}

#[tokio::test(start_paused = true)]
async fn simulator_takes_its_task_time() {
    let delays = MockDelays {
        clone: Duration::from_secs(2),
        power: Duration::from_millis(300),
        destroy: Duration::from_millis(500),
    };
    let sim = MockProvisioner::with_default_catalog().with_delays(delays);
    let request = request("alice", "web", [10, 254, 0, 33]);
    sim.ensure_folder(&request.owner).await.unwrap();
    let start = tokio::time::Instant::now();
    sim.create_vm(&request).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(2300));
    let start = tokio::time::Instant::now();
    sim.destroy_vm(&request.vm_ref()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test]
async fn out_of_band_changes_show_in_the_inventory() {
    let sim = MockProvisioner::with_default_catalog();
    let request = request("alice", "web", [10, 254, 0, 33]);
    sim.ensure_folder(&request.owner).await.unwrap();
    sim.create_vm(&request).await.unwrap();
    sim.plant("basphere-vms/alice", "alice-stray");
    assert!(sim.remove_out_of_band("alice-web").is_some());
    let names: Vec<String> = sim.inventory().await.unwrap().into_iter().map(|vm| vm.vsphere_name).collect();
    assert_eq!(names, ["alice-stray"]);
    let error = sim.power(&request.vm_ref(), PowerAction::Start).await.unwrap_err();
    assert_eq!(error.kind(), "not-found");
}

#[tokio::test]
async fn fault_injector_fails_half_applies_and_hangs() {
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let faulty = FaultInjectingProvisioner::new(sim.clone());
    let request = request("alice", "web", [10, 254, 0, 33]);
    faulty.ensure_folder(&request.owner).await.unwrap();

    faulty.inject(Method::CreateVm, Fault::Fail, 1);
    let error = faulty.create_vm(&request).await.unwrap_err();
    assert_eq!(error.kind(), "backend");
    assert!(sim.vm("alice-web").is_none(), "Fail happens before the backend");

    faulty.inject(Method::CreateVm, Fault::FailAfter, 1);
    assert!(faulty.create_vm(&request).await.is_err());
    assert!(sim.vm("alice-web").is_some(), "FailAfter lets the call take effect");

    faulty.inject(Method::DestroyVm, Fault::Hang(Duration::from_millis(20)), 1);
    let error = faulty.destroy_vm(&request.vm_ref()).await.unwrap_err();
    assert_eq!(error.kind(), "timeout");
    assert!(sim.vm("alice-web").is_some());
    faulty.destroy_vm(&request.vm_ref()).await.expect("faults are used up");
    assert!(sim.vm("alice-web").is_none());
    assert_eq!(faulty.injected(), 3);
}

#[tokio::test]
async fn recording_notifier_can_refuse_deliveries() {
    let notifier = RecordingNotifier::new();
    let event = basphere_core::testing::notifier::sample_events().remove(0);
    let to = basphere_core::testing::notifier::sample_recipient(&event);
    notifier.fail_next(2);
    assert!(notifier.notify(&event, &to).await.is_err());
    assert!(notifier.notify(&event, &to).await.is_err());
    notifier.notify(&event, &to).await.unwrap();
    assert_eq!(notifier.events(), vec![event]);
    assert_eq!(notifier.recipients(), vec![to], "who it was for, with the event");
    assert_eq!(notifier.attempts(), 3);
}
