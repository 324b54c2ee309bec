//! Several `basphere-server` replicas on one PostgreSQL database (a private server the tests
//! start): any replica serves any request, quotas and addresses hold across them, identity
//! changes reach every replica, a replica killed with SIGKILL has its work finished by the
//! others, the database restarted under load loses nothing, and each notification is delivered
//! once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basphere_core::store::{OperationFilter, VmFilter};
use basphere_core::StoreExt;
use basphere_store_postgres::testing::PgCluster;
use basphere_store_postgres::{PostgresOptions, PostgresStore};
use tests::server::Server;

/// Quotas no scenario here reaches: they test addresses and work, not limits.
const ROOMY: &str = "quotas:\n  default:\n    max_vms: 1000\n    max_ips: 1000\n    max_vcpus: 100000\n    max_memory_mb: 100000000\n    max_disk_gb: 10000000\n";

/// The vCenter simulator the replicas share (as they would share a vCenter), with a template
/// per replica: the simulator races concurrent clones of one template.
struct Vcenter {
    vcsim: basphere_vsphere::vcsim::Vcsim,
    templates: Vec<String>,
}

impl Vcenter {
    fn start(replicas: usize, clone_ms: u64) -> Vcenter {
        let templates: Vec<String> = (0..replicas).map(|i| format!("replica-{i}-template")).collect();
        let vcsim = basphere_vsphere::vcsim::Vcsim::start(&basphere_vsphere::vcsim::VcsimOptions {
            folder: basphere_core::Config::default().vsphere.folder,
            templates: templates.clone(),
            method_delays: if clone_ms > 0 { vec![("CloneVM_Task".into(), clone_ms)] } else { Vec::new() },
        })
        .expect("vcsim starts (apt-get install golang-go golang-github-vmware-govmomi-dev)");
        Vcenter { vcsim, templates }
    }
}

/// `n` servers in `dir` sharing the database at `url` and the vCenter simulator, each with
/// `extra` configuration.
fn replicas(dir: &std::path::Path, n: usize, url: &str, vcenter: &Vcenter, extra: &str) -> Vec<Server> {
    let backend = tests::vcsim::server_config(&vcenter.vcsim, dir);
    (0..n)
        .map(|i| {
            let home = dir.join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let config = format!(
                "store:\n  url: \"{url}\"\nwork:\n  lease_seconds: 2\n{backend}templates:\n  os:\n    ubuntu-24.04:\n      template: {}\n      interface: ens192\n{extra}",
                vcenter.templates[i]
            );
            Server::start(&home, Some(&config))
        })
        .collect()
}

fn store(url: &str) -> PostgresStore {
    PostgresStore::connect(&PostgresOptions::new(url)).unwrap()
}

#[test]
fn two_hundred_creates_spread_over_three_replicas_with_quota_ten_accept_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let url = PgCluster::shared().fresh_database();
    let vcenter = Vcenter::start(3, 0);
    let servers: Vec<Arc<Server>> = replicas(dir.path(), 3, &url, &vcenter, "").into_iter().map(Arc::new).collect();
    let alice = Arc::new(servers[0].account("alice", 1, false));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (server, alice) = (servers[i % 3].clone(), alice.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"name":"vm-{i}","os":"ubuntu-24.04","spec":"tiny"}}"#);
                let response = server.http("POST", "/api/v1/vms", Some(&alice), Some(&body));
                (response.status, response.problem())
            })
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted = results.iter().filter(|(status, _)| *status == 202).count();
    let refused = results.iter().filter(|(status, kind)| *status == 403 && kind == "quota-exceeded").count();
    assert_eq!((accepted, refused), (10, 190), "{results:?}");
    servers[1].wait_idle();
    for server in &servers {
        let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
        assert_eq!((quota["usage"]["vms"].as_u64(), quota["usage"]["ips"].as_u64()), (Some(10), Some(10)));
    }
}

#[test]
fn twenty_users_creating_five_vms_each_over_three_replicas_get_one_hundred_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let url = PgCluster::shared().fresh_database();
    let vcenter = Vcenter::start(3, 0);
    let servers: Vec<Arc<Server>> = replicas(dir.path(), 3, &url, &vcenter, "").into_iter().map(Arc::new).collect();
    let tokens: Vec<Arc<String>> =
        (0..20).map(|u| Arc::new(servers[u % 3].account(&format!("user{u}"), 100 + u as u64, false))).collect();
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (server, token) = (servers[i % 3].clone(), tokens[i / 5].clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"name":"vm-{}","os":"ubuntu-24.04","spec":"tiny"}}"#, i % 5);
                server.http("POST", "/api/v1/vms", Some(&token), Some(&body)).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|status| *status == 202), "{statuses:?}");
    servers[2].wait_idle();
    let vms = store(&url).query(|tx| tx.list_vms(&VmFilter::default())).unwrap();
    assert_eq!(vms.len(), 100);
    assert!(vms.iter().all(|vm| vm.state == basphere_core::model::VmState::Running), "{vms:?}");
    let addresses: BTreeSet<_> = vms.iter().map(|vm| vm.ip.expect("an address")).collect();
    assert_eq!(addresses.len(), 100, "no address handed out twice");
}

#[test]
fn idempotency_keys_quotas_and_suspensions_hold_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let url = PgCluster::shared().fresh_database();
    let vcenter = Vcenter::start(3, 0);
    let servers = replicas(dir.path(), 3, &url, &vcenter, "");
    let alice = servers[0].account("alice", 1, false);
    let auth = format!("Bearer {alice}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", "k-1")];
    let body = br#"{"name":"web","os":"ubuntu-24.04","spec":"tiny"}"#;
    let first = servers[0].http_raw("POST", "/api/v1/vms", &headers, body);
    let again = servers[1].http_raw("POST", "/api/v1/vms", &headers, body);
    assert_eq!((first.status, again.status), (202, 202), "{} / {}", first.body, again.body);
    assert_eq!(
        first.json()["operations"][0]["id"],
        again.json()["operations"][0]["id"],
        "the second replica replays the first answer"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    servers[2].wait_idle();
    assert_eq!(store(&url).query(|tx| tx.list_vms(&VmFilter::default())).unwrap().len(), 1);

    // A quota lowered through one replica holds on the others at once: it is read in the
    // transaction that checks it.
    let quota = servers[0].unix("PUT", "/api/v1/admin/users/alice/quota", Some(r#"{"vms": 1}"#));
    assert_eq!(quota.status, 200, "{}", quota.body);
    for server in &servers[1..] {
        let refused = server.http(
            "POST",
            "/api/v1/vms",
            Some(&alice),
            Some(r#"{"name":"more","os":"ubuntu-24.04","spec":"tiny"}"#),
        );
        assert_eq!((refused.status, refused.problem().as_str()), (403, "quota-exceeded"), "{}", refused.body);
    }

    // Every replica has used the token (and cached it); a suspension through one clears that
    // replica's cache at once, and reaches the others when their cached entry expires (5 s).
    for server in &servers {
        assert_eq!(server.http("GET", "/api/v1/quota", Some(&alice), None).status, 200);
    }
    let suspended = servers[0].unix("POST", "/api/v1/admin/users/alice/suspend", None);
    assert!(suspended.status < 300, "{}", suspended.body);
    let started = Instant::now();
    let refused = |status: u16| matches!(status, 401 | 403);
    let status = servers[0].http("GET", "/api/v1/quota", Some(&alice), None).status;
    assert!(refused(status), "the replica that suspended refuses the token at once, not with {status}");
    // The others, each polled on its own thread until it refuses; the bound is far above the
    // cache's lifetime, for a loaded machine, and only catches a replica that never learns.
    let bound = Duration::from_secs(60);
    std::thread::scope(|scope| {
        let waits: Vec<_> = servers[1..]
            .iter()
            .enumerate()
            .map(|(i, server)| {
                let (alice, refused) = (&alice, &refused);
                scope.spawn(move || loop {
                    let status = server.http("GET", "/api/v1/quota", Some(alice), None).status;
                    if status != 200 {
                        assert!(refused(status), "replica {}: a suspended account's token is refused, not {status}", i + 1);
                        return;
                    }
                    assert!(
                        started.elapsed() < bound,
                        "replica {} still serves the suspended account {:?} after the suspension (its token cache keeps an entry 5 s)",
                        i + 1,
                        started.elapsed()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                })
            })
            .collect();
        for wait in waits {
            if let Err(panic) = wait.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// A webhook receiver on loopback that checks each request as a receiver following the webhook's
/// documentation does: a POST to its path, JSON, `X-Basphere-Event` naming the body's event, a
/// timestamp within five minutes, and the HMAC signature of `<timestamp>.<body>` under the shared
/// secret. It answers 204 only then (keeping the body), an error status otherwise (keeping why).
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

/// A request as the receiver read it.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    fn read(reader: &mut impl BufRead) -> Option<Request> {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map_or(Some(0), |(_, value)| value.parse().ok())?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(Request { method, path, headers, body })
    }

    /// The body, when the request is what the webhook sends; else the status and why.
    fn judge(&self, secret: &[u8]) -> Result<serde_json::Value, (u16, String)> {
        use basphere_notify::webhook::{verify, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
        if self.path != "/hook" {
            return Err((404, format!("path {}", self.path)));
        }
        if self.method != "POST" {
            return Err((405, format!("method {}", self.method)));
        }
        if self.header("content-type") != Some("application/json") {
            return Err((415, format!("content type {:?}", self.header("content-type"))));
        }
        let timestamp: i64 = self
            .header(TIMESTAMP_HEADER)
            .and_then(|value| value.parse().ok())
            .ok_or((401, format!("no {TIMESTAMP_HEADER}")))?;
        if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
            return Err((401, format!("timestamp {timestamp} is not recent")));
        }
        let signature = self.header(SIGNATURE_HEADER).ok_or((401, format!("no {SIGNATURE_HEADER}")))?;
        if !verify(secret, timestamp, &self.body, signature) {
            return Err((401, format!("signature {signature} does not match")));
        }
        let body: serde_json::Value =
            serde_json::from_slice(&self.body).map_err(|error| (400, format!("body is not JSON: {error}")))?;
        if body["event"].as_str().is_none() || self.header(EVENT_HEADER) != body["event"].as_str() {
            return Err((
                400,
                format!("{EVENT_HEADER} {:?} for the event {}", self.header(EVENT_HEADER), body["event"]),
            ));
        }
        Ok(body)
    }
}

impl Receiver {
    fn start(secret: &str) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (kept, refusals) = (bodies.clone(), refused.clone());
        let secret = secret.as_bytes().to_vec();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, refusals, secret) = (kept.clone(), refusals.clone(), secret.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut reader = BufReader::new(stream);
                    let Some(request) = Request::read(&mut reader) else { return };
                    let answer = match request.judge(&secret) {
                        Ok(body) => {
                            kept.lock().unwrap().push(body);
                            "204 No Content".to_owned()
                        }
                        Err((status, why)) => {
                            refusals.lock().unwrap().push(why);
                            format!("{status} Refused")
                        }
                    };
                    let answer = format!("HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = reader.get_mut().write_all(answer.as_bytes());
                });
            }
        });
        Receiver { url, bodies, refused }
    }

    /// The status line the receiver answers `request` (raw HTTP) with.
    fn answer(&self, request: &str) -> String {
        let address = self.url.trim_start_matches("http://").trim_end_matches("/hook");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).unwrap();
        answer.trim_end().to_owned()
    }
}

#[test]
fn each_notification_is_delivered_once_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let url = PgCluster::shared().fresh_database();
    let receiver = Receiver::start("a-shared-secret-of-some-length");
    let secret = dir.path().join("webhook.secret");
    std::fs::write(&secret, "a-shared-secret-of-some-length").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let extra = format!(
        "{ROOMY}notifications:\n  webhook:\n    url: {}\n    secret_file: {}\n",
        receiver.url,
        secret.display()
    );
    let vcenter = Vcenter::start(3, 0);
    let servers: Vec<Arc<Server>> = replicas(dir.path(), 3, &url, &vcenter, &extra).into_iter().map(Arc::new).collect();
    let alice = Arc::new(servers[0].account("alice", 1, false));
    let threads: Vec<_> = (0..15)
        .map(|i| {
            let (server, alice) = (servers[i % 3].clone(), alice.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"name":"vm-{i}","os":"ubuntu-24.04","spec":"tiny"}}"#);
                server.http("POST", "/api/v1/vms", Some(&alice), Some(&body)).status
            })
        })
        .collect();
    assert!(threads.into_iter().all(|t| t.join().unwrap() == 202));
    servers[0].wait_idle();
    // Every event is in the outbox; wait until every one is delivered.
    let store = store(&url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = store
            .query(|tx| tx.list_outbox(&basphere_core::store::OutboxFilter::default()))
            .unwrap()
            .into_iter()
            .filter(|message| message.state != basphere_core::model::OutboxState::Delivered)
            .count();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} notifications still undelivered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let outbox = store.query(|tx| tx.list_outbox(&basphere_core::store::OutboxFilter::default())).unwrap();
    let webhook_ids: BTreeSet<String> =
        outbox.iter().filter(|m| m.channel == "webhook").map(|m| m.id.to_string()).collect();
    let bodies = receiver.bodies.lock().unwrap().clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for body in &bodies {
        *seen.entry(body["id"].as_str().expect("every delivery carries its id").to_owned()).or_default() += 1;
    }
    let ready = bodies.iter().filter(|body| body["event"] == "vm_ready").count();
    let events: Vec<&str> = bodies.iter().filter_map(|body| body["event"].as_str()).collect();
    assert_eq!(ready, 15, "one vm_ready per VM; delivered: {events:?}");
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), webhook_ids, "every webhook message was delivered");
    assert!(seen.values().all(|count| *count == 1), "none delivered twice: {seen:?}");
    assert_eq!(*receiver.refused.lock().unwrap(), Vec::<String>::new(), "every request was signed and well formed");

    // The receiver refuses what the webhook's receivers must refuse.
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"id":"x","event":"vm_ready"}"#;
    let signed = |secret: &[u8], path: &str, method: &str, event: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\nX-Basphere-Event: {event}\r\n\
             X-Basphere-Timestamp: {now}\r\nX-Basphere-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
            basphere_notify::webhook::signature(secret, now, body.as_bytes()),
            body.len()
        )
    };
    let secret = b"a-shared-secret-of-some-length";
    assert!(receiver.answer(&signed(secret, "/hook", "POST", "vm_ready")).contains(" 204 "), "the control");
    assert!(receiver.answer(&signed(b"another-secret", "/hook", "POST", "vm_ready")).contains(" 401 "));
    assert!(receiver.answer(&signed(secret, "/elsewhere", "POST", "vm_ready")).contains(" 404 "));
    assert!(receiver.answer(&signed(secret, "/hook", "PUT", "vm_ready")).contains(" 405 "));
    assert!(receiver.answer(&signed(secret, "/hook", "POST", "vm_failed")).contains(" 400 "));
}

#[test]
fn the_database_restarted_under_load_loses_nothing_and_the_replicas_recover_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start().unwrap();
    let url = cluster.fresh_database();
    let vcenter = Vcenter::start(2, 0);
    let servers: Vec<Arc<Server>> = replicas(dir.path(), 2, &url, &vcenter, ROOMY).into_iter().map(Arc::new).collect();
    let alice = Arc::new(servers[0].account("alice", 1, false));
    // Creates keep coming while the database goes away and comes back.
    let load: Vec<_> = (0..2)
        .map(|r| {
            let (server, alice) = (servers[r].clone(), alice.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for i in 0..30 {
                    let body = format!(r#"{{"name":"r{r}-{i}","os":"ubuntu-24.04","spec":"tiny"}}"#);
                    let response = server.http("POST", "/api/v1/vms", Some(&alice), Some(&body));
                    answers.push((format!("r{r}-{i}"), response.status));
                    std::thread::sleep(Duration::from_millis(100));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    cluster.stop();
    let ready = servers[0].http("GET", "/readyz", None, None);
    assert_eq!((ready.status, ready.json()["store"].as_str()), (503, Some("unavailable")), "{}", ready.body);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.start_again().unwrap();
    let answers: Vec<(String, u16)> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let accepted: BTreeSet<String> =
        answers.iter().filter(|(_, status)| *status == 202).map(|(name, _)| name.clone()).collect();
    assert!(
        answers.iter().all(|(_, status)| *status == 202 || *status == 503),
        "while the database is away a request is refused as unavailable: {answers:?}"
    );
    assert!(answers.iter().any(|(_, status)| *status == 503), "the outage was seen: {answers:?}");
    // Both replicas answer again by themselves, and finish every accepted create.
    for server in &servers {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.http("GET", "/readyz", None, None).status != 200 {
            assert!(Instant::now() < deadline, "a replica did not recover: {}", server.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    servers[1].wait_idle();
    let store = store(&url);
    let vms = store.query(|tx| tx.list_vms(&VmFilter::default())).unwrap();
    let recorded: BTreeSet<String> = vms.iter().map(|vm| vm.name.to_string()).collect();
    assert_eq!(recorded, accepted, "every accepted create is recorded, and nothing refused is");
    assert!(vms.iter().all(|vm| vm.state == basphere_core::model::VmState::Running), "{vms:?}");
    let leases = store.query(|tx| tx.list_leases(None)).unwrap();
    assert_eq!(leases.len(), vms.len(), "one address per VM, none leaked");
    drop(servers);
}

/// A small deterministic generator (splitmix64), so a failing round can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Ten rounds against the vCenter simulator: VMs created and deleted through three replicas, one
/// replica killed with SIGKILL at a random moment while it holds operations, its work taken over.
/// After each round every operation has ended once, vCenter holds exactly the live VMs, and every
/// live VM holds exactly one address.
#[test]
fn a_replica_killed_while_it_holds_operations_has_its_work_finished_by_the_others() {
    let seed = std::env::var("BASPHERE_TEST_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("seed {seed} (BASPHERE_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let vcenter = Vcenter::start(3, 500);
    let url = PgCluster::shared().fresh_database();
    let mut servers = replicas(dir.path(), 3, &url, &vcenter, ROOMY);
    let alice = servers[0].account("alice", 1, false);
    let store = store(&url);
    let vsphere = tests::vcsim::provisioner(&vcenter.vcsim);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut live: Vec<String> = Vec::new();
    let mut next = 0;
    // Operations the victim held when it was killed, over all rounds.
    let mut taken_over = 0;
    for round in 0..10 {
        let victim = rng.below(3) as usize;
        let creates = 2 + rng.below(3) as usize;
        let delay = Duration::from_millis(rng.below(500));
        // Delete one VM of the earlier rounds, create a few, through every replica.
        let mut requests: Vec<(String, &str, String)> = Vec::new();
        if !live.is_empty() {
            let gone = live.remove(rng.below(live.len() as u64) as usize);
            requests.push(("DELETE".into(), "", format!("/api/v1/vms/{gone}")));
        }
        for _ in 0..creates {
            let name = format!("vm-{next}");
            next += 1;
            requests.push((
                "POST".into(),
                "create",
                format!(r#"{{"name":"{name}","os":"ubuntu-24.04","spec":"tiny"}}"#),
            ));
            live.push(name);
        }
        for (i, (method, kind, target)) in requests.iter().enumerate() {
            let server = &servers[(i + round) % 3];
            let response = if *kind == "create" {
                server.http(method, "/api/v1/vms", Some(&alice), Some(target))
            } else {
                server.http(method, target, Some(&alice), None)
            };
            assert_eq!(response.status, 202, "round {round} (seed {seed}): {}", response.body);
        }
        std::thread::sleep(delay);
        let held = store
            .query(|tx| {
                let unfinished = tx.list_operations(&OperationFilter { unfinished: true, ..Default::default() })?;
                let mut held = 0;
                for op in unfinished {
                    if tx
                        .operation_claim(op.id)?
                        .is_some_and(|claim| claim.worker.contains(&format!("replica-{victim}/")))
                    {
                        held += 1;
                    }
                }
                Ok(held)
            })
            .unwrap();
        taken_over += held;
        servers[victim].kill();
        // The others take over its claims when they expire; it comes back later in the round.
        let survivor = (victim + 1) % 3;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let unfinished = store
                .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..Default::default() }))
                .unwrap();
            if unfinished.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} (seed {seed}): operations never ended: {unfinished:?}\n{}",
                servers[survivor].log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        servers[victim].restart();

        // Every operation ended once, successfully.
        let operations = store.query(|tx| tx.list_operations(&OperationFilter::default())).unwrap();
        let failed: Vec<_> =
            operations.iter().filter(|op| op.state != basphere_core::model::OperationState::Succeeded).collect();
        assert!(failed.is_empty(), "round {round} (seed {seed}): {failed:?}");
        // The store's live VMs are what the test expects, and exactly what vCenter holds.
        let vms = store.query(|tx| tx.list_vms(&VmFilter::default())).unwrap();
        let recorded: BTreeMap<String, uuid::Uuid> = vms.iter().map(|vm| (vm.name.to_string(), vm.id)).collect();
        assert_eq!(
            recorded.keys().cloned().collect::<BTreeSet<_>>(),
            live.iter().cloned().collect(),
            "round {round} (seed {seed})"
        );
        let inventory = runtime.block_on(basphere_core::Provisioner::inventory(&vsphere)).unwrap();
        let found: BTreeMap<String, uuid::Uuid> = inventory
            .iter()
            .map(|vm| (vm.vsphere_name.trim_start_matches("alice-").to_owned(), vm.basphere_id.expect("marked")))
            .collect();
        assert_eq!(inventory.len(), found.len(), "round {round} (seed {seed}): no VM twice in vCenter");
        assert_eq!(found, recorded, "round {round} (seed {seed}): vCenter holds exactly the live VMs");
        // One address per live VM: none leaked, none shared.
        let leases = store.query(|tx| tx.list_leases(None)).unwrap();
        let leased: BTreeSet<uuid::Uuid> = leases.iter().map(|lease| lease.resource.id).collect();
        assert_eq!(leases.len(), vms.len(), "round {round} (seed {seed}): {leases:?}");
        assert_eq!(leased, recorded.values().copied().collect(), "round {round} (seed {seed})");
    }
    assert!(taken_over > 0, "seed {seed}: the victims never held an operation when killed");
    println!("{taken_over} operations held by a killed replica were finished by the others");
}

/// An installation on SQLite moves to PostgreSQL with `migrate-store`: counts printed, every
/// record compared, and a server on the new store serves the same accounts, tokens and VMs.
#[test]
fn migrate_store_moves_an_installation_from_sqlite_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Some(tests::server::FAST));
    let alice = server.account("alice", 1, false);
    for name in ["web", "db"] {
        let body = format!(r#"{{"name":"{name}","os":"ubuntu-24.04","spec":"tiny"}}"#);
        assert_eq!(server.http("POST", "/api/v1/vms", Some(&alice), Some(&body)).status, 202);
    }
    server.wait_idle();
    assert_eq!(server.http("DELETE", "/api/v1/vms/db", Some(&alice), None).status, 202);
    server.wait_idle();
    let before = server.http("GET", "/api/v1/vms", Some(&alice), None).json();
    assert!(server.terminate().success());

    let url = PgCluster::shared().fresh_database();
    let sqlite = format!("sqlite:{}", server.data_dir.join("basphere.db").display());
    let migrate = |to: &str| {
        std::process::Command::new(&tests::server::binaries().server)
            .args(["migrate-store", "--from", &sqlite, "--to", to])
            .output()
            .unwrap()
    };
    let moved = migrate(&url);
    let printed = String::from_utf8_lossy(&moved.stdout).to_string();
    assert!(moved.status.success(), "{printed}{}", String::from_utf8_lossy(&moved.stderr));
    assert!(printed.contains("moved from sqlite to postgres, and checked record by record"), "{printed}");
    let count = |kind: &str| -> usize {
        let line =
            printed.lines().find(|line| line.trim_start().starts_with(kind)).unwrap_or_else(|| panic!("{printed}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert_eq!((count("users"), count("vms"), count("leases"), count("tokens")), (1, 2, 1, 1), "{printed}");
    assert!(count("operations") >= 3 && count("audit events") >= 4, "{printed}");

    // Into a store that already holds records: refused, saying why, and nothing changes.
    let again = migrate(&url);
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already holds") && said.contains("1 users") && said.contains("empty database"), "{said}");

    // The same data directory (its simulated vCenter), now on PostgreSQL.
    let config = format!("{}store:\n  url: \"{url}\"\n", tests::server::FAST);
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    server.restart();
    assert_eq!(server.http("GET", "/readyz", None, None).status, 200);
    let after = server.http("GET", "/api/v1/vms", Some(&alice), None).json();
    assert_eq!(after, before, "the same token sees the same VMs");
    let reconciled = server.unix("POST", "/api/v1/admin/reconcile", None).json();
    assert!(
        reconciled["lost"].as_array().unwrap().is_empty() && reconciled["strays"].as_array().unwrap().is_empty(),
        "{reconciled}"
    );
}
