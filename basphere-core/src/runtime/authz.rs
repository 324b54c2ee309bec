//! Who may do what to whose resource: the one table every use case asks.
//!
//! The caller's identity (`Actor`) comes from the server's own checks (kernel peer credentials
//! or a token it issued), never from a request body. Every `Platform` use case names the
//! `Action` it performs and the owner of what it touches, and [`decide`] answers.

use crate::error::{Error, Result};
use crate::model::Role;
use crate::validate::Username;

/// Who is asking, as established by the caller's authentication (never by the request body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The account name, `root`/`uid-N` for the system administrator on the socket, or
    /// `system` for the platform's own work.
    pub name: String,
    pub role: Role,
    /// Where the request came from, for the audit log.
    pub source: String,
    /// The caller's own account; `None` for the system administrator (root or the server's own
    /// user on the socket) and the platform itself, which own no resources.
    pub account: Option<Username>,
}

impl Actor {
    /// A user acting with the rights of an ordinary account.
    pub fn user(username: &Username, source: &str) -> Self {
        Actor {
            name: username.to_string(),
            role: Role::User,
            source: source.to_owned(),
            account: Some(username.clone()),
        }
    }

    /// The system administrator, who has no account of its own.
    pub fn admin(name: &str, source: &str) -> Self {
        Actor { name: name.to_owned(), role: Role::Admin, source: source.to_owned(), account: None }
    }

    /// An account acting with `role` (an admin account's admin-scoped token, say).
    pub fn of_account(username: &Username, role: Role, source: &str) -> Self {
        Actor { name: username.to_string(), role, source: source.to_owned(), account: Some(username.clone()) }
    }

    /// The platform's own background work (reconciliation, operations).
    pub fn system() -> Self {
        Actor { name: "system".into(), role: Role::Admin, source: "system".into(), account: None }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this actor may act on resources of `owner`.
    pub fn may_act_for(&self, owner: &Username) -> bool {
        self.is_admin() || self.account.as_ref() == Some(owner)
    }

    /// The caller's own account, for "my resources" requests.
    pub fn own_account(&self) -> Result<&Username> {
        self.account.as_ref().ok_or_else(|| {
            Error::Forbidden(
                "you are connected as the system administrator, which owns no resources; use the admin routes \
                 (basphere admin ...) to act for a user"
                    .into(),
            )
        })
    }
}

/// What a use case does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read an account's VMs, operations, tokens or quota.
    View,
    /// Create resources (VMs, tokens) for an account.
    Create,
    /// Change or delete an existing resource of an account (delete, power, revoke).
    Change,
    /// Create a token that carries administrator rights.
    CreateAdminToken,
    /// Anything under the admin API: accounts, quotas, audit, reconciliation, every account's
    /// resources.
    Administer,
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Allow,
    /// Refused, and said so.
    Forbid,
    /// Refused as if the resource did not exist: another user's resources are not disclosed.
    Hide,
}

/// Whose resource a request touches, from the actor's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whose {
    /// No owner (accounts, audit, the whole platform).
    Nobody,
    Own,
    Other,
}

/// The table.
///
/// | action             | own resource | another's resource | administrator |
/// |--------------------|--------------|--------------------|---------------|
/// | View               | allow        | hide (404)         | allow         |
/// | Create             | allow        | forbid (403)       | allow         |
/// | Change             | allow        | hide (404)         | allow         |
/// | CreateAdminToken   | forbid       | forbid             | allow         |
/// | Administer         | forbid       | forbid             | allow         |
fn table(action: Action, whose: Whose, admin: bool) -> Decision {
    use Action::*;
    use Decision::*;
    match (action, whose, admin) {
        (_, _, true) => Allow,
        (View | Create | Change, Whose::Own, false) => Allow,
        (View | Change, Whose::Other | Whose::Nobody, false) => Hide,
        (Create, Whose::Other | Whose::Nobody, false) => Forbid,
        (CreateAdminToken | Administer, _, false) => Forbid,
    }
}

/// Decides whether `actor` may perform `action` on what `owner` owns (`None`: nobody's).
/// `kind` and `name` name the resource for the answer (`vm`, `web`).
pub fn decide(
    actor: &Actor,
    action: Action,
    owner: Option<&Username>,
    kind: &'static str,
    name: &dyn std::fmt::Display,
) -> Result<()> {
    let whose = match owner {
        None => Whose::Nobody,
        Some(owner) if actor.account.as_ref() == Some(owner) => Whose::Own,
        Some(_) => Whose::Other,
    };
    match table(action, whose, actor.is_admin()) {
        Decision::Allow => Ok(()),
        Decision::Hide => Err(Error::not_found(kind, name)),
        Decision::Forbid => Err(Error::Forbidden(match action {
            Action::Administer => "this needs an administrator".to_owned(),
            Action::CreateAdminToken => "only an administrator may create admin tokens".to_owned(),
            _ => match owner {
                Some(owner) => format!("{} may not create {kind}s for {owner}", actor.name),
                None => format!("{} may not do this", actor.name),
            },
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Username {
        Username::parse("alice").unwrap()
    }

    fn bob() -> Username {
        Username::parse("bob").unwrap()
    }

    #[test]
    fn the_table_reads_as_documented() {
        let user = Actor::user(&alice(), "test");
        let admin = Actor::admin("root", "test");
        let admin_account = Actor::of_account(&bob(), Role::Admin, "test");
        assert!(decide(&user, Action::View, Some(&alice()), "vm", &"web").is_ok());
        assert!(decide(&user, Action::Create, Some(&alice()), "vm", &"").is_ok());
        assert!(decide(&user, Action::Change, Some(&alice()), "vm", &"web").is_ok());
        assert_eq!(decide(&user, Action::View, Some(&bob()), "vm", &"web").unwrap_err().kind(), "not-found");
        assert_eq!(decide(&user, Action::Change, Some(&bob()), "vm", &"web").unwrap_err().kind(), "not-found");
        assert_eq!(decide(&user, Action::Create, Some(&bob()), "vm", &"").unwrap_err().kind(), "forbidden");
        assert_eq!(decide(&user, Action::Administer, None, "users", &"").unwrap_err().kind(), "forbidden");
        assert_eq!(
            decide(&user, Action::CreateAdminToken, Some(&alice()), "token", &"").unwrap_err().kind(),
            "forbidden"
        );
        for admin in [&admin, &admin_account] {
            for action in [Action::View, Action::Create, Action::Change, Action::CreateAdminToken, Action::Administer] {
                assert!(decide(admin, action, Some(&alice()), "vm", &"web").is_ok(), "{action:?}");
                assert!(decide(admin, action, None, "users", &"").is_ok(), "{action:?}");
            }
        }
        let hidden = decide(&user, Action::View, Some(&bob()), "vm", &"web").unwrap_err().to_string();
        assert!(hidden.contains("vm") && hidden.contains("web"), "{hidden}");
    }
}
