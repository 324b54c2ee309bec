//! Every route against every kind of caller: the status each gets, that errors are problem
//! documents, that nothing of another user's leaks, and that no header claims an identity.

use std::collections::BTreeSet;

use crate::fixture::{Api, Reply, Who, ROOT, SERVER_UID};

/// The callers, in the order of the expected statuses in `ROUTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// TCP without a token.
    Anonymous,
    /// alice's token: she owns the VM `web`, an operation and a spare token.
    Owner,
    /// bob's token: another user.
    Other,
    /// An admin-scoped token of the admin account `ops`.
    Admin,
    /// A revoked token of alice's.
    Revoked,
    /// An expired token of alice's.
    Expired,
    /// A user-scoped token of the admin account `ops`: a user, not an admin.
    AdminUserScoped,
    /// alice on the socket, by the uid her account was registered with.
    OwnerUid,
    /// A uid on the socket that no account has.
    StrangerUid,
    /// root on the socket: the system administrator, who owns no resources.
    Root,
    /// The server's own uid on the socket: an administrator too.
    ServerUid,
}

const CALLERS: [Caller; 11] = [
    Caller::Anonymous,
    Caller::Owner,
    Caller::Other,
    Caller::Admin,
    Caller::Revoked,
    Caller::Expired,
    Caller::AdminUserScoped,
    Caller::OwnerUid,
    Caller::StrangerUid,
    Caller::Root,
    Caller::ServerUid,
];

const ALICE_UID: u32 = 61001;
const STRANGER_UID: u32 = 61999;

/// One server in tenant mode with alice (a tenant network, a running VM `web`, its operation, a
/// spare and a revoked token, an expired one), bob (a network of his own, so he can create VMs and
/// clusters), carol (a network with nothing on it), dave (no network) and the admin account `ops`
/// (a network of its own).
struct World {
    api: Api,
    alice: String,
    bob: String,
    admin: String,
    revoked: String,
    expired: String,
    admin_user_scoped: String,
    vm_id: String,
    vm_ip: String,
    operation: String,
    spare_token: String,
}

impl World {
    async fn new() -> World {
        let api = Api::tenant().await;
        let alice = api.account("alice", 1, false, Some(ALICE_UID)).await;
        let bob = api.account("bob", 2, false, None).await;
        api.account("carol", 4, false, None).await;
        let admin_user_scoped = api.account("ops", 3, true, None).await;
        // Every account is given a network in tenant mode; dave's is taken away again.
        api.account("dave", 5, false, None).await;
        api.drop_network("dave").await;
        let admin = api.token("ops", "admin").await;
        let revoked = api.token("alice", "user").await;
        let expired = api.token("alice", "user").await;
        api.expire(&expired);
        let created = api
            .send(
                &Who::Bearer(alice.clone()),
                "POST",
                "/api/v1/vms",
                Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#),
            )
            .await;
        assert_eq!(created.status, 202, "{}", created.body);
        let created = created.json();
        let cluster = api
            .send(&Who::Bearer(alice.clone()), "POST", "/api/v1/clusters", Some(r#"{"name":"kube","type":"dev"}"#))
            .await;
        assert_eq!(cluster.status, 202, "{}", cluster.body);
        api.wait_idle().await;
        // Until its control plane is up, the kubeconfig is a conflict: wait for it.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while api.get(&Who::Bearer(alice.clone()), "/api/v1/clusters/kube/kubeconfig").await.status != 200 {
            assert!(tokio::time::Instant::now() < deadline, "the cluster's kubeconfig never came");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let asked = api.send(&Who::Anonymous, "POST", "/api/v1/register", Some(REGISTER)).await;
        assert_eq!(asked.status, 202, "{}", asked.body);
        let spare = api.send(&Who::Bearer(alice.clone()), "POST", "/api/v1/tokens", Some(r#"{"name":"spare"}"#)).await;
        assert_eq!(spare.status, 201, "{}", spare.body);
        let tokens = api.get(&Who::Bearer(alice.clone()), "/api/v1/tokens").await.json();
        // alice's tokens, oldest first: her first, then `revoked`, `expired` and `spare`.
        let revoked_id = tokens[1]["id"].as_str().expect("a token id").to_owned();
        let revoking =
            api.send(&Who::Bearer(alice.clone()), "DELETE", &format!("/api/v1/tokens/{revoked_id}"), None).await;
        assert_eq!(revoking.status, 200, "{}", revoking.body);
        World {
            vm_id: created["vms"][0]["id"].as_str().expect("vm id").to_owned(),
            vm_ip: created["vms"][0]["ip"].as_str().expect("vm ip").to_owned(),
            operation: created["operations"][0]["id"].as_str().expect("operation id").to_owned(),
            spare_token: spare.json()["token"]["id"].as_str().expect("token id").to_owned(),
            api,
            alice,
            bob,
            admin,
            revoked,
            expired,
            admin_user_scoped,
        }
    }

    fn who(&self, caller: Caller) -> Who {
        match caller {
            Caller::Anonymous => Who::Anonymous,
            Caller::Owner => Who::Bearer(self.alice.clone()),
            Caller::Other => Who::Bearer(self.bob.clone()),
            Caller::Admin => Who::Bearer(self.admin.clone()),
            Caller::Revoked => Who::Bearer(self.revoked.clone()),
            Caller::Expired => Who::Bearer(self.expired.clone()),
            Caller::AdminUserScoped => Who::Bearer(self.admin_user_scoped.clone()),
            Caller::OwnerUid => Who::Uid(ALICE_UID),
            Caller::StrangerUid => Who::Uid(STRANGER_UID),
            Caller::Root => ROOT,
            Caller::ServerUid => Who::Uid(SERVER_UID),
        }
    }

    fn path(&self, template: &str) -> String {
        template.replace("{operation}", &self.operation).replace("{spare_token}", &self.spare_token)
    }

    /// Whether a reply to someone other than alice or an administrator carries her data. Her
    /// VM's address is no sign of it: in tenant mode every tenant's first VM holds that address
    /// on its own network.
    fn leaks(&self, reply: &Reply) -> bool {
        reply.body.contains(&self.vm_id)
            || reply.body.contains("\"owner\":\"alice\"")
            || reply.body.contains("\"username\":\"alice\"")
            || reply.body.contains("alice@example.com")
    }
}

/// method, route as the OpenAPI document names it, the path requested, body, and the status
/// expected per caller, in the order of `CALLERS`:
/// anonymous, owner, other, admin, revoked, expired, admin-user-scoped, owner-uid, stranger-uid,
/// root, server-uid.
type Route = (&'static str, &'static str, &'static str, Option<&'static str>, [u16; 11]);

const VM: &str = r#"{"name":"new","os":"ubuntu-24.04","spec":"tiny"}"#;
const TOKEN: &str = r#"{"name":"x"}"#;
const REASON: &str = r#"{"reason":"x"}"#;
const REGISTER: &str = r#"{"username":"zoe","email":"zoe@example.com","ssh_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHUGTp2kc9Op1U4ofix1BA68ciBpLlW4dC1fMK4wAOdl"}"#;
const KEY_CHANGE: &str = r#"{"username":"alice","email":"alice@example.com","ssh_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHUGTp2kc9Op1U4ofix1BA68ciBpLlW4dC1fMK4wAOdl","reason":"lost"}"#;
const QUOTA: &str = r#"{"vms":5}"#;
const CLUSTER: &str = r#"{"name":"new","type":"dev"}"#;
const SCALE: &str = r#"{"workers":3}"#;
const USER: &str = r#"{"username":"zed","email":"zed@example.com","ssh_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBWCb4Z+sWbDyqJpQTmFnmn4A4fRQEO9w2J3Dq+a2y5X"}"#;

#[rustfmt::skip]
const ROUTES: &[Route] = &[
    // Public.
    ("GET", "/healthz", "/healthz", None, [200; 11]),
    ("GET", "/readyz", "/readyz", None, [200; 11]),
    ("GET", "/metrics", "/metrics", None, [200; 11]),
    ("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", None, [200; 11]),
    // Asking for an account or a new key: anyone, answered alike whatever becomes of it.
    ("POST", "/api/v1/register", "/api/v1/register", Some(REGISTER), [202; 11]),
    ("POST", "/api/v1/key-change", "/api/v1/key-change", Some(KEY_CHANGE), [202; 11]),
    // Any account, on its own resources; the system administrator has none.
    //                                                                         anon own  oth  adm  rev  exp  aus  ouid  str root suid
    ("GET", "/api/v1/me", "/api/v1/me", None,                                 [401, 200, 200, 200, 401, 401, 200, 200, 401, 200, 200]),
    ("GET", "/api/v1/catalog", "/api/v1/catalog", None,                       [401, 200, 200, 200, 401, 401, 200, 200, 401, 200, 200]),
    ("GET", "/api/v1/quota", "/api/v1/quota", None,                           [401, 200, 200, 200, 401, 401, 200, 200, 401, 403, 403]),
    ("GET", "/api/v1/vms", "/api/v1/vms", None,                               [401, 200, 200, 200, 401, 401, 200, 200, 401, 403, 403]),
    ("POST", "/api/v1/vms", "/api/v1/vms", Some(VM),                          [401, 202, 202, 202, 401, 401, 202, 202, 401, 403, 403]),
    ("GET", "/api/v1/vms/{name}", "/api/v1/vms/web", None,                    [401, 200, 404, 404, 401, 401, 404, 200, 401, 403, 403]),
    ("DELETE", "/api/v1/vms/{name}", "/api/v1/vms/web", None,                 [401, 202, 404, 404, 401, 401, 404, 202, 401, 403, 403]),
    ("POST", "/api/v1/vms/{name}/{action}", "/api/v1/vms/web/stop", None,     [401, 202, 404, 404, 401, 401, 404, 202, 401, 403, 403]),
    ("GET", "/api/v1/operations", "/api/v1/operations", None,                 [401, 200, 200, 200, 401, 401, 200, 200, 401, 403, 403]),
    ("GET", "/api/v1/operations/{id}", "/api/v1/operations/{operation}", None, [401, 200, 404, 200, 401, 401, 404, 200, 401, 200, 200]),
    ("GET", "/api/v1/tokens", "/api/v1/tokens", None,                         [401, 200, 200, 200, 401, 401, 200, 200, 401, 403, 403]),
    ("POST", "/api/v1/tokens", "/api/v1/tokens", Some(TOKEN),                 [401, 201, 201, 201, 401, 401, 201, 201, 401, 403, 403]),
    ("DELETE", "/api/v1/tokens/{id}", "/api/v1/tokens/{spare_token}", None,   [401, 200, 404, 200, 401, 401, 404, 200, 401, 200, 200]),
    ("POST", "/api/v1/web/sign-in-link", "/api/v1/web/sign-in-link", None,     [401, 201, 201, 201, 401, 401, 201, 201, 401, 201, 201]),
    // Administrators only.
    ("GET", "/api/v1/admin/users", "/api/v1/admin/users", None,               [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("POST", "/api/v1/admin/users", "/api/v1/admin/users", Some(USER),        [401, 403, 403, 201, 401, 401, 403, 403, 401, 201, 201]),
    ("GET", "/api/v1/admin/users/{username}", "/api/v1/admin/users/alice", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/users/{username}/quota", "/api/v1/admin/users/alice/quota", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("PUT", "/api/v1/admin/users/{username}/quota", "/api/v1/admin/users/alice/quota", Some(QUOTA), [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("DELETE", "/api/v1/admin/users/{username}/quota", "/api/v1/admin/users/alice/quota", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("POST", "/api/v1/admin/users/{username}/tokens", "/api/v1/admin/users/alice/tokens", Some(TOKEN), [401, 403, 403, 201, 401, 401, 403, 403, 401, 201, 201]),
    ("GET", "/api/v1/clusters", "/api/v1/clusters", None,                     [401, 200, 200, 200, 401, 401, 200, 200, 401, 403, 403]),
    ("POST", "/api/v1/clusters", "/api/v1/clusters", Some(CLUSTER),           [401, 202, 202, 202, 401, 401, 202, 202, 401, 403, 403]),
    ("GET", "/api/v1/clusters/{name}", "/api/v1/clusters/kube", None,         [401, 200, 404, 404, 401, 401, 404, 200, 401, 403, 403]),
    ("GET", "/api/v1/clusters/{name}/watch", "/api/v1/clusters/kube/watch?timeout=1", None, [401, 200, 404, 404, 401, 401, 404, 200, 401, 403, 403]),
    ("GET", "/api/v1/clusters/{name}/kubeconfig", "/api/v1/clusters/kube/kubeconfig", None, [401, 200, 404, 404, 401, 401, 404, 200, 401, 403, 403]),
    ("POST", "/api/v1/clusters/{name}/scale", "/api/v1/clusters/kube/scale", Some(SCALE), [401, 202, 404, 404, 401, 401, 404, 202, 401, 403, 403]),
    ("DELETE", "/api/v1/clusters/{name}", "/api/v1/clusters/kube", None,      [401, 202, 404, 404, 401, 401, 404, 202, 401, 403, 403]),
    // The caller's own network: bob and ops have theirs, root owns nothing.
    ("GET", "/api/v1/network", "/api/v1/network", None,                       [401, 200, 200, 200, 401, 401, 200, 200, 401, 403, 403]),
    ("GET", "/api/v1/admin/networks", "/api/v1/admin/networks", None,         [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/users/{username}/network", "/api/v1/admin/users/alice/network", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("POST", "/api/v1/admin/users/{username}/network", "/api/v1/admin/users/dave/network", None, [401, 403, 403, 202, 401, 401, 403, 403, 401, 202, 202]),
    ("DELETE", "/api/v1/admin/users/{username}/network", "/api/v1/admin/users/carol/network", None, [401, 403, 403, 202, 401, 401, 403, 403, 401, 202, 202]),
    ("GET", "/api/v1/admin/clusters", "/api/v1/admin/clusters", None,         [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("DELETE", "/api/v1/admin/users/{username}/clusters/{name}", "/api/v1/admin/users/alice/clusters/kube", None, [401, 403, 403, 202, 401, 401, 403, 403, 401, 202, 202]),
    ("GET", "/api/v1/admin/users/{username}/vms", "/api/v1/admin/users/alice/vms", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("POST", "/api/v1/admin/users/{username}/vms", "/api/v1/admin/users/alice/vms", Some(VM), [401, 403, 403, 202, 401, 401, 403, 403, 401, 202, 202]),
    ("GET", "/api/v1/admin/users/{username}/vms/{name}", "/api/v1/admin/users/alice/vms/web", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("DELETE", "/api/v1/admin/users/{username}/vms/{name}", "/api/v1/admin/users/alice/vms/web", None, [401, 403, 403, 202, 401, 401, 403, 403, 401, 202, 202]),
    ("POST", "/api/v1/admin/users/{username}/vms/{name}/{action}", "/api/v1/admin/users/alice/vms/web/stop", None, [401, 403, 403, 202, 401, 401, 403, 403, 401, 202, 202]),
    ("GET", "/api/v1/admin/vms", "/api/v1/admin/vms", None,                   [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/operations", "/api/v1/admin/operations", None,     [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/audit", "/api/v1/admin/audit", None,               [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/reconcile", "/api/v1/admin/reconcile", None,       [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("POST", "/api/v1/admin/reconcile", "/api/v1/admin/reconcile", None,      [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/registrations", "/api/v1/admin/registrations", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/registrations/{username}", "/api/v1/admin/registrations/zoe", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    ("GET", "/api/v1/admin/key-changes", "/api/v1/admin/key-changes", None, [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    // Decisions on requests and accounts that do not exist: an administrator learns that,
    // nobody else learns anything.
    ("POST", "/api/v1/admin/registrations/{username}/approve", "/api/v1/admin/registrations/nobody/approve", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("POST", "/api/v1/admin/registrations/{username}/reject", "/api/v1/admin/registrations/nobody/reject", Some(REASON), [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("POST", "/api/v1/admin/key-changes/{username}/approve", "/api/v1/admin/key-changes/nobody/approve", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("POST", "/api/v1/admin/key-changes/{username}/reject", "/api/v1/admin/key-changes/nobody/reject", Some(REASON), [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("POST", "/api/v1/admin/users/{username}/suspend", "/api/v1/admin/users/nobody/suspend", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("POST", "/api/v1/admin/users/{username}/resume", "/api/v1/admin/users/nobody/resume", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("POST", "/api/v1/admin/users/{username}/purge", "/api/v1/admin/users/nobody/purge", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("DELETE", "/api/v1/admin/users/{username}", "/api/v1/admin/users/nobody", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
    ("GET", "/api/v1/admin/outbox", "/api/v1/admin/outbox", None,             [401, 403, 403, 200, 401, 401, 403, 403, 401, 200, 200]),
    // No such notification: an administrator learns that, nobody else learns anything.
    ("POST", "/api/v1/admin/outbox/{id}/retry", "/api/v1/admin/outbox/00000000-0000-4000-8000-000000000000/retry", None, [401, 403, 403, 404, 401, 401, 403, 403, 401, 404, 404]),
];

/// Checks one answer; returns what was wrong.
fn check(world: &World, route: &Route, caller: Caller, expected: u16, reply: &Reply) -> Vec<String> {
    let (method, _, _, _, _) = route;
    let path = world.path(route.2);
    let mut failures = Vec::new();
    if reply.status != expected {
        failures.push(format!("{method} {path} as {caller:?}: {} (expected {expected}) {}", reply.status, reply.body));
    }
    if reply.status >= 400 && reply.header("content-type") != Some("application/problem+json") {
        failures.push(format!("{method} {path} as {caller:?}: an error that is not application/problem+json"));
    }
    let entitled =
        matches!(caller, Caller::Owner | Caller::OwnerUid | Caller::Admin | Caller::Root | Caller::ServerUid);
    // The metrics and the OpenAPI document are about the server, not about accounts.
    let public = matches!(route.1, "/metrics" | "/api/v1/openapi.json");
    if !entitled && !public && world.leaks(reply) {
        failures.push(format!("{method} {path} as {caller:?} shows alice's data: {}", reply.body));
    }
    failures
}

/// What the administrator and alice see of the world, to tell whether a call changed it.
async fn snapshot(world: &World) -> Vec<String> {
    let mut seen = Vec::new();
    for path in [
        "/api/v1/admin/users",
        "/api/v1/admin/vms",
        "/api/v1/admin/operations",
        "/api/v1/admin/users/alice/quota",
        "/api/v1/admin/networks",
    ] {
        seen.push(world.api.get(&ROOT, path).await.body);
    }
    seen.push(world.api.get(&Who::Uid(ALICE_UID), "/api/v1/tokens").await.body);
    seen
}

/// Reads and refused calls leave the world as it was (which is checked), so one world serves
/// them all; each accepted change gets a world of its own, so that no expectation depends on
/// what an earlier call did.
#[tokio::test]
async fn every_route_answers_every_caller_as_declared() {
    let shared = World::new().await;
    let before = snapshot(&shared).await;
    let mut failures = Vec::new();
    for route in ROUTES {
        let (method, _, template, body, expected) = *route;
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            let fresh;
            let world = if method == "GET" || expected >= 400 {
                &shared
            } else {
                fresh = World::new().await;
                &fresh
            };
            let reply = world.api.send(&world.who(caller), method, &world.path(template), body).await;
            failures.extend(check(world, route, caller, expected, &reply));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(snapshot(&shared).await, before, "reads and refused calls changed nothing");
}

/// The matrix names every operation of the OpenAPI document, and nothing it does not document.
#[tokio::test]
async fn the_matrix_covers_every_documented_route() {
    let api = Api::new().await;
    let document = api.get(&Who::Anonymous, "/api/v1/openapi.json").await.json();
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let covered: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, route, ..)| (method.to_string(), route.to_string())).collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(missing.is_empty(), "routes without a row in the authorization matrix: {missing:?}");
    let undocumented: Vec<_> = covered
        .iter()
        .filter(|(_, route)| route.starts_with("/api/v1/") && route != "/api/v1/openapi.json")
        .filter(|r| !documented.contains(*r))
        .collect();
    assert!(undocumented.is_empty(), "rows for routes the document does not list: {undocumented:?}");
}

/// Identity comes from the listener only: headers that name a user, a token sent on the
/// socket, or a request that came through no listener are worth nothing.
#[tokio::test]
async fn nothing_but_the_listener_gives_an_identity() {
    let world = World::new().await;
    let api = &world.api;
    let spoofing: [(&str, &str); 6] = [
        ("x-basphere-user", "alice"),
        ("x-remote-user", "alice"),
        ("x-forwarded-user", "root"),
        ("x-basphere-uid", "0"),
        ("forwarded", "for=unix;by=root"),
        ("authorization", "Basic YWxpY2U6eA=="),
    ];
    for (name, value) in spoofing {
        let reply = api.call(&Who::Anonymous, "GET", "/api/v1/me", &[(name, value)], b"").await;
        assert_eq!((reply.status, reply.problem().as_str()), (401, "unauthenticated"), "{name}: {}", reply.body);
        let reply = api.call(&Who::Nowhere, "GET", "/api/v1/admin/users", &[(name, value)], b"").await;
        assert_eq!(reply.status, 401, "{name} without a transport: {}", reply.body);
    }
    // Without a transport even a valid token is refused: only a listener may vouch for a request.
    let bearer = format!("Bearer {}", world.admin);
    let reply = api.call(&Who::Nowhere, "GET", "/api/v1/me", &[("authorization", bearer.as_str())], b"").await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // On the socket the kernel's uid decides, whatever token comes along.
    let reply =
        api.call(&Who::Uid(STRANGER_UID), "GET", "/api/v1/me", &[("authorization", bearer.as_str())], b"").await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains(&format!("uid {STRANGER_UID} is not a Basphere account")), "{}", reply.body);
    let alice = format!("Bearer {}", world.alice);
    let me = api.call(&ROOT, "GET", "/api/v1/me", &[("authorization", alice.as_str())], b"").await.json();
    assert_eq!((me["role"].as_str(), me["account"].is_null()), (Some("admin"), true), "{me}");
    let me =
        api.call(&Who::Uid(ALICE_UID), "GET", "/api/v1/me", &[("authorization", bearer.as_str())], b"").await.json();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("alice"), Some("user")), "{me}");
    // A body cannot name another owner either.
    let reply = api
        .send(
            &Who::Bearer(world.bob.clone()),
            "POST",
            "/api/v1/vms",
            Some(r#"{"name":"x","os":"ubuntu-24.04","spec":"tiny","owner":"alice"}"#),
        )
        .await;
    assert_eq!((reply.status, reply.problem().as_str()), (400, "invalid-input"), "{}", reply.body);
    // Who the server says you are.
    let me = api.get(&Who::Bearer(world.alice.clone()), "/api/v1/me").await.json();
    assert_eq!((me["name"].as_str(), me["source"].as_str()), (Some("alice"), Some("tcp:192.0.2.7:40000")), "{me}");
    let me = api.get(&Who::Uid(ALICE_UID), "/api/v1/me").await.json();
    assert_eq!(me["source"].as_str(), Some(format!("unix:uid={ALICE_UID},pid=4242").as_str()), "{me}");
}

/// What each caller sees in the lists: their own, or everyone's for an administrator.
#[tokio::test]
async fn lists_hold_only_the_callers_own_items() {
    let world = World::new().await;
    let api = &world.api;
    let bob = Who::Bearer(world.bob.clone());
    let made = api.send(&bob, "POST", "/api/v1/vms", Some(r#"{"name":"db","os":"rocky-10.1","spec":"tiny"}"#)).await;
    assert_eq!(made.status, 202, "{}", made.body);
    // His first VM holds the address of alice's, each on a network of its own.
    assert_eq!(made.json()["vms"][0]["ip"].as_str(), Some(world.vm_ip.as_str()), "{}", made.body);
    api.wait_idle().await;
    let names = |reply: Reply| -> Vec<String> {
        reply.json()["items"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {}", reply.body))
            .iter()
            .map(|item| format!("{}/{}", item["owner"].as_str().unwrap_or("?"), item["name"].as_str().unwrap_or("?")))
            .collect()
    };
    assert_eq!(names(api.get(&bob, "/api/v1/vms").await), ["bob/db"]);
    assert_eq!(names(api.get(&Who::Uid(ALICE_UID), "/api/v1/vms").await), ["alice/web"]);
    assert_eq!(names(api.get(&ROOT, "/api/v1/admin/vms").await), ["alice/web", "bob/db"]);
    assert_eq!(names(api.get(&ROOT, "/api/v1/admin/vms?owner=bob").await), ["bob/db"]);
    let owners: BTreeSet<String> = api.get(&bob, "/api/v1/operations").await.json()["items"]
        .as_array()
        .expect("a page")
        .iter()
        .map(|op| op["owner"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(owners, BTreeSet::from(["bob".to_owned()]));
    let tokens = api.get(&bob, "/api/v1/tokens").await.json();
    assert!(tokens.as_array().expect("tokens").iter().all(|t| t["owner"] == "bob"), "{tokens}");
    assert!(!tokens.to_string().contains(&world.alice), "secrets are never listed");
    // A user cannot filter the user list into someone else's.
    let reply = api.get(&bob, "/api/v1/vms?owner=alice").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}
