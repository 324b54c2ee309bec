//! The tenant network routes in tenant mode (core's `RecordingRouter` as the router): the
//! caller's own network with what its router holds, the administrators' list, show, create and
//! delete with their refusals; and in flat mode, answers that name `networks.mode`.

use basphere_core::router::{TenantRouter, TenantRouterSpec};
use basphere_core::testing::username;
use serde_json::Value;

use crate::fixture::{Api, Reply, Who, ROOT};

const ALICE_UID: u32 = 61001;

/// Asks for `owner`'s network as root and waits for its operation; the operation as accepted.
async fn make_network(api: &Api, owner: &str) -> Value {
    let made = api.send(&ROOT, "POST", &format!("/api/v1/admin/users/{owner}/network"), None).await;
    assert_eq!(made.status, 202, "{}", made.body);
    api.wait_idle().await;
    made.json()
}

/// What the router holds for the network `path` shows to `who`.
async fn router(api: &Api, who: &Who, path: &str) -> Value {
    let reply = api.get(who, path).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["router"].clone()
}

fn items(reply: &Reply) -> Vec<Value> {
    reply.json()["items"].as_array().unwrap_or_else(|| panic!("a page ({}): {}", reply.status, reply.body)).clone()
}

fn problem(reply: &Reply, status: u16, kind: &str, words: &str) {
    assert_eq!((reply.status, reply.problem().as_str()), (status, kind), "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert!(reply.json()["detail"].as_str().unwrap_or("").contains(words), "{words:?} in {}", reply.body);
}

#[tokio::test]
async fn an_account_sees_its_own_network_and_administrators_every_one() {
    let api = Api::tenant().await;
    let alice = Who::Bearer(api.account("alice", 1, false, Some(ALICE_UID)).await);
    let bob = Who::Bearer(api.account("bob", 2, false, None).await);
    // An account made by an administrator is given its network at once; without it (an account
    // from before tenant mode, say) it has none until an administrator asks for one.
    api.wait_idle().await;
    assert_eq!(api.get(&alice, "/api/v1/network").await.json()["state"], "ready");
    api.drop_network("alice").await;
    api.drop_network("bob").await;
    problem(&api.get(&alice, "/api/v1/network").await, 404, "not-found", "network not found: alice");

    let made = make_network(&api, "alice").await;
    assert_eq!((made["kind"].as_str(), made["owner"].as_str()), (Some("create_network"), Some("alice")), "{made}");
    assert_eq!(
        (made["resource"]["kind"].as_str(), made["resource"]["name"].as_str()),
        (Some("network"), Some("alice"))
    );
    let operation = api.get(&ROOT, &format!("/api/v1/operations/{}", made["id"].as_str().unwrap())).await.json();
    assert_eq!(operation["state"], "succeeded", "{operation}");

    let mine = api.get(&alice, "/api/v1/network").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let network = mine.json();
    assert_eq!(network["owner"], "alice");
    assert_eq!(
        network["lans"],
        serde_json::json!([
            {"name": "lan1", "vlan": 2001, "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"},
            {"name": "lan2", "vlan": 2002, "cidr": "10.0.2.0/24", "gateway": "10.0.2.1"},
        ])
    );
    assert_eq!((network["mtu"].as_u64(), network["state"].as_str()), (Some(1450), Some("ready")), "{network}");
    assert_eq!((network["wan_address"].as_str(), network["wan_prefix"].as_u64()), (Some("192.0.2.2"), Some(24)));
    assert_eq!(network["router"], serde_json::json!({"backend": "recording", "state": "in-place", "detail": null}));
    // On the socket, by her uid, the same.
    assert_eq!(api.get(&Who::Uid(ALICE_UID), "/api/v1/network").await.json()["id"], network["id"]);

    // Another account sees none of it; root, who owns nothing, is refused.
    let theirs = api.get(&bob, "/api/v1/network").await;
    problem(&theirs, 404, "not-found", "network not found: bob");
    assert!(!theirs.body.contains("alice") && !theirs.body.contains("192.0.2.2"), "{}", theirs.body);
    assert_eq!(api.get(&ROOT, "/api/v1/network").await.status, 403);

    // Administrators: one account's as the account sees it, and every one in a list.
    let shown = api.get(&ROOT, "/api/v1/admin/users/alice/network").await;
    assert_eq!((shown.status, shown.json()), (200, network.clone()), "{}", shown.body);
    problem(&api.get(&ROOT, "/api/v1/admin/users/bob/network").await, 404, "not-found", "network not found: bob");
    problem(&api.get(&ROOT, "/api/v1/admin/users/NOT_A_NAME/network").await, 404, "not-found", "NOT_A_NAME");
    let listed = api.get(&ROOT, "/api/v1/admin/networks").await;
    let listed = items(&listed);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0]["owner"].as_str(), listed[0]["wan_prefix"].as_u64()), (Some("alice"), Some(24)));
    assert!(listed[0]["router"].is_null(), "a list does not ask the routers: {}", listed[0]);
    assert_eq!(listed[0]["lans"], network["lans"]);
    assert_eq!(items(&api.get(&ROOT, "/api/v1/admin/networks?state=ready&limit=1").await).len(), 1);
    assert!(items(&api.get(&ROOT, "/api/v1/admin/networks?state=failed").await).is_empty());
    problem(&api.get(&ROOT, "/api/v1/admin/networks?state=melted").await, 400, "invalid-input", "melted");
    problem(&api.get(&ROOT, "/api/v1/admin/networks?owner=alice").await, 400, "invalid-input", "owner");
    problem(&api.get(&ROOT, "/api/v1/admin/networks?limit=0").await, 400, "invalid-input", "limit");

    // A second network for one account is refused; so is one for an account that does not exist.
    let again = api.send(&ROOT, "POST", "/api/v1/admin/users/alice/network", None).await;
    problem(&again, 409, "conflict", "alice has a network already (ready)");
    let nobody = api.send(&ROOT, "POST", "/api/v1/admin/users/nobody/network", None).await;
    problem(&nobody, 404, "not-found", "user not found: nobody");
    // A user cannot reach the administrators' routes, on her own network either.
    for (method, path) in [
        ("GET", "/api/v1/admin/networks"),
        ("GET", "/api/v1/admin/users/alice/network"),
        ("POST", "/api/v1/admin/users/alice/network"),
        ("DELETE", "/api/v1/admin/users/alice/network"),
    ] {
        problem(&api.send(&alice, method, path, None).await, 403, "forbidden", "");
    }
    assert_eq!(api.get(&alice, "/api/v1/network").await.json()["state"], "ready", "nothing was changed");
}

#[tokio::test]
async fn the_router_s_state_is_read_from_the_router_and_its_internals_shown_to_administrators_only() {
    let api = Api::tenant().await;
    let alice = Who::Bearer(api.account("alice", 1, false, None).await);
    api.drop_network("alice").await;
    make_network(&api, "alice").await;
    let mine = "/api/v1/network";
    let admins = "/api/v1/admin/users/alice/network";
    let tenant = username("alice");
    let held: TenantRouterSpec = api.router.recording.tenants()[&tenant].clone();

    // Changed behind Basphere's back: what differs is said.
    let moved = TenantRouterSpec { wan_address: "192.0.2.200/24".parse().unwrap(), ..held.clone() };
    api.router.recording.ensure(&moved).await.unwrap();
    let drifted = router(&api, &alice, mine).await;
    assert_eq!(drifted["state"], "drifted", "{drifted}");
    assert!(drifted["detail"].as_str().is_some_and(|d| !d.is_empty()), "what differs: {drifted}");

    // Its router's ports and rules removed by hand.
    api.router.recording.remove(&tenant).await.unwrap();
    assert_eq!(
        router(&api, &alice, mine).await,
        serde_json::json!({"backend": "recording", "state": "absent", "detail": null})
    );

    // A router host that does not answer: the account is told so, the administrator why.
    api.router.recording.ensure(&held).await.unwrap();
    api.router.set_unreachable(Some("`ip -j netns list` on router-host-7: connection refused"));
    let hers = router(&api, &alice, mine).await;
    assert_eq!(hers["state"], "unreachable");
    assert_eq!(hers["detail"].as_str(), Some(basphere_server::networks::UNREACHABLE_FOR_USERS), "{hers}");
    let theirs = router(&api, &ROOT, admins).await;
    assert_eq!(theirs["state"], "unreachable");
    assert!(theirs["detail"].as_str().unwrap_or("").contains("router-host-7: connection refused"), "{theirs}");
    api.router.set_unreachable(None);
    assert_eq!(
        router(&api, &alice, mine).await["state"],
        "in-place",
        "the router answers again and holds what was asked"
    );
}

#[tokio::test]
async fn a_network_is_deleted_only_once_nothing_is_on_it_and_can_be_made_again() {
    let api = Api::tenant().await;
    let alice = Who::Bearer(api.account("alice", 1, false, None).await);
    api.drop_network("alice").await;
    make_network(&api, "alice").await;
    let vm = api.send(&alice, "POST", "/api/v1/vms", Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"tiny"}"#)).await;
    assert_eq!(vm.status, 202, "{}", vm.body);
    api.wait_idle().await;
    let refused = api.send(&ROOT, "DELETE", "/api/v1/admin/users/alice/network", None).await;
    problem(&refused, 409, "conflict", "still has the VM web on it");
    assert_eq!(api.get(&alice, "/api/v1/network").await.json()["state"], "ready", "refused: nothing changed");
    problem(&api.send(&ROOT, "DELETE", "/api/v1/admin/users/bob/network", None).await, 404, "not-found", "bob");

    assert_eq!(api.send(&alice, "DELETE", "/api/v1/vms/web", None).await.status, 202);
    api.wait_idle().await;
    let deleting = api.send(&ROOT, "DELETE", "/api/v1/admin/users/alice/network", None).await;
    assert_eq!(deleting.status, 202, "{}", deleting.body);
    let operation = deleting.json();
    assert_eq!(operation["kind"], "delete_network", "{operation}");
    assert_eq!(
        deleting.header("location"),
        Some(format!("/api/v1/operations/{}", operation["id"].as_str().unwrap()).as_str())
    );
    api.wait_idle().await;
    problem(&api.get(&alice, "/api/v1/network").await, 404, "not-found", "network not found: alice");
    assert!(!api.router.recording.tenants().contains_key(&username("alice")), "its router is gone");
    assert!(items(&api.get(&ROOT, "/api/v1/admin/networks").await).is_empty());
    let history = items(&api.get(&ROOT, "/api/v1/admin/networks?state=deleted").await);
    assert_eq!(history.len(), 2, "the first network, dropped, and this one: {history:?}");
    assert!(history.iter().all(|n| n["state"] == "deleted"), "{history:?}");

    // Made again: the lowest free ids, the ones it had.
    make_network(&api, "alice").await;
    let again = api.get(&alice, "/api/v1/network").await.json();
    assert_eq!((again["state"].as_str(), again["lans"][0]["vlan"].as_u64()), (Some("ready"), Some(2001)), "{again}");
}

#[tokio::test]
async fn a_network_whose_router_failed_says_why_and_is_made_again_by_asking_again() {
    let api = Api::tenant().await;
    let alice = Who::Bearer(api.account("alice", 1, false, None).await);
    api.drop_network("alice").await;
    api.router.recording.fail_next(1);
    let made = make_network(&api, "alice").await;
    let operation = api.get(&ROOT, &format!("/api/v1/operations/{}", made["id"].as_str().unwrap())).await.json();
    assert_eq!(operation["state"], "failed", "{operation}");
    let failed = api.get(&alice, "/api/v1/network").await.json();
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["reason"].as_str().is_some_and(|r| !r.is_empty()), "{failed}");
    assert_eq!(items(&api.get(&ROOT, "/api/v1/admin/networks?state=failed").await).len(), 1);
    make_network(&api, "alice").await;
    let ready = api.get(&alice, "/api/v1/network").await.json();
    assert_eq!((ready["state"].as_str(), &ready["id"]), (Some("ready"), &failed["id"]), "the same network: {ready}");
}

#[tokio::test]
async fn with_tenant_networks_off_the_answers_name_networks_mode() {
    let api = Api::new().await;
    let alice = Who::Bearer(api.account("alice", 1, false, None).await);
    for (who, method, path) in [
        (&alice, "GET", "/api/v1/network"),
        (&ROOT, "GET", "/api/v1/admin/users/alice/network"),
        (&ROOT, "POST", "/api/v1/admin/users/alice/network"),
    ] {
        let reply = api.send(who, method, path, None).await;
        problem(&reply, 501, "unavailable", "tenant networks are off (networks.mode: flat)");
        assert!(reply.body.contains("set networks.mode: tenant"), "what to change: {}", reply.body);
    }
    assert!(items(&api.get(&ROOT, "/api/v1/admin/networks").await).is_empty());
    problem(&api.send(&ROOT, "DELETE", "/api/v1/admin/users/alice/network", None).await, 404, "not-found", "alice");
    // Nothing was recorded.
    let operations = items(&api.get(&ROOT, "/api/v1/admin/operations").await);
    assert!(operations.iter().all(|op| op["kind"] != "create_network"), "{operations:?}");
}
