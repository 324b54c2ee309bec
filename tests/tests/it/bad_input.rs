//! Bad input gets a 4xx problem document, records nothing, and leaves the server working.

use tests::server::{Server, FAST};

/// method, path, headers, body, expected status, problem kind, words the detail must contain.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str, &'a str);

#[test]
fn bad_requests_get_problems_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let alice = server.account("alice", 1, false);
    let auth = format!("Bearer {alice}");
    let json_headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let big =
        format!(r#"{{"name":"web","os":"ubuntu-24.04","spec":"small","pad":"{}"}}"#, "x".repeat(10 * 1024 * 1024));
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"Web","os":"ubuntu-24.04","spec":"small"}"#.to_vec(),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"../../etc","os":"ubuntu-24.04","spec":"small"}"#.to_vec(),
            400,
            "invalid-input",
            "lowercase letter first",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"windows","spec":"small"}"#.to_vec(),
            400,
            "invalid-input",
            "rocky-10.1, ubuntu-24.04",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"ubuntu-24.04","spec":"giant"}"#.to_vec(),
            400,
            "invalid-input",
            "huge, large, medium, small, tiny",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small","count":0}"#.to_vec(),
            400,
            "invalid-input",
            "1-10",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small","count":11}"#.to_vec(),
            400,
            "invalid-input",
            "1-10",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small","count":-1}"#.to_vec(),
            400,
            "invalid-input",
            "count",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"ubuntu-24.04""#.to_vec(),
            400,
            "invalid-input",
            "not valid",
        ),
        (
            "POST",
            "/api/v1/vms",
            json_headers.to_vec(),
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small","owner":"bob"}"#.to_vec(),
            400,
            "invalid-input",
            "unknown field",
        ),
        ("POST", "/api/v1/vms", json_headers.to_vec(), big.into_bytes(), 413, "payload-too-large", "64 KiB"),
        (
            "POST",
            "/api/v1/vms",
            vec![("Authorization", auth.as_str()), ("Content-Type", "text/plain")],
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#.to_vec(),
            415,
            "unsupported-media-type",
            "application/json",
        ),
        (
            "POST",
            "/api/v1/vms",
            vec![("Authorization", auth.as_str())],
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#.to_vec(),
            415,
            "unsupported-media-type",
            "application/json",
        ),
        (
            "POST",
            "/api/v1/vms",
            vec![("Authorization", "Bearer bsp_forged"), ("Content-Type", "application/json")],
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#.to_vec(),
            401,
            "unauthenticated",
            "token",
        ),
        (
            "POST",
            "/api/v1/vms",
            vec![("Authorization", "Basic YWxpY2U6eA=="), ("Content-Type", "application/json")],
            br#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#.to_vec(),
            401,
            "unauthenticated",
            "bearer",
        ),
        (
            "GET",
            "/api/v1/vms/..%2F..%2Fetc%2Fpasswd",
            vec![("Authorization", auth.as_str())],
            vec![],
            404,
            "not-found",
            "vm not found",
        ),
        (
            "GET",
            "/api/v1/vms?limit=5000",
            vec![("Authorization", auth.as_str())],
            vec![],
            400,
            "invalid-input",
            "1-1000",
        ),
        (
            "GET",
            "/api/v1/vms?after=not-a-uuid",
            vec![("Authorization", auth.as_str())],
            vec![],
            400,
            "invalid-input",
            "query",
        ),
        (
            "GET",
            "/api/v1/operations/not-a-uuid",
            vec![("Authorization", auth.as_str())],
            vec![],
            404,
            "not-found",
            "operation",
        ),
        (
            "POST",
            "/api/v1/vms/web/explode",
            vec![("Authorization", auth.as_str())],
            vec![],
            404,
            "not-found",
            "start, stop or reboot",
        ),
        ("PATCH", "/api/v1/vms", vec![("Authorization", auth.as_str())], vec![], 405, "method-not-allowed", "method"),
        ("GET", "/api/v2/anything", vec![], vec![], 404, "not-found", "openapi"),
        (
            "POST",
            "/api/v1/tokens",
            json_headers.to_vec(),
            br#"{"name":"x","scope":"admin"}"#.to_vec(),
            403,
            "forbidden",
            "administrator",
        ),
        (
            "POST",
            "/api/v1/tokens",
            json_headers.to_vec(),
            br#"{"name":"x","expires_in_days":0}"#.to_vec(),
            400,
            "invalid-input",
            "1-3650",
        ),
    ];
    for (method, path, headers, body, status, kind, words) in cases {
        let response = server.http_raw(method, path, &headers, &body);
        assert_eq!(response.status, status, "{method} {path}: {}", response.body.chars().take(300).collect::<String>());
        assert_eq!(response.header("content-type"), Some("application/problem+json"), "{method} {path}");
        assert_eq!(response.problem(), kind, "{method} {path}: {}", response.body);
        assert!(response.body.contains(words), "{method} {path}: {}", response.body);
    }
    // Nothing was recorded, and the server still works.
    let vms = server.unix("GET", "/api/v1/admin/vms", None).json();
    assert_eq!(vms["items"].as_array().unwrap().len(), 0);
    let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!(quota["usage"]["ips"], 0, "no address leased by refused requests");
    assert_eq!(server.http("GET", "/healthz", None, None).status, 200);
    let ok =
        server.http("POST", "/api/v1/vms", Some(&alice), Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"small"}"#));
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert!(ok.header("location").unwrap().starts_with("/api/v1/operations/"));
    // An Idempotency-Key replays the first answer.
    let key = [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", "k-1")];
    let first = server.http_raw("POST", "/api/v1/vms", &key, br#"{"name":"db","os":"ubuntu-24.04","spec":"small"}"#);
    let again = server.http_raw("POST", "/api/v1/vms", &key, br#"{"name":"db","os":"ubuntu-24.04","spec":"small"}"#);
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.json()["operations"][0]["id"], again.json()["operations"][0]["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let reused =
        server.http_raw("POST", "/api/v1/vms", &key, br#"{"name":"other","os":"ubuntu-24.04","spec":"small"}"#);
    assert_eq!((reused.status, reused.problem().as_str()), (409, "conflict"));
}
