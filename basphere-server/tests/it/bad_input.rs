//! Bad input gets a 4xx problem document that says what was wrong and what is accepted, records
//! nothing, and leaves the server working.

use crate::fixture::{Api, Who, ROOT};

/// Who sends it, method, path, headers, body, expected status, problem kind, words the answer
/// must contain.
struct Case {
    who: Who,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    kind: &'static str,
    words: &'static str,
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn bad_requests_get_problems_and_change_nothing() {
    let api = Api::new().await;
    let alice = Who::Bearer(api.account("alice", 1, false, None).await);
    let key = basphere_core::testing::ssh_key(9);
    let json = |who: &Who, method: &'static str, path: &str, body: String, status, kind, words| Case {
        who: who.clone(),
        method,
        path: path.to_owned(),
        headers: vec![(JSON.0, JSON.1.to_owned())],
        body: body.into_bytes(),
        status,
        kind,
        words,
    };
    let bare = |who: &Who, method: &'static str, path: &str, status, kind, words| Case {
        who: who.clone(),
        method,
        path: path.to_owned(),
        headers: vec![],
        body: vec![],
        status,
        kind,
        words,
    };
    let vm = |name: &str, os: &str, spec: &str, extra: &str| {
        format!(r#"{{"name":{},"os":"{os}","spec":"{spec}"{extra}}}"#, serde_json::Value::from(name))
    };
    let user = |username: &str, email: &str, ssh_key: &str| {
        serde_json::json!({"username": username, "email": email, "ssh_key": ssh_key}).to_string()
    };
    let long_name = "a".repeat(10_000);
    let cluster = |name: &str| serde_json::json!({"name": name, "type": "dev"}).to_string();
    let longest_cluster = basphere_core::validate::CLUSTER_NAME_MAX_LEN;
    let mut cases = vec![
        // Names. A cluster's is shorter: Cluster API's objects are named after it.
        json(
            &alice,
            "POST",
            "/api/v1/clusters",
            cluster(&"a".repeat(longest_cluster + 1)),
            400,
            "invalid-input",
            "at most 51 characters",
        ),
        json(&alice, "POST", "/api/v1/clusters", cluster(&"a".repeat(63)), 400, "invalid-input", "at most 51"),
        json(&alice, "POST", "/api/v1/clusters", cluster(&"a".repeat(64)), 400, "invalid-input", "1-51 characters"),
        json(&alice, "POST", "/api/v1/clusters", cluster("Dev"), 400, "invalid-input", "lowercase letter first"),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("Web", "ubuntu-24.04", "small", ""),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("../../etc", "ubuntu-24.04", "small", ""),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("", "ubuntu-24.04", "small", ""),
            400,
            "invalid-input",
            "1-63 characters",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm(&long_name, "ubuntu-24.04", "small", ""),
            400,
            "invalid-input",
            "1-63 characters",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web\u{fffe}", "ubuntu-24.04", "small", ""),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web;rm -rf", "ubuntu-24.04", "small", ""),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        // The catalog: unknown values list the valid ones.
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "windows", "small", ""),
            400,
            "invalid-input",
            "rocky-10.1, ubuntu-24.04",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "giant", ""),
            400,
            "invalid-input",
            "huge, large, medium, small, tiny",
        ),
        // Batch size.
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "small", r#","count":0"#),
            400,
            "invalid-input",
            "1-10",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "small", r#","count":11"#),
            400,
            "invalid-input",
            "1-10",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "small", r#","count":-1"#),
            400,
            "invalid-input",
            "count",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "small", r#","count":"3""#),
            400,
            "invalid-input",
            "count",
        ),
        // Malformed and unexpected bodies.
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            r#"{"name":"web","os":"ubuntu-24.04""#.into(),
            400,
            "invalid-input",
            "not valid",
        ),
        json(&alice, "POST", "/api/v1/vms", String::new(), 400, "invalid-input", "not valid"),
        json(&alice, "POST", "/api/v1/vms", "[]".into(), 400, "invalid-input", "not valid"),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            r#"{"name":"web","spec":"small"}"#.into(),
            400,
            "invalid-input",
            "missing field `os`",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "small", r#","owner":"bob""#),
            400,
            "invalid-input",
            "unknown field `owner`",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/vms",
            format!(
                "{{\"name\":\"web\",\"os\":\"ubuntu-24.04\",\"spec\":\"small\",\"pad\":\"{}\"}}",
                "x".repeat(65 * 1024)
            ),
            413,
            "payload-too-large",
            "64 KiB",
        ),
        Case {
            headers: vec![("content-type", "text/plain".into())],
            ..json(
                &alice,
                "POST",
                "/api/v1/vms",
                vm("web", "ubuntu-24.04", "small", ""),
                415,
                "unsupported-media-type",
                "application/json",
            )
        },
        Case {
            headers: vec![],
            ..json(
                &alice,
                "POST",
                "/api/v1/vms",
                vm("web", "ubuntu-24.04", "small", ""),
                415,
                "unsupported-media-type",
                "application/json",
            )
        },
        Case {
            headers: vec![("content-type", "application/x-www-form-urlencoded".into())],
            ..json(
                &alice,
                "POST",
                "/api/v1/vms",
                "name=web&os=ubuntu-24.04&spec=small".into(),
                415,
                "unsupported-media-type",
                "application/json",
            )
        },
        Case {
            headers: vec![(JSON.0, JSON.1.to_owned()), ("idempotency-key", "kéy".to_owned())],
            ..json(
                &alice,
                "POST",
                "/api/v1/vms",
                vm("web", "ubuntu-24.04", "small", ""),
                400,
                "invalid-input",
                "Idempotency-Key",
            )
        },
        // Credentials.
        json(
            &Who::Bearer("bsp_forged".into()),
            "POST",
            "/api/v1/vms",
            vm("web", "ubuntu-24.04", "small", ""),
            401,
            "unauthenticated",
            "token",
        ),
        json(&Who::Bearer(String::new()), "GET", "/api/v1/me", String::new(), 401, "unauthenticated", "token"),
        // Paths and queries.
        bare(&alice, "GET", "/api/v1/vms/..%2F..%2Fetc%2Fpasswd", 404, "not-found", "vm not found"),
        bare(&alice, "GET", "/api/v1/vms?limit=5000", 400, "invalid-input", "1-1000"),
        bare(&alice, "GET", "/api/v1/vms?limit=0", 400, "invalid-input", "1-1000"),
        bare(&alice, "GET", "/api/v1/vms?limit=ten", 400, "invalid-input", "query"),
        bare(&alice, "GET", "/api/v1/vms?after=not-a-uuid", 400, "invalid-input", "query"),
        bare(&alice, "GET", "/api/v1/vms?colour=blue", 400, "invalid-input", "unknown field `colour`"),
        bare(&alice, "GET", "/api/v1/vms?state=melting", 400, "invalid-input", "melting"),
        bare(&alice, "GET", "/api/v1/operations?limit=0", 400, "invalid-input", "1-1000"),
        bare(&alice, "GET", "/api/v1/operations/not-a-uuid", 404, "not-found", "operation"),
        bare(&alice, "DELETE", "/api/v1/tokens/not-a-uuid", 404, "not-found", "token"),
        bare(&alice, "POST", "/api/v1/vms/web/explode", 404, "not-found", "start, stop or reboot"),
        bare(&alice, "PATCH", "/api/v1/vms", 405, "method-not-allowed", "method"),
        bare(&alice, "GET", "/api/v2/anything", 404, "not-found", "openapi"),
        // Tokens.
        json(
            &alice,
            "POST",
            "/api/v1/tokens",
            r#"{"name":"x","scope":"admin"}"#.into(),
            403,
            "forbidden",
            "administrator",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/tokens",
            r#"{"name":"x","scope":"root"}"#.into(),
            400,
            "invalid-input",
            "user, admin",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/tokens",
            r#"{"name":"x","expires_in_days":0}"#.into(),
            400,
            "invalid-input",
            "1-3650",
        ),
        json(
            &alice,
            "POST",
            "/api/v1/tokens",
            r#"{"name":"x","expires_in_days":3651}"#.into(),
            400,
            "invalid-input",
            "1-3650",
        ),
        json(&alice, "POST", "/api/v1/tokens", r#"{"name":""}"#.into(), 400, "invalid-input", "name"),
        json(
            &alice,
            "POST",
            "/api/v1/tokens",
            format!(r#"{{"name":"{}"}}"#, "n".repeat(65)),
            400,
            "invalid-input",
            "name",
        ),
        // Accounts (as root).
        json(
            &ROOT,
            "POST",
            "/api/v1/admin/users",
            user("Bad Name", "zed@example.com", key.as_str()),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        json(
            &ROOT,
            "POST",
            "/api/v1/admin/users",
            user("zed", "not-an-address", key.as_str()),
            400,
            "invalid-input",
            "email",
        ),
        json(
            &ROOT,
            "POST",
            "/api/v1/admin/users",
            user("zed", "zed@example.com", "ssh-rsa nonsense"),
            400,
            "invalid-input",
            "key",
        ),
        json(
            &ROOT,
            "POST",
            "/api/v1/admin/users",
            r#"{"username":"zed","email":"zed@example.com"}"#.into(),
            400,
            "invalid-input",
            "missing field `ssh_key`",
        ),
        json(
            &ROOT,
            "POST",
            "/api/v1/admin/users",
            r#"{"username":"zed","email":"zed@example.com","ssh_key":"x","uid":-1}"#.into(),
            400,
            "invalid-input",
            "uid",
        ),
        bare(&ROOT, "GET", "/api/v1/admin/users/Bad%20Name", 404, "not-found", "user"),
        bare(&ROOT, "GET", "/api/v1/admin/users/nobody", 404, "not-found", "nobody"),
        // Quotas and admin lists.
        json(&ROOT, "PUT", "/api/v1/admin/users/alice/quota", r#"{"vms":-1}"#.into(), 400, "invalid-input", "vms"),
        json(
            &ROOT,
            "PUT",
            "/api/v1/admin/users/alice/quota",
            r#"{"cpus":4}"#.into(),
            400,
            "invalid-input",
            "unknown field `cpus`",
        ),
        json(&ROOT, "PUT", "/api/v1/admin/users/nobody/quota", r#"{"vms":1}"#.into(), 404, "not-found", "nobody"),
        bare(&ROOT, "GET", "/api/v1/admin/audit?format=xml", 400, "invalid-input", "json or jsonl"),
        bare(&ROOT, "GET", "/api/v1/admin/audit?limit=0", 400, "invalid-input", "1-100000"),
        bare(&ROOT, "GET", "/api/v1/admin/vms?owner=Bad%20Name", 404, "not-found", "user"),
        json(
            &ROOT,
            "POST",
            "/api/v1/admin/users/nobody/vms",
            vm("web", "ubuntu-24.04", "small", ""),
            404,
            "not-found",
            "nobody",
        ),
    ];
    let mut failures = Vec::new();
    for case in cases.drain(..) {
        let headers: Vec<(&str, &str)> = case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = api.call(&case.who, case.method, &case.path, &headers, &case.body).await;
        let seen = format!(
            "{} {} as {:?}: {} {}",
            case.method,
            case.path.chars().take(80).collect::<String>(),
            case.who,
            reply.status,
            reply.body.chars().take(300).collect::<String>()
        );
        if reply.status != case.status {
            failures.push(format!("{seen} (expected {})", case.status));
        } else if reply.header("content-type") != Some("application/problem+json") {
            failures.push(format!("{seen}: not application/problem+json"));
        } else if reply.problem() != case.kind {
            failures.push(format!("{seen}: not a {} problem", case.kind));
        } else if !reply.body.contains(case.words) {
            failures.push(format!("{seen}: does not say {:?}", case.words));
        }
    }
    assert!(failures.is_empty(), "{} bad answers:\n{}", failures.len(), failures.join("\n"));

    // Nothing was recorded, and the server still works.
    let vms = api.get(&ROOT, "/api/v1/admin/vms").await.json();
    assert_eq!(vms["items"].as_array().map(Vec::len), Some(0), "{vms}");
    let users = api.get(&ROOT, "/api/v1/admin/users").await.json();
    assert_eq!(users.as_array().map(Vec::len), Some(1), "only alice: {users}");
    let clusters = api.get(&ROOT, "/api/v1/admin/clusters").await.json();
    assert_eq!(clusters["items"].as_array().map(Vec::len), Some(0), "{clusters}");
    let quota = api.get(&alice, "/api/v1/quota").await.json();
    assert_eq!((quota["usage"]["ips"].as_u64(), quota["limits"]["vms"].as_u64()), (Some(0), Some(10)), "{quota}");
    let ok = api.send(&alice, "POST", "/api/v1/vms", Some(&vm("web", "ubuntu-24.04", "small", ""))).await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert!(ok.header("location").is_some_and(|l| l.starts_with("/api/v1/operations/")), "{:?}", ok.headers);
    // A JSON content type with parameters is JSON.
    let charset = [("content-type", "application/json; charset=utf-8")];
    let ok = api.call(&alice, "POST", "/api/v1/vms", &charset, vm("db", "rocky-10.1", "tiny", "").as_bytes()).await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let longest = format!("dev-{}", "a".repeat(longest_cluster - 4));
    let ok = api.send(&alice, "POST", "/api/v1/clusters", Some(&cluster(&longest))).await;
    assert_eq!(ok.status, 202, "the longest cluster name is taken: {}", ok.body);
}

/// `Idempotency-Key` replays the first answer, and refuses a different request under the same key.
#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let api = Api::new().await;
    let alice = Who::Bearer(api.account("alice", 1, false, None).await);
    let headers = [JSON, ("idempotency-key", "k-1")];
    let body = br#"{"name":"db","os":"ubuntu-24.04","spec":"small"}"#;
    let first = api.call(&alice, "POST", "/api/v1/vms", &headers, body).await;
    let again = api.call(&alice, "POST", "/api/v1/vms", &headers, body).await;
    assert_eq!((first.status, again.status), (202, 202), "{} {}", first.body, again.body);
    assert_eq!(first.json()["operations"][0]["id"], again.json()["operations"][0]["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = br#"{"name":"other","os":"ubuntu-24.04","spec":"small"}"#;
    let reused = api.call(&alice, "POST", "/api/v1/vms", &headers, other).await;
    assert_eq!((reused.status, reused.problem().as_str()), (409, "conflict"), "{}", reused.body);
    api.wait_idle().await;
    let vms = api.get(&alice, "/api/v1/vms").await.json();
    assert_eq!(vms["items"].as_array().map(Vec::len), Some(1), "one VM for three requests: {vms}");
}
