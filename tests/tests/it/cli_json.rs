//! Golden tests of the CLI's `-o json` and `-o yaml` output: for every command, what it prints is
//! the server's document for the requests it made (recorded by a proxy between the two),
//! pretty-printed as the CLI always has (`serde_json::to_string_pretty` of the parsed document,
//! or `serde_yaml`), byte for byte. Scripts rely on this output, so it must not change when the
//! CLI's own code does.

use serde_json::Value;
use tests::proxy::{Exchange, RecordingProxy};
use tests::server::{expect, Server, FAST};

/// Which of the recorded documents a command prints.
#[derive(Clone, Copy, Debug)]
enum Printed {
    /// The answer to its last request.
    Last,
    /// The `items` of every page it fetched, as one array.
    Items,
    /// The last answer for each operation it followed (`--wait`, `op wait`), in order.
    Finals,
    /// `list-resources -j`: `{"clusters": [], "vms": <items>}`.
    Resources,
    /// The last answer's body as it came (`admin audit --jsonl`).
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Json,
    Yaml,
}

fn parse(exchange: &Exchange) -> Value {
    serde_json::from_str(&exchange.body).unwrap_or_else(|error| {
        panic!("{} {} is not JSON ({error}): {}", exchange.method, exchange.path, exchange.body)
    })
}

fn document(printed: Printed, exchanges: &[Exchange]) -> Value {
    let ok: Vec<&Exchange> = exchanges.iter().filter(|e| (200..300).contains(&e.status)).collect();
    let last = || parse(ok.last().unwrap_or_else(|| panic!("no successful request in {exchanges:#?}")));
    let items = || {
        Value::Array(
            ok.iter()
                .filter(|e| e.method == "GET")
                .flat_map(|e| parse(e)["items"].as_array().cloned().expect("a page"))
                .collect(),
        )
    };
    match printed {
        Printed::Last => last(),
        Printed::Items => items(),
        Printed::Resources => serde_json::json!({"vms": items(), "clusters": []}),
        Printed::Text => unreachable!("printed as it came"),
        Printed::Finals => {
            let mut order: Vec<&str> = Vec::new();
            for e in ok.iter().filter(|e| e.method == "GET" && e.path.starts_with("/api/v1/operations/")) {
                if !order.contains(&e.path.as_str()) {
                    order.push(&e.path);
                }
            }
            assert!(!order.is_empty(), "no operation was followed: {exchanges:#?}");
            Value::Array(
                order
                    .iter()
                    .map(|path| parse(ok.iter().rev().find(|e| e.method == "GET" && e.path == *path).expect("fetched")))
                    .collect(),
            )
        }
    }
}

/// Checks that `output` is what the CLI has always printed for the documents it was given, and
/// returns the document.
fn golden(proxy: &RecordingProxy, what: &str, output: std::process::Output, printed: Printed, format: Format) -> Value {
    let stdout = expect(&output, 0);
    let exchanges = proxy.take();
    if let Printed::Text = printed {
        let last = exchanges.last().expect("a request");
        assert_eq!(stdout, last.body, "`basphere {what}` no longer prints the server's answer as it came");
        return Value::Null;
    }
    let doc = document(printed, &exchanges);
    let wanted = match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&doc).unwrap()),
        Format::Yaml => serde_yaml::to_string(&doc).unwrap(),
    };
    assert_eq!(stdout, wanted, "`basphere {what}` no longer prints the server's document as it did");
    doc
}

#[test]
fn json_and_yaml_output_is_the_servers_document_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let proxy = RecordingProxy::start(&server, dir.path());
    let run = |format: Format, args: &[&str]| -> Vec<String> {
        let flag = if format == Format::Json { "json" } else { "yaml" };
        ["-o", flag].iter().chain(args).map(|arg| (*arg).to_owned()).collect()
    };
    // The administrator over the (proxied) socket.
    let admin = |printed: Printed, format: Format, args: &[&str]| {
        let args = run(format, args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        golden(&proxy, &args.join(" "), proxy.cli(&args), printed, format)
    };
    // A user over (proxied) HTTP with a token.
    let user = |token: &str, printed: Printed, format: Format, args: &[&str]| {
        let args = run(format, args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        golden(&proxy, &args.join(" "), proxy.cli_as(token, &args), printed, format)
    };
    use Format::{Json, Yaml};
    use Printed::*;

    admin(Last, Json, &["whoami"]);
    admin(Last, Yaml, &["whoami"]);
    let key = basphere_core::testing::ssh_key(1);
    let alice = ["admin", "user", "add", "alice", "--email", "alice@example.com", "--key", key.as_str()];
    admin(Last, Json, &[&alice[..], &["--team", "payments", "--uid", "61001"]].concat());
    let key = basphere_core::testing::ssh_key(2);
    admin(Last, Yaml, &["admin", "user", "add", "bob", "--email", "bob@example.com", "--key", key.as_str(), "--admin"]);
    let created = admin(Last, Json, &["admin", "token", "create", "--user", "alice"]);
    let token = created["secret"].as_str().unwrap().to_owned();
    admin(Last, Yaml, &["admin", "token", "create", "--user", "bob", "--name", "ops", "--scope", "admin"]);
    admin(Last, Json, &["admin", "user", "list"]);
    admin(Last, Yaml, &["admin", "user", "list"]);
    admin(Last, Json, &["admin", "user", "show", "alice"]);
    admin(Last, Yaml, &["admin", "user", "show", "alice"]);

    let alice = token.as_str();
    user(alice, Last, Json, &["whoami"]);
    user(alice, Last, Json, &["catalog"]);
    user(alice, Last, Yaml, &["catalog"]);
    user(alice, Last, Json, &["quota"]);
    user(alice, Last, Yaml, &["quota"]);
    user(alice, Items, Json, &["vm", "list"]);
    let finished = user(
        alice,
        Finals,
        Json,
        &["vm", "create", "web", "--os", "ubuntu-24.04", "--spec", "small", "--count", "3", "--wait"],
    );
    assert_eq!(finished.as_array().unwrap().len(), 3);
    let accepted = user(alice, Last, Json, &["vm", "create", "db", "--os", "rocky-10.1", "--spec", "tiny"]);
    user(
        alice,
        Last,
        Yaml,
        &["vm", "create", "cache", "--os", "rocky-10.1", "--spec", "tiny", "--idempotency-key", "k1"],
    );
    server.wait_idle();
    user(alice, Items, Json, &["vm", "list"]);
    user(alice, Items, Yaml, &["vm", "list", "--all"]);
    user(alice, Items, Json, &["vm", "list", "--state", "running"]);
    user(alice, Last, Json, &["vm", "show", "web-1"]);
    user(alice, Last, Yaml, &["vm", "show", "web-1"]);
    user(alice, Last, Json, &["vm", "stop", "web-1"]);
    server.wait_idle();
    user(alice, Finals, Json, &["vm", "start", "web-1", "--wait"]);
    user(alice, Finals, Yaml, &["vm", "reboot", "web-1", "--wait"]);
    user(alice, Last, Yaml, &["vm", "reboot", "web-2"]);
    server.wait_idle();

    let op = accepted["operations"][0]["id"].as_str().unwrap().to_owned();
    user(alice, Items, Json, &["op", "list"]);
    user(alice, Items, Yaml, &["op", "list"]);
    user(alice, Last, Json, &["op", "show", &op]);
    user(alice, Last, Yaml, &["op", "show", &op]);
    user(alice, Finals, Json, &["op", "wait", &op]);

    let laptop = user(alice, Last, Json, &["token", "create", "laptop", "--expires-in-days", "30"]);
    user(alice, Last, Yaml, &["token", "create", "desk", "--scope", "user"]);
    user(alice, Last, Json, &["token", "list"]);
    user(alice, Last, Yaml, &["token", "list"]);
    user(alice, Last, Json, &["token", "revoke", laptop["token"]["id"].as_str().unwrap()]);

    user(alice, Last, Json, &["vm", "delete", "db", "--yes"]);
    server.wait_idle();
    user(alice, Finals, Json, &["vm", "delete", "cache", "--yes", "--wait"]);

    admin(Last, Json, &["admin", "quota", "show", "alice"]);
    admin(Last, Yaml, &["admin", "quota", "show", "alice"]);
    admin(Last, Json, &["admin", "quota", "set", "alice", "--vms", "4", "--memory-mb", "65536"]);
    admin(Last, Yaml, &["admin", "quota", "set", "alice", "--ips", "6"]);
    admin(Last, Json, &["admin", "quota", "reset", "alice"]);
    admin(Items, Json, &["admin", "vm", "list"]);
    admin(Items, Yaml, &["admin", "vm", "list", "--owner", "alice"]);
    admin(Items, Json, &["admin", "ops"]);
    admin(Items, Yaml, &["admin", "ops", "--owner", "alice"]);
    admin(Last, Json, &["admin", "reconcile"]);
    admin(Last, Json, &["admin", "reconcile", "--now"]);
    admin(Last, Yaml, &["admin", "reconcile"]);
    admin(Last, Json, &["-y", "admin", "vm", "delete", "alice", "web-3"]);
    server.wait_idle();
    admin(Finals, Json, &["-y", "admin", "vm", "delete", "alice", "web-2", "--wait"]);
    admin(Items, Json, &["admin", "audit"]);
    admin(Items, Yaml, &["admin", "audit", "--actor", "alice"]);
    admin(Items, Json, &["admin", "outbox"]);
    admin(Items, Yaml, &["admin", "outbox", "--state", "delivered"]);
    admin(Text, Json, &["admin", "audit", "--jsonl"]);

    // The original command names print the same documents with -j.
    let alias = |name: &str, printed: Printed, args: &[&str]| {
        golden(&proxy, name, proxy.alias_as(alice, name, args), printed, Json)
    };
    alias("list-vms", Items, &["-j"]);
    alias("show-quota", Last, &["-j"]);
    alias("list-resources", Resources, &["-j"]);
}
