//! The `Bastion` conformance suite, for implementations that make real logins (not `NoBastion`).

use crate::bastion::Bastion;
use crate::error::Error;
use crate::validate::Username;

use super::{ssh_key, username};

/// Reads what the bastion holds for a login: `None` when no login of that name exists, otherwise
/// the content of its authorized keys (empty when it has none).
pub type KeysProbe<'a> = &'a dyn Fn(&Username) -> Option<String>;

/// Runs the whole contract against `bastion`. `keys` looks at the bastion from outside;
/// `foreign` names a login that exists and that Basphere did not make. The suite makes and
/// removes the logins `bastion-alpha` and `bastion-beta`.
pub async fn check_all(bastion: &dyn Bastion, keys: KeysProbe<'_>, foreign: &Username) {
    let alpha = username("bastion-alpha");
    let beta = username("bastion-beta");
    let (key1, key2) = (ssh_key(9001), ssh_key(9002));
    let lines = |content: Option<String>| -> Option<Vec<String>> {
        content.map(|text| text.lines().map(str::to_owned).filter(|line| !line.trim().is_empty()).collect())
    };

    assert_eq!(keys(&alpha), None, "the suite starts without bastion-alpha");
    let uid = bastion.ensure_login(&alpha, &key1).await.expect("ensure_login creates the login");
    assert!(uid.is_some(), "a login-making bastion reports the uid");
    assert_eq!(lines(keys(&alpha)), Some(vec![key1.as_str().to_owned()]), "the key is the only authorized key");
    assert_eq!(bastion.ensure_login(&alpha, &key1).await.expect("ensure_login again"), uid, "same uid again");

    bastion.set_key(&alpha, &key2).await.expect("set_key");
    assert_eq!(lines(keys(&alpha)), Some(vec![key2.as_str().to_owned()]), "set_key replaces the key");
    assert_eq!(
        bastion.ensure_login(&alpha, &key1).await.expect("ensure_login adopts"),
        uid,
        "an existing login is adopted, not made again"
    );
    assert_eq!(lines(keys(&alpha)), Some(vec![key1.as_str().to_owned()]), "adoption puts the given key back");

    let missing = username("bastion-missing");
    match bastion.set_key(&missing, &key1).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("set_key of a missing login must be NotFound, got {other:?}"),
    }
    assert_eq!(keys(&missing), None, "set_key made no login");

    let before = keys(foreign);
    assert!(before.is_some(), "the foreign login {foreign} must exist");
    match bastion.ensure_login(foreign, &key1).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a login Basphere did not make must be refused with AlreadyExists, got {other:?}"),
    }
    assert_eq!(keys(foreign), before, "the foreign login is left alone");
    assert!(bastion.remove_login(foreign).await.is_err(), "a login Basphere did not make is never removed");
    assert_eq!(keys(foreign), before, "the foreign login is still there");

    let other = bastion.ensure_login(&beta, &key2).await.expect("a second login");
    assert!(other.is_some() && other != uid, "two logins get two uids: {uid:?}, {other:?}");

    bastion.remove_login(&alpha).await.expect("remove_login");
    assert_eq!(keys(&alpha), None, "the login is gone");
    bastion.remove_login(&alpha).await.expect("removing a login that is gone succeeds");
    match bastion.set_key(&alpha, &key1).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("set_key after removal must be NotFound, got {other:?}"),
    }
    assert_eq!(lines(keys(&beta)), Some(vec![key2.as_str().to_owned()]), "removing one login leaves the other");
    bastion.remove_login(&beta).await.expect("remove_login");
    assert_eq!(keys(&beta), None);
}
