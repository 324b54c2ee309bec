//! A platform process in tenant mode with the real `linux` router, for the crash test of network
//! creation: it is killed with SIGKILL while an approval makes an account's network, and run
//! again to finish it.
//!
//! Usage: `network-child DB_PATH HOST_NAMESPACE PREFIX approve|finish|purge NAME`.
//! - `approve`: registers NAME and approves it, prints `approving`, waits for the approval.
//! - `finish`: resumes what an earlier life left unfinished and waits until nothing is.
//! - `purge`: purges NAME and waits for the purge.
//!
//! Each prints `done <operation state>` at its end. The router makes its namespaces as
//! `<PREFIX>r-<tenant>` with its WAN port on the bridge `wan` of HOST_NAMESPACE (made by the
//! test).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::notifier::LogNotifier;
use basphere_core::platform::Submission;
use basphere_core::store::OperationFilter;
use basphere_core::testing::ssh_key;
use basphere_core::validate::RegistrationForm;
use basphere_core::{Actor, Config, Platform, StoreExt};
use basphere_ipam::BlockIpam;
use basphere_router::{LinuxRouter, LinuxRouterSettings};
use basphere_store::SqliteStore;

const WAIT: Duration = Duration::from_secs(60);

fn say(line: &str) {
    println!("{line}");
    std::io::stdout().flush().expect("flush");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, host, prefix, mode, name] = args.as_slice() else {
        panic!("usage: network-child DB_PATH HOST_NAMESPACE PREFIX approve|finish|purge NAME");
    };
    let yaml = format!(
        "recaptcha: {{enabled: false}}\n\
         networks:\n  mode: tenant\n  vlan_range: 2001-2999\n  distributed_switch: dvs\n  wan_port_group: wan\n  \
         wan: {{cidr: 192.0.2.0/24, gateway: 192.0.2.1}}\n  \
         linux: {{namespace_prefix: {prefix}r-, host_namespace: {host}, wan_bridge: wan, timeout_seconds: 20}}\n"
    );
    let config = Arc::new(Config::from_yaml(&yaml).expect("a valid configuration"));
    let basphere_core::config::NetworksConfig::Tenant(tenant) = &config.networks else { unreachable!() };
    let router = LinuxRouter::new(LinuxRouterSettings::from_section(&tenant.router_section).expect("settings"))
        .expect("a router");
    let store = Arc::new(SqliteStore::open(db).expect("the store"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let platform = Platform::builder(
            config.clone(),
            store.clone(),
            Arc::new(BlockIpam::new(config.pools.clone()).expect("pools")),
            Arc::new(basphere_core::mock::MockProvisioner::with_default_catalog().with_switch("dvs")),
            Arc::new(LogNotifier),
        )
        .router(Arc::new(router))
        .instance("network-child")
        .build();
        let admin = Actor::admin("root", "test");
        let operation = match mode.as_str() {
            "approve" => {
                let form = RegistrationForm {
                    username: name.clone(),
                    email: format!("{name}@example.com"),
                    team: "payments".into(),
                    public_key: ssh_key(7).as_str().into(),
                };
                let from = Submission { client: "192.0.2.7".into(), human_response: None };
                platform.accounts().register(&from, form).await.expect("registered");
                let operation = platform.accounts().approve_registration(&admin, name).await.expect("approving");
                say("approving");
                platform.runtime().wait_operation(operation.id, WAIT).await.expect("approved")
            }
            "finish" => {
                let resumed = platform.runtime().resume_unfinished().await.expect("resumed");
                let mut last = None;
                for id in resumed {
                    last = Some(platform.runtime().wait_operation(id, WAIT).await.expect("finished"));
                }
                let unfinished = store
                    .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
                    .expect("operations");
                assert!(unfinished.is_empty(), "still unfinished: {unfinished:?}");
                let Some(last) = last else {
                    say("done nothing");
                    return;
                };
                last
            }
            "purge" => {
                let operation = platform.accounts().purge(&admin, name).await.expect("purging");
                platform.runtime().wait_operation(operation.id, WAIT).await.expect("purged")
            }
            other => panic!("unknown mode {other}"),
        };
        say(&format!("done {} {}", operation.state, operation.error.unwrap_or_default()));
    });
}
