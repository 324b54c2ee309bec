//! The simulated management cluster as the server runs it: on loopback, which every user of the
//! machine reaches, so it answers only requests carrying the token of its kubeconfig, a file
//! only the server's user can read.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use basphere_capi::{cluster_backend, VsphereSite, SIMULATED_KUBECONFIG};
use basphere_core::Config;
use serde_json::Value;

use super::request;

/// `curl` with `args` as `uid` (with `setpriv`, when given): the status and the body.
async fn curl(uid: Option<u32>, args: Vec<String>) -> (u16, String) {
    let output = tokio::task::spawn_blocking(move || {
        let mut command = match uid {
            Some(uid) => {
                let mut command = Command::new("setpriv");
                command.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()]);
                command.arg("curl");
                command
            }
            None => Command::new("curl"),
        };
        command.env("HOME", "/").args(["-q", "-sS", "--max-time", "10", "-w", "\n%{http_code}"]).args(&args);
        command.output().expect("curl (Debian's curl package) and setpriv (util-linux) run")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `command` as `uid`: whether it succeeded, and what it wrote to stderr.
async fn as_uid(uid: u32, command: &[&str]) -> (bool, String) {
    let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("setpriv")
            .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
            .args(&command)
            .output()
            .expect("setpriv (util-linux) runs")
    })
    .await
    .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The server address and token of the kubeconfig at `path`.
fn read_kubeconfig(path: &Path) -> (String, String) {
    let kubeconfig: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let server = kubeconfig["clusters"][0]["cluster"]["server"].as_str().unwrap().to_owned();
    let token = kubeconfig["users"][0]["user"]["token"].as_str().unwrap().to_owned();
    (server, token)
}

fn unauthorized(answer: &(u16, String), what: &str) {
    assert_eq!(answer.0, 401, "{what}: {}", answer.1);
    let status: Value = serde_json::from_str(&answer.1).unwrap_or_else(|_| panic!("{what}: {}", answer.1));
    assert_eq!(
        (status["kind"].as_str(), status["status"].as_str(), status["reason"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some("Failure"), Some("Unauthorized"), Some(401)),
        "{what}: a Kubernetes Status: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_management_cluster_answers_only_the_token_of_its_private_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::from_yaml("recaptcha:\n  enabled: false\nmanagement_cluster:\n  simulated_step_seconds: 0.05\n")
            .unwrap();
    let backend = cluster_backend(&config, &VsphereSite::default(), dir.path()).await.unwrap();
    let path: PathBuf = dir.path().join(SIMULATED_KUBECONFIG);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the kubeconfig is private");
    let (server, token) = read_kubeconfig(&path);
    assert!(server.starts_with("http://127.0.0.1:"), "{server}");
    assert!(token.len() >= 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "a random token: {token}");

    // A cluster, with its kubeconfig Secret.
    let request = request(1, 1, "small");
    backend.provisioner.apply(&request).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while backend.provisioner.kubeconfig(&request.cluster_ref()).await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the kubeconfig Secret never came");
        backend.provisioner.changed(Duration::from_millis(200)).await;
    }
    let journal = dir.path().join("simulated-management-cluster.json");
    assert_eq!(std::fs::metadata(&journal).unwrap().permissions().mode() & 0o777, 0o600, "the journal is private");
    let secret = format!("{server}/api/v1/namespaces/user-alice/secrets/dev-kubeconfig");
    let bearer = |token: &str| vec!["-H".to_owned(), format!("Authorization: Bearer {token}")];
    let with = |mut first: Vec<String>, rest: &[&str]| {
        first.extend(rest.iter().map(|s| (*s).to_owned()));
        first
    };

    // No token, a wrong one, the old constant, another scheme: 401, reading or deleting.
    unauthorized(&curl(None, vec![secret.clone()]).await, "no token");
    unauthorized(&curl(None, with(bearer("simulated"), &[&secret])).await, "the old constant token");
    unauthorized(&curl(None, with(bearer(&token[..token.len() - 1]), &[&secret])).await, "a token cut short");
    unauthorized(&curl(None, with(bearer(&format!("{token}0")), &[&secret])).await, "a token too long");
    unauthorized(
        &curl(None, vec!["-H".into(), format!("Authorization: Basic {token}"), secret.clone()]).await,
        "another scheme",
    );
    unauthorized(&curl(None, vec!["-X".into(), "DELETE".into(), secret.clone()]).await, "a delete without a token");
    unauthorized(&curl(None, vec![format!("{server}/apis")]).await, "discovery without a token");
    let fake = backend.simulated.as_ref().unwrap();
    assert_eq!(fake.objects("secrets", Some("user-alice")).len(), 1, "the Secret is still there");

    // The token of the kubeconfig reads it.
    let (code, body) = curl(None, with(bearer(&token), &[&secret])).await;
    assert_eq!(code, 200, "{body}");
    let read: Value = serde_json::from_str(&body).unwrap();
    assert!(read["data"]["value"].is_string(), "{read}");

    // Another user of the machine can read neither the kubeconfig nor the Secret.
    let root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
    if root {
        // Even with the data directory open to others, the file's mode keeps them out.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        for file in [&path, &journal] {
            let (read, error) = as_uid(65534, &["cat", file.to_str().unwrap()]).await;
            assert!(!read && error.contains("Permission denied"), "another uid read {}: {error}", file.display());
        }
        unauthorized(&curl(Some(65534), vec![secret.clone()]).await, "another uid without the token");
        unauthorized(
            &curl(Some(65534), vec!["-X".into(), "DELETE".into(), secret.clone()]).await,
            "another uid deleting",
        );
        assert_eq!(fake.objects("secrets", Some("user-alice")).len(), 1, "the Secret is still there");
    } else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the tests as root, to run curl as another uid");
        eprintln!("not root: the requests as another uid are not tried");
    }

    // A restart makes a new token; the old one no longer works.
    drop(backend);
    let again = cluster_backend(&config, &VsphereSite::default(), dir.path()).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let (server, fresh) = read_kubeconfig(&path);
    assert_ne!(fresh, token, "a new token at every start");
    let secret = format!("{server}/api/v1/namespaces/user-alice/secrets/dev-kubeconfig");
    unauthorized(&curl(None, with(bearer(&token), &[&secret])).await, "the token of the previous start");
    let (code, body) = curl(None, with(bearer(&fresh), &[&secret])).await;
    assert_eq!(code, 200, "the journal kept the Secret: {body}");
    drop(again);
}
