//! The `HumanCheck` conformance suite: what a bot check accepts, what it refuses and how, and
//! that a verifier out of reach never lets a submission through.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::human::HumanCheck;

/// The client address the suite submits from.
pub const CLIENT: &str = "198.51.100.7";

/// Runs the contract against `check`, whose verifier accepts the token `good` and refuses each
/// of `bad` (tokens it never issued). Every refusal is `Forbidden` with a message that tells a
/// person what to do; nothing empty, missing or oversized is let through.
pub async fn check_all(check: &dyn HumanCheck, good: &str, bad: &[&str]) {
    assert!(!check.backend_name().is_empty(), "a bot check names its backend");
    check.verify(Some(good), CLIENT).await.expect("a token the verifier issued is accepted");
    check.verify(Some(&format!("  {good}\n")), CLIENT).await.expect("blanks around a good token do not matter");

    let oversized = "x".repeat(64 * 1024);
    let mut refused: Vec<(&str, Option<&str>)> = vec![
        ("no token", None),
        ("an empty token", Some("")),
        ("a blank token", Some(" \t\n")),
        ("a 64 KiB token", Some(&oversized)),
    ];
    refused.extend(bad.iter().map(|token| ("a token the verifier did not issue", Some(*token))));
    for (what, token) in refused {
        match check.verify(token, CLIENT).await {
            Err(Error::Forbidden(message)) => {
                assert!(!message.trim().is_empty(), "{what}: the refusal says what to do");
            }
            other => panic!("{what} must be refused with Forbidden, got {other:?}"),
        }
    }
    match check.verify(Some(good), "not an address").await {
        Ok(()) | Err(Error::Forbidden(_)) => {}
        other => panic!("a client that is not an address is checked or refused, never an error: {other:?}"),
    }
}

/// A verifier that is down or never answers: the submission is refused (`Backend` or `Timeout`,
/// never accepted), within `bound`.
pub async fn check_out_of_reach(check: &dyn HumanCheck, good: &str, bound: Duration) {
    let started = Instant::now();
    match check.verify(Some(good), CLIENT).await {
        Err(Error::Backend { .. } | Error::Timeout(_)) => {}
        other => panic!("a verifier out of reach must refuse with Backend or Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < bound, "refused in {:?}, more than {bound:?}", started.elapsed());
}
