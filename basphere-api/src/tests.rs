//! The wire types against documents as the server sends them: every field kept, in order.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;

/// Parses `document` and writes it again: the same text means no field was dropped, renamed
/// or reordered.
fn round_trip<T: Serialize + DeserializeOwned>(document: &str) -> T {
    let parsed: T = serde_json::from_str(document).unwrap_or_else(|error| panic!("{error}: {document}"));
    assert_eq!(serde_json::to_string(&parsed).unwrap(), document);
    parsed
}

const VM: &str = r#"{"id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e0f","name":"web-1","owner":"alice","os":"ubuntu-24.04","spec":"small","cpu":2,"memory_mb":4096,"disk_gb":40,"ip":"10.254.0.32","state":"running","reason":null,"created_at":"2025-06-01T10:00:00.123456789Z","updated_at":"2025-06-01T10:00:05Z"}"#;
const OPERATION: &str = r#"{"id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e10","kind":"create_vm","state":"running","owner":"alice","resource":{"kind":"vm","id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e0f","name":"web-1"},"steps":[{"name":"clone","state":"done","started_at":"2025-06-01T10:00:00Z","finished_at":"2025-06-01T10:00:01Z"},{"name":"power_on","state":"running","started_at":"2025-06-01T10:00:01Z","finished_at":null},{"name":"wait_ip","state":"pending","started_at":null,"finished_at":null}],"error":null,"log_tail":["cloning"],"requested_by":"alice","created_at":"2025-06-01T10:00:00Z","updated_at":"2025-06-01T10:00:01Z"}"#;
const USER: &str = r#"{"username":"alice","email":"alice@example.com","team":"payments","role":"user","status":"active","uid":61001,"ssh_key_fingerprint":"SHA256:abc","created_at":"2025-06-01T10:00:00Z"}"#;
const TOKEN: &str = r#"{"id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e11","owner":"alice","name":"laptop","scope":"user","created_at":"2025-06-01T10:00:00Z","expires_at":"2025-07-01T10:00:00Z","revoked_at":null}"#;

const NETWORK: &str = r#"{"id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e14","owner":"alice","lans":[{"name":"lan1","vlan":2001,"cidr":"10.0.1.0/24","gateway":"10.0.1.1"},{"name":"lan2","vlan":2002,"cidr":"10.0.2.0/24","gateway":"10.0.2.1"}],"mtu":1450,"wan_address":"192.0.2.2","wan_prefix":24,"state":"ready","reason":null,"router":{"backend":"linux","state":"drifted","detail":"lan2: absent"},"created_at":"2025-06-01T10:00:00Z","updated_at":"2025-06-01T10:00:05Z"}"#;

#[test]
fn views_keep_every_field_in_the_order_the_server_sends() {
    let vm: VmView = round_trip(VM);
    assert_eq!(vm.ip.map(|ip| ip.to_string()).as_deref(), Some("10.254.0.32"));
    let op: OperationView = round_trip(OPERATION);
    assert!(!op.is_finished());
    assert_eq!(op.current_step().map(|s| s.name.as_str()), Some("power_on"));
    round_trip::<CreateVmsResponse>(&format!(r#"{{"vms":[{VM}],"operations":[{OPERATION}]}}"#));
    round_trip::<Page<VmView>>(&format!(r#"{{"items":[{VM}],"next":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e0f"}}"#));
    round_trip::<Page<OperationView>>(&format!(r#"{{"items":[{OPERATION}],"next":null}}"#));
    round_trip::<UserView>(USER);
    round_trip::<MeView>(&format!(
        r#"{{"name":"alice","role":"user","source":"tcp:127.0.0.1:5000","account":{USER}}}"#
    ));
    round_trip::<MeView>(r#"{"name":"root","role":"admin","source":"unix:uid=0,pid=7","account":null}"#);
    round_trip::<TokenView>(TOKEN);
    round_trip::<CreatedToken>(&format!(r#"{{"token":{TOKEN},"secret":"bsp_x"}}"#));
    round_trip::<QuotaView>(
        r#"{"limits":{"vms":10,"clusters":2,"ips":10,"vcpus":20,"memory_mb":40960,"disk_gb":500,"nodes_per_cluster":5},"usage":{"vms":1,"clusters":0,"ips":1,"vcpus":2,"memory_mb":4096,"disk_gb":40}}"#,
    );
    round_trip::<CatalogView>(
        r#"{"os":[{"key":"ubuntu-24.04","description":"Ubuntu 24.04 LTS"}],"specs":[{"key":"small","description":"Small","cpu":2,"memory_mb":4096,"disk_gb":40}],"cluster_types":[{"key":"dev","description":"Development cluster","control_plane_count":1,"worker_count":2,"control_plane_spec":"medium","worker_spec":"medium"}],"node_specs":[{"key":"small","cpu":2,"memory_mb":4096,"disk_gb":50}]}"#,
    );
    // An older server's catalog, without clusters, still parses.
    let older: CatalogView = serde_json::from_str(r#"{"os":[],"specs":[]}"#).unwrap();
    assert!(older.cluster_types.is_empty());
    let cluster: ClusterView = round_trip(
        r#"{"id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e13","name":"dev","owner":"alice","type":"dev","kubernetes_version":"v1.31.4","control_plane_count":1,"control_plane_spec":"medium","worker_count":2,"worker_spec":"medium","control_plane_ip":"10.254.0.40","state":"provisioning","reason":"dev-md-x: WaitingForIPAddress","phase":"Provisioned","conditions":[{"type":"InfrastructureReady","status":"True","reason":null,"message":null,"since":"2025-06-01T10:00:00Z"}],"control_plane_ready":1,"workers_ready":0,"node_addresses":["10.254.0.41","10.254.0.42"],"created_at":"2025-06-01T10:00:00Z","updated_at":"2025-06-01T10:00:05Z"}"#,
    );
    assert_eq!(cluster.node_addresses.len(), 2);
    round_trip::<KubeconfigView>(r#"{"cluster":"dev","kubeconfig":"apiVersion: v1\n"}"#);
    round_trip::<AuditView>(
        r#"{"id":"0198c2a0-1b2c-7d3e-8f40-5a6b7c8d9e12","at":"2025-06-01T10:00:00Z","actor":"alice","action":"vm.create","resource":"vm:alice/web-1","source":"tcp:127.0.0.1:5000","outcome":"success","details":{"count":1,"spec":"small"}}"#,
    );
    round_trip::<ReconcileView>(
        r#"{"at":"2025-06-01T10:00:00Z","lost":["alice/web-2"],"found":[],"power_changed":[{"vm":"alice/web-1","state":"stopped"}],"strays":[{"vsphere_name":"x","folder":"basphere-vms/alice","backend_id":"vm-42"}],"adopted":["bob/db"]}"#,
    );
    let network: NetworkView = round_trip(NETWORK);
    assert_eq!((network.lans[1].vlan, network.wan_address.to_string()), (2002, "192.0.2.2".to_owned()));
    round_trip::<Page<NetworkView>>(&format!(
        r#"{{"items":[{}],"next":null}}"#,
        NETWORK.replacen(
            r#""router":{"backend":"linux","state":"drifted","detail":"lan2: absent"}"#,
            r#""router":null"#,
            1
        )
    ));
    round_trip::<Health>(r#"{"status":"ok"}"#);
    round_trip::<Readiness>(r#"{"backend":"ok","store":"ok","vm_backend":"simulated"}"#);
    let problem: Problem = round_trip(
        r#"{"type":"urn:basphere:problem:invalid-input","title":"Invalid input","status":400,"detail":"two problems","errors":["a","b"]}"#,
    );
    assert_eq!(problem.kind(), Some("invalid-input"));
    let single: Problem = round_trip(
        r#"{"type":"urn:basphere:problem:not-found","title":"Not found","status":404,"detail":"vm not found: web"}"#,
    );
    assert_eq!(single, Problem::new("not-found", 404, "vm not found: web"));
}

#[test]
fn views_accept_fields_a_newer_server_adds() {
    let newer = VM.replacen(r#""name":"web-1","#, r#""name":"web-1","tags":["a"],"#, 1);
    let vm: VmView = serde_json::from_str(&newer).unwrap();
    assert_eq!(vm.name, "web-1");
    let problem: Problem =
        serde_json::from_str(r#"{"type":"about:blank","title":"x","status":418,"detail":"d","instance":"/x"}"#)
            .unwrap();
    assert_eq!(problem.kind(), None, "a type that is not Basphere's has no kind");
}

#[test]
fn requests_refuse_unknown_fields_and_fill_defaults() {
    let create: CreateVmsRequest =
        serde_json::from_str(r#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#).unwrap();
    assert_eq!(create.count, 1);
    let error = serde_json::from_str::<CreateVmsRequest>(r#"{"name":"web","os":"o","spec":"s","owner":"bob"}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `owner`"), "{error}");
    let user: CreateUserRequest =
        serde_json::from_str(r#"{"username":"zed","email":"zed@example.com","ssh_key":"ssh-ed25519 AAAA"}"#).unwrap();
    assert_eq!((user.team.as_str(), user.uid, user.admin), ("", None, false));
    assert!(serde_json::from_str::<CreateTokenRequest>(r#"{"name":"x","secret":"y"}"#).is_err());
    assert!(serde_json::from_str::<QuotaOverrideRequest>(r#"{"max_vms":3}"#).is_err());
    // What a client sends is what the server reads.
    let quota = QuotaOverrideRequest { vms: Some(4), ..QuotaOverrideRequest::default() };
    let sent = serde_json::to_string(&quota).unwrap();
    assert_eq!(serde_json::from_str::<QuotaOverrideRequest>(&sent).unwrap(), quota);
}

#[test]
fn every_kind_has_a_title() {
    for (kind, title) in PROBLEM_KINDS {
        assert_eq!(super::title(kind), *title);
    }
    assert_eq!(title("something-new"), "Error");
}

mod endpoints {
    use std::collections::BTreeSet;

    use crate::endpoint::{template_params, Endpoint};
    use crate::endpoints::{self, admin, clusters, vms, NamePath, UserVmActionPath, UsernamePath};
    use crate::{ListQuery, NetworkListQuery, WatchQuery};

    #[test]
    fn every_path_template_names_the_fields_of_its_path_type_in_order() {
        for info in endpoints::all() {
            let fields: Vec<&str> = info.params.iter().map(|param| param.name).collect();
            assert_eq!(template_params(info.path), fields, "{} {}", info.method.as_str(), info.path);
        }
    }

    #[test]
    fn every_endpoint_is_defined_once() {
        let all = endpoints::all();
        let routes: BTreeSet<_> = all.iter().map(|info| (info.method, info.path)).collect();
        let ids: BTreeSet<_> = all.iter().map(|info| info.operation_id).collect();
        assert_eq!(routes.len(), all.len(), "a method and path defined twice");
        assert_eq!(ids.len(), all.len(), "an operation id used twice");
        assert!(all.iter().all(|info| info.path.starts_with('/')));
    }

    #[test]
    fn a_url_has_its_segments_encoded_and_its_query_without_absent_fields() {
        let path = NamePath { name: "web 1/../x".into() };
        assert_eq!(vms::Get::url(&path, &()), "/api/v1/vms/web%201%2F..%2Fx");
        let query = ListQuery { state: Some("running".into()), limit: Some(1000), ..Default::default() };
        assert_eq!(vms::List::url(&(), &query), "/api/v1/vms?limit=1000&state=running");
        assert_eq!(vms::List::url(&(), &ListQuery::default()), "/api/v1/vms");
        let path = UserVmActionPath { username: "alice".into(), name: "web".into(), action: "stop".into() };
        assert_eq!(admin::PowerVm::url(&path, &()), "/api/v1/admin/users/alice/vms/web/stop");
        let path = UsernamePath { username: "alice".into() };
        assert_eq!(admin::CreateNetwork::url(&path, &()), "/api/v1/admin/users/alice/network");
        let query = NetworkListQuery { state: Some("deleted".into()), limit: Some(5), after: None };
        assert_eq!(admin::ListNetworks::url(&(), &query), "/api/v1/admin/networks?limit=5&state=deleted");
    }

    #[test]
    fn a_watch_query_writes_its_time_so_that_it_reads_back() {
        let since: chrono::DateTime<chrono::Utc> = "2025-06-01T10:00:00.123456Z".parse().unwrap();
        let query = WatchQuery { since: Some(since), timeout: Some(25) };
        let url = clusters::Watch::url(&NamePath { name: "dev".into() }, &query);
        assert_eq!(url, "/api/v1/clusters/dev/watch?since=2025-06-01T10%3A00%3A00.123456Z&timeout=25");
    }
}
