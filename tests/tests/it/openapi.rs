//! The OpenAPI document against the server: every answer the server gives, to every kind of
//! caller, on every route, with good and bad input, is documented for that route and method in
//! `/api/v1/openapi.json` (its status, and its content type), so that a client generated from
//! the document handles every answer. Every documented operation is exercised.

use std::collections::BTreeSet;

use basphere_core::StoreExt;
use serde_json::Value;
use tests::server::{exchange, Response, Server, FAST};

/// The document's operations, and the rules of its description: an unknown path is answered 404
/// and a method a path does not list 405, both as problem documents.
struct Contract {
    paths: serde_json::Map<String, Value>,
}

fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn segments(path: &str) -> Vec<&str> {
    path.split('?').next().unwrap_or("").split('/').skip(1).collect()
}

impl Contract {
    fn of(server: &Server) -> Contract {
        let document = server.http("GET", "/api/v1/openapi.json", None, None).json();
        Contract { paths: document["paths"].as_object().expect("paths").clone() }
    }

    /// The template of the documented path `path` falls under, the most literal one first.
    fn template(&self, path: &str) -> Option<&str> {
        let wanted = segments(path);
        self.paths
            .keys()
            .filter(|template| {
                let parts = segments(template);
                parts.len() == wanted.len()
                    && parts.iter().zip(&wanted).all(|(t, w)| (t.starts_with('{') && !w.is_empty()) || t == w)
            })
            .min_by_key(|template| template.matches('{').count())
            .map(String::as_str)
    }

    /// Why `response` to `method path` is not what the document says, if it is not.
    fn check(&self, method: &str, path: &str, response: &Response) -> Result<(), String> {
        let content_type = response.header("content-type").map(essence);
        let problem = content_type.as_deref() == Some("application/problem+json");
        let Some(template) = self.template(path) else {
            return if response.status == 404 && problem {
                Ok(())
            } else {
                Err(format!("an unknown path answered {} {content_type:?}", response.status))
            };
        };
        let Some(operation) = self.paths[template].get(method.to_ascii_lowercase()) else {
            return if response.status == 405 && problem {
                Ok(())
            } else {
                Err(format!("{template} does not list {method}, yet answered {} {content_type:?}", response.status))
            };
        };
        let responses = &operation["responses"];
        let status = response.status.to_string();
        let range = format!("{}XX", &status[..1]);
        let Some(documented) = [status.as_str(), range.as_str(), "default"].iter().find_map(|key| responses.get(*key))
        else {
            return Err(format!(
                "{method} {template}: status {status} is not documented (documented: {:?})",
                responses.as_object().map(|r| r.keys().cloned().collect::<Vec<_>>())
            ));
        };
        match (documented.get("content").and_then(Value::as_object), content_type) {
            (Some(content), Some(got)) if content.contains_key(&got) => Ok(()),
            (Some(content), got) => Err(format!(
                "{method} {template}: {status} came as {got:?}, documented as {:?}",
                content.keys().collect::<Vec<_>>()
            )),
            (None, _) if response.body.is_empty() => Ok(()),
            (None, got) => {
                Err(format!("{method} {template}: {status} is documented without a body, came with {got:?}"))
            }
        }
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        self.paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(method, _)| ["get", "put", "post", "delete", "patch"].contains(&method.as_str()))
                    .map(move |(method, _)| (method.to_ascii_uppercase(), path.clone()))
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    Forged,
    Revoked,
    Expired,
    Suspended,
    Owner,
    Other,
    UserScopedAdmin,
    AdminToken,
    /// root on the Unix socket: the system administrator, who owns no resources.
    Socket,
}

const EVERYONE: [Who; 10] = [
    Who::Anonymous,
    Who::Forged,
    Who::Revoked,
    Who::Expired,
    Who::Suspended,
    Who::Owner,
    Who::Other,
    Who::UserScopedAdmin,
    Who::AdminToken,
    Who::Socket,
];

/// One request: method, path, extra headers, body.
type Request = (&'static str, String, Vec<(&'static str, String)>, Vec<u8>);

fn json(method: &'static str, path: &str, body: &str) -> Request {
    (method, path.to_owned(), vec![("Content-Type", "application/json".to_owned())], body.as_bytes().to_vec())
}

fn bare(method: &'static str, path: &str) -> Request {
    (method, path.to_owned(), vec![], vec![])
}

/// A JSON route's good body and everything wrong a client can send it.
fn json_cases(method: &'static str, path: &str, good: &str) -> Vec<Request> {
    let oversize = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    vec![
        json(method, path, good),
        json(method, path, "{"),
        json(method, path, "[]"),
        json(method, path, r#"{"unknown_field":1}"#),
        json(method, path, &oversize),
        (method, path.to_owned(), vec![("Content-Type", "text/plain".to_owned())], good.as_bytes().to_vec()),
        (method, path.to_owned(), vec![], good.as_bytes().to_vec()),
    ]
}

#[test]
fn every_answer_is_documented_in_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    // Public submissions open, and a per-address limit the table exceeds (429).
    let config = format!("{FAST}recaptcha: {{enabled: false}}\nregistration: {{per_address_per_hour: 40}}\n");
    let server = Server::start(dir.path(), Some(&config));
    let contract = Contract::of(&server);
    let alice = server.account("alice", 1, false);
    let bob = server.account("bob", 2, false);
    let carol = server.account("carol", 3, false);
    server.account("root-ops", 4, true);
    let admin = server.token("root-ops", "admin");
    let user_scoped_admin = server.token("root-ops", "user");
    let revoked = server.token("alice", "user");
    let expired = server.token("alice", "user");
    let created =
        server.http("POST", "/api/v1/vms", Some(&alice), Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#));
    assert_eq!(created.status, 202, "{}", created.body);
    let op = created.json()["operations"][0]["id"].as_str().unwrap().to_owned();
    let cluster = server.http("POST", "/api/v1/clusters", Some(&alice), Some(r#"{"name":"kube","type":"dev"}"#));
    assert_eq!(cluster.status, 202, "{}", cluster.body);
    server.wait_idle();
    let tokens = server.http("GET", "/api/v1/tokens", Some(&alice), None).json();
    let token_ids: Vec<String> =
        tokens.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(server.http("DELETE", &format!("/api/v1/tokens/{}", token_ids[1]), Some(&alice), None).status, 200);
    {
        // An expired token and a suspended account exist only in the store: the API makes
        // neither.
        let store = basphere_store::SqliteStore::open(server.data_dir.join("basphere.db")).unwrap();
        let hash = basphere_core::model::ApiToken::hash_secret(&expired);
        store
            .transact(|tx| {
                let mut token = tx.token_by_hash(&hash)?.unwrap();
                token.expires_at = Some(basphere_core::model::now() - chrono::Duration::seconds(1));
                tx.update_token(&token)?;
                let mut user = tx.get_user(&"carol".parse().unwrap())?.unwrap();
                user.status = basphere_core::model::UserStatus::Suspended;
                tx.update_user(&user)
            })
            .unwrap();
    }
    let token_of = |who: Who| -> Option<&str> {
        match who {
            Who::Anonymous | Who::Socket => None,
            Who::Forged => Some("bsp_forged"),
            Who::Revoked => Some(&revoked),
            Who::Expired => Some(&expired),
            Who::Suspended => Some(&carol),
            Who::Owner => Some(&alice),
            Who::Other => Some(&bob),
            Who::UserScopedAdmin => Some(&user_scoped_admin),
            Who::AdminToken => Some(&admin),
        }
    };

    let vm = r#"{"name":"new","os":"ubuntu-24.04","spec":"tiny"}"#;
    let mut requests: Vec<Request> = vec![
        bare("GET", "/healthz"),
        bare("GET", "/readyz"),
        bare("GET", "/metrics"),
        bare("GET", "/api/v1/openapi.json"),
        bare("GET", "/api/v1/me"),
        bare("GET", "/api/v1/catalog"),
        bare("GET", "/api/v1/quota"),
        bare("GET", "/api/v1/vms"),
        bare("GET", "/api/v1/vms?state=running&limit=5"),
        bare("GET", "/api/v1/vms?limit=0"),
        bare("GET", "/api/v1/vms?limit=lots"),
        bare("GET", "/api/v1/vms?after=not-a-uuid"),
        bare("GET", "/api/v1/vms?state=melted"),
        bare("GET", "/api/v1/vms?owner=bob"),
        bare("GET", "/api/v1/vms?colour=blue"),
        bare("GET", "/api/v1/vms/web"),
        bare("GET", "/api/v1/vms/nothing"),
        bare("GET", "/api/v1/vms/Not%20A%20Name"),
        bare("GET", "/api/v1/vms/%FF"),
        bare("POST", "/api/v1/vms/web/stop"),
        bare("POST", "/api/v1/vms/web/start"),
        bare("POST", "/api/v1/vms/web/explode"),
        bare("POST", "/api/v1/vms/nothing/reboot"),
        bare("GET", "/api/v1/operations"),
        bare("GET", "/api/v1/operations?limit=2000"),
        bare("GET", &format!("/api/v1/operations/{op}")),
        bare("GET", "/api/v1/operations/not-a-uuid"),
        bare("GET", "/api/v1/tokens"),
        bare("DELETE", &format!("/api/v1/tokens/{}", token_ids[0])),
        bare("DELETE", "/api/v1/tokens/not-a-uuid"),
        bare("POST", "/api/v1/web/sign-in-link"),
        bare("GET", "/api/v1/admin/users"),
        bare("GET", "/api/v1/admin/users/alice"),
        bare("GET", "/api/v1/admin/users/nobody"),
        bare("GET", "/api/v1/admin/users/NOT_A_NAME"),
        bare("GET", "/api/v1/admin/users/alice/quota"),
        bare("GET", "/api/v1/admin/users/nobody/quota"),
        bare("DELETE", "/api/v1/admin/users/alice/quota"),
        bare("DELETE", "/api/v1/admin/users/nobody/quota"),
        bare("GET", "/api/v1/admin/users/alice/vms"),
        bare("GET", "/api/v1/admin/users/alice/vms?limit=-1"),
        bare("GET", "/api/v1/admin/users/NOT_A_NAME/vms"),
        bare("GET", "/api/v1/admin/users/alice/vms/web"),
        bare("GET", "/api/v1/admin/users/alice/vms/nothing"),
        bare("POST", "/api/v1/admin/users/alice/vms/web/reboot"),
        bare("POST", "/api/v1/admin/users/alice/vms/web/explode"),
        bare("GET", "/api/v1/admin/vms"),
        bare("GET", "/api/v1/admin/vms?owner=alice"),
        bare("GET", "/api/v1/admin/vms?owner=NOT_A_NAME"),
        bare("GET", "/api/v1/admin/vms?limit=0"),
        bare("GET", "/api/v1/admin/operations"),
        bare("GET", "/api/v1/admin/operations?owner=alice&limit=1"),
        bare("GET", "/api/v1/admin/operations?after=x"),
        bare("GET", "/api/v1/admin/audit"),
        bare("GET", "/api/v1/admin/audit?format=jsonl&limit=5"),
        bare("GET", "/api/v1/admin/audit?format=xml"),
        bare("GET", "/api/v1/admin/audit?limit=0"),
        bare("GET", "/api/v1/admin/reconcile"),
        bare("POST", "/api/v1/admin/reconcile"),
        bare("GET", "/api/v1/admin/outbox"),
        bare("GET", "/api/v1/admin/outbox?state=dead&limit=5"),
        bare("GET", "/api/v1/admin/outbox?state=lost"),
        bare("POST", "/api/v1/admin/outbox/00000000-0000-4000-8000-000000000000/retry"),
        bare("POST", "/api/v1/admin/outbox/not-a-uuid/retry"),
        bare("GET", "/api/v1/clusters"),
        bare("GET", "/api/v1/clusters?state=ready&limit=5"),
        bare("GET", "/api/v1/clusters?state=melted"),
        bare("GET", "/api/v1/clusters?owner=bob"),
        bare("GET", "/api/v1/clusters/kube"),
        bare("GET", "/api/v1/clusters/nothing"),
        bare("GET", "/api/v1/clusters/Not%20A%20Name"),
        bare("GET", "/api/v1/clusters/kube/watch?timeout=1"),
        bare("GET", "/api/v1/clusters/kube/watch?timeout=99"),
        bare("GET", "/api/v1/clusters/kube/watch?since=yesterday"),
        bare("GET", "/api/v1/clusters/kube/kubeconfig"),
        bare("GET", "/api/v1/clusters/nothing/kubeconfig"),
        bare("DELETE", "/api/v1/clusters/nothing"),
        bare("GET", "/api/v1/admin/clusters"),
        bare("GET", "/api/v1/admin/clusters?owner=alice"),
        bare("GET", "/api/v1/admin/clusters?owner=NOT_A_NAME"),
        bare("DELETE", "/api/v1/admin/users/alice/clusters/nothing"),
        bare("DELETE", "/api/v1/admin/users/NOT_A_NAME/clusters/kube"),
        bare("GET", "/api/v1/network"),
        bare("GET", "/api/v1/admin/networks"),
        bare("GET", "/api/v1/admin/networks?state=deleted&limit=5"),
        bare("GET", "/api/v1/admin/networks?state=melted"),
        bare("GET", "/api/v1/admin/networks?owner=alice"),
        bare("GET", "/api/v1/admin/users/alice/network"),
        bare("GET", "/api/v1/admin/users/NOT_A_NAME/network"),
        bare("POST", "/api/v1/admin/users/alice/network"),
        bare("DELETE", "/api/v1/admin/users/alice/network"),
        json("POST", "/api/v1/clusters", r#"{"name":"k2","type":"dev"}"#),
        json("POST", "/api/v1/clusters", r#"{"name":"k3","type":"huge"}"#),
        json("POST", "/api/v1/clusters", r#"{"name":"k4","type":"dev","workers":50}"#),
        json("POST", "/api/v1/clusters", r#"{"name":"kube","type":"dev"}"#),
        json("POST", "/api/v1/clusters/kube/scale", r#"{"workers":0}"#),
        json("POST", "/api/v1/clusters/nothing/scale", r#"{"workers":3}"#),
        json("POST", "/api/v1/clusters/kube/scale", r#"{"workers":3}"#),
        bare("DELETE", "/api/v1/clusters/kube"),
        // Methods and paths the document does not list.
        bare("PATCH", "/api/v1/vms"),
        bare("PUT", "/api/v1/vms/web"),
        bare("DELETE", "/api/v1/me"),
        bare("GET", "/api/v2/vms"),
        bare("GET", "/api/v1/vms/web/start/now"),
        (
            "POST",
            "/api/v1/vms".to_owned(),
            vec![("Content-Type", "application/json".to_owned()), ("Idempotency-Key", "k\u{e9}".to_owned())],
            vm.as_bytes().to_vec(),
        ),
        (
            "POST",
            "/api/v1/vms".to_owned(),
            vec![("Content-Type", "application/json".to_owned()), ("Idempotency-Key", "same".to_owned())],
            vm.replace("new", "idem").into_bytes(),
        ),
        (
            "POST",
            "/api/v1/vms".to_owned(),
            vec![("Content-Type", "application/json".to_owned()), ("Idempotency-Key", "same".to_owned())],
            vm.replace("new", "other").into_bytes(),
        ),
        json("POST", "/api/v1/vms", r#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#),
        json("POST", "/api/v1/vms", r#"{"name":"big","os":"ubuntu-24.04","spec":"huge","count":10}"#),
        json("POST", "/api/v1/vms", r#"{"name":"x","os":"windows","spec":"small","count":11}"#),
        json("POST", "/api/v1/tokens", r#"{"name":"x","scope":"admin"}"#),
        json("POST", "/api/v1/tokens", r#"{"name":"x","expires_in_days":0}"#),
        json("PUT", "/api/v1/admin/users/nobody/quota", r#"{"vms":5}"#),
        json("PUT", "/api/v1/admin/users/alice/quota", r#"{"vms":-5}"#),
        json("POST", "/api/v1/admin/users/nobody/tokens", r#"{"name":"x"}"#),
        json("POST", "/api/v1/admin/users/nobody/vms", vm),
        json(
            "POST",
            "/api/v1/admin/users",
            r#"{"username":"alice","email":"a@example.com","ssh_key":"ssh-ed25519 AAAA"}"#,
        ),
    ];
    let user_body = format!(
        r#"{{"username":"zed","email":"zed@example.com","ssh_key":"{}"}}"#,
        basphere_core::testing::ssh_key(9).as_str()
    );
    let zoe_key = basphere_core::testing::ssh_key(11);
    let register = format!(r#"{{"username":"zoe","email":"zoe@example.com","ssh_key":"{}"}}"#, zoe_key.as_str());
    requests.extend(json_cases("POST", "/api/v1/register", &register));
    requests.extend(json_cases("POST", "/api/v1/clusters", r#"{"name":"k5","type":"dev"}"#));
    requests.extend(json_cases("POST", "/api/v1/clusters/kube/scale", r#"{"workers":2}"#));
    requests.push((
        "POST",
        "/api/v1/register".to_owned(),
        vec![("Content-Type", "application/x-www-form-urlencoded".to_owned())],
        format!(
            "username=yan&email=yan%40example.com&public_key={}",
            zoe_key.as_str().replace('+', "%2B").replace('/', "%2F").replace('=', "%3D").replace(' ', "+")
        )
        .into_bytes(),
    ));
    requests.push((
        "POST",
        "/api/v1/register".to_owned(),
        vec![("Content-Type", "application/x-www-form-urlencoded".to_owned())],
        b"username=&email=".to_vec(),
    ));
    let key_change = format!(
        r#"{{"username":"alice","email":"alice@example.com","ssh_key":"{}","reason":"lost"}}"#,
        basphere_core::testing::ssh_key(12).as_str()
    );
    requests.extend(json_cases("POST", "/api/v1/key-change", &key_change));
    requests.extend([
        bare("GET", "/api/v1/admin/registrations"),
        bare("GET", "/api/v1/admin/registrations?status=approved&limit=5"),
        bare("GET", "/api/v1/admin/registrations?status=lost"),
        bare("GET", "/api/v1/admin/registrations/zoe"),
        bare("GET", "/api/v1/admin/registrations/nobody"),
        bare("GET", "/api/v1/admin/key-changes"),
        bare("GET", "/api/v1/admin/key-changes?limit=0"),
        bare("POST", "/api/v1/admin/registrations/nobody/approve"),
        bare("POST", "/api/v1/admin/key-changes/nobody/approve"),
        bare("POST", "/api/v1/admin/key-changes/alice/approve"),
        bare("POST", "/api/v1/admin/users/nobody/suspend"),
        bare("POST", "/api/v1/admin/users/nobody/resume"),
        bare("POST", "/api/v1/admin/users/nobody/purge"),
        json("POST", "/api/v1/admin/key-changes/nobody/reject", r#"{"reason":"x"}"#),
    ]);
    requests.extend(json_cases("POST", "/api/v1/admin/registrations/nobody/reject", r#"{"reason":"no"}"#));
    requests.push(bare("POST", "/api/v1/admin/registrations/zoe/approve"));
    requests.extend(json_cases("POST", "/api/v1/vms", vm));
    requests.extend(json_cases("POST", "/api/v1/tokens", r#"{"name":"laptop"}"#));
    requests.extend(json_cases("POST", "/api/v1/admin/users", &user_body));
    requests.extend(json_cases("PUT", "/api/v1/admin/users/alice/quota", r#"{"vms":20}"#));
    requests.extend(json_cases("POST", "/api/v1/admin/users/alice/tokens", r#"{"name":"ops"}"#));
    requests.extend(json_cases(
        "POST",
        "/api/v1/admin/users/alice/vms",
        r#"{"name":"adm","os":"rocky-10.1","spec":"tiny"}"#,
    ));
    // Deletions last, so that the routes above find what they act on.
    requests.extend([
        bare("DELETE", "/api/v1/vms/nothing"),
        bare("DELETE", "/api/v1/vms/%FF"),
        bare("DELETE", "/api/v1/admin/users/alice/vms/nothing"),
        bare("DELETE", "/api/v1/admin/users/alice/vms/adm"),
        bare("DELETE", "/api/v1/vms/web"),
        // Right behind the delete: the VM is deleting (or gone).
        bare("POST", "/api/v1/vms/web/start"),
        bare("DELETE", "/api/v1/vms/web"),
        bare("DELETE", "/api/v1/admin/users/nobody"),
        bare("DELETE", "/api/v1/admin/users/alice"),
        bare("DELETE", "/api/v1/admin/users/zoe"),
    ]);

    let mut failures = Vec::new();
    let mut exercised = BTreeSet::new();
    let mut answers = BTreeSet::new();
    for (method, path, headers, body) in &requests {
        for who in EVERYONE {
            let mut headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let auth = token_of(who).map(|t| format!("Bearer {t}"));
            if let Some(auth) = &auth {
                headers.push(("Authorization", auth));
            }
            let response = if who == Who::Socket {
                let stream = std::os::unix::net::UnixStream::connect(&server.socket).expect("connect socket");
                exchange(stream, method, path, &headers, body).expect("unix exchange")
            } else {
                server.http_raw(method, path, &headers, body)
            };
            if let Err(why) = contract.check(method, path, &response) {
                let detail: String = response.body.chars().take(200).collect();
                failures.push(format!("{method} {path} as {who:?}: {why}\n    {detail}"));
            }
            if let Some(template) = contract.template(path) {
                exercised.insert((method.to_string(), template.to_owned()));
            }
            answers.insert(response.status);
            if response.status == 202 {
                server.wait_idle();
            }
        }
    }
    assert!(failures.is_empty(), "{} answers not in the document:\n{}", failures.len(), failures.join("\n"));
    let missed: Vec<_> = contract.operations().difference(&exercised).cloned().collect();
    assert!(missed.is_empty(), "documented operations this test never calls: {missed:?}");
    // The table provokes every kind of answer the document lists, short of a server error.
    for status in [200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429] {
        assert!(answers.contains(&status), "no request was answered {status}: {answers:?}");
    }
}
