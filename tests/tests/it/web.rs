//! The web pages in a real browser: Debian's Chromium driven by Playwright (`tests/web`, npm),
//! against the real server with real Unix logins in a sandbox root. The journey, the attacks,
//! the accessibility checks (axe-core) and the figures are in `tests/web/journey.mjs`; this test
//! prepares the world, runs it, and checks what the browser cannot see (the login's key file).
//!
//! Screenshots of every page at desktop and phone widths are kept in `target/web-artifacts`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tests::server::{binaries, can_switch_uid, expect, Server};

fn sandbox(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join("etc").join(name), text).unwrap();
    write("passwd", "root:x:0:0:root:/root:/bin/bash\n");
    write("group", "root:x:0:\n");
    write("shadow", "root:*:19000:0:99999:7:::\n");
    write("gshadow", "root:*::\n");
    write("login.defs", "UID_MIN 64200\nUID_MAX 64299\nGID_MIN 64200\nGID_MAX 64299\n");
}

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Whether the browser, node and the npm packages are here. In CI they must be (`.ci/run`
/// installs them).
fn browser_ready() -> bool {
    let ready = Path::new("/usr/bin/chromium").exists()
        && Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success())
        && web_dir().join("node_modules/playwright-core").exists()
        && web_dir().join("node_modules/axe-core").exists();
    if !ready {
        basphere_core::testing::skip_unless_ci(
            "the browser tests need chromium, node and `npm ci` in tests/web (.ci/run installs them)",
        );
    }
    ready
}

#[test]
fn the_web_journey_in_a_real_browser() {
    if !can_switch_uid() {
        basphere_core::testing::skip_unless_ci("the browser journey runs useradd and setpriv, which need root");
        return;
    }
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bastion-root");
    sandbox(&root);
    // Realistic simulated vSphere task times, so that the page is seen following a VM that is
    // still being created.
    let config = format!(
        "recaptcha: {{enabled: false}}\nbastion: {{address: bastion.example.com, port: 2222, logins: unix, root: {}}}\n",
        root.display()
    );
    let server = Server::start(dir.path(), Some(&config));
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let key = basphere_core::testing::ssh_key(1);
    let new_key = basphere_core::testing::ssh_key(2);

    let output = Command::new("node")
        .arg(web_dir().join("journey.mjs"))
        .env("BASE_URL", format!("http://{}", server.tcp))
        .env("BASPHERE_CLI", &binaries().cli)
        .env("BASPHERE_SOCKET", &server.socket)
        .env("CLI_HOME", dir.path())
        .env("ARTIFACTS", &artifacts)
        .env("KEY", key.as_str())
        .env("NEW_KEY", new_key.as_str())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the journey failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no report from the journey:\n{stdout}"));
    eprintln!("web journey figures: {report}");
    let pages = report["pages"].as_array().expect("pages");
    assert!(pages.len() >= 20, "every page was visited: {report}");
    for page in pages {
        assert_eq!(page["serious_violations"], 0, "axe-core: {page}");
        assert!(page["bytes"].as_u64().unwrap() < 100 * 1024, "page weight: {page}");
    }

    // What the browser cannot see: the key change reached the login's authorized_keys, and the
    // VM made and deleted in the browser is gone with its address.
    let keys = std::fs::read_to_string(root.join("home/alice/.ssh/authorized_keys")).unwrap();
    assert_eq!(keys.trim(), new_key.as_str(), "the approved key change is the login's key");
    server.wait_idle();
    let vms: Value = serde_json::from_str(&expect(&server.cli(&["-o", "json", "admin", "vm", "list"]), 0)).unwrap();
    assert!(
        vms.as_array().unwrap().iter().all(|vm| vm["name"] != "evil"),
        "the cross-site form created nothing: {vms}"
    );
    let screenshots = std::fs::read_dir(&artifacts).unwrap().count();
    assert!(screenshots >= 40, "a desktop and a phone screenshot of every page: {screenshots}");
}
