//! Accounts and what belongs to them: users, their requests, API tokens and browser sessions.

use super::*;

string_enum!(
    /// Whether an account may act.
    UserStatus { Active => "active", Suspended => "suspended" }
);

string_enum!(
    /// Whether an account is an ordinary developer or an administrator.
    Role { User => "user", Admin => "admin" }
);

/// An approved account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: Username,
    pub email: Email,
    pub team: String,
    pub ssh_key: SshPublicKey,
    pub role: Role,
    pub status: UserStatus,
    /// The Unix uid of the bastion login, once it exists (used to map peer credentials).
    pub uid: Option<u32>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

string_enum!(
    /// Lifecycle of a registration or key-change request.
    RequestStatus { Pending => "pending", Approved => "approved", Rejected => "rejected" }
);

/// A registration submitted through the public page or JSON endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    pub id: Uuid,
    pub username: Username,
    pub email: Email,
    pub team: String,
    pub ssh_key: SshPublicKey,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// The administrator who decided (an account, or `root` / `uid-N`).
    pub processed_by: Option<String>,
    pub processed_at: Option<Timestamp>,
    pub reject_reason: Option<String>,
}

/// A request to replace an account's SSH key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChangeRequest {
    pub id: Uuid,
    pub username: Username,
    pub email: Email,
    pub new_ssh_key: SshPublicKey,
    pub reason: String,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// The administrator who decided (an account, or `root` / `uid-N`).
    pub processed_by: Option<String>,
    pub processed_at: Option<Timestamp>,
    pub reject_reason: Option<String>,
}

string_enum!(
    /// What an API token may do: act as its owner, or as an administrator.
    TokenScope { User => "user", Admin => "admin" }
);

/// A personal API token. Only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub owner: Username,
    pub name: String,
    pub scope: TokenScope,
    /// Hex SHA-256 of the secret part; the secret itself is shown once and never stored.
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("secret_hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

impl ApiToken {
    /// Hex SHA-256 of a token secret, the only form in which secrets are stored or compared.
    pub fn hash_secret(secret: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Usable now: neither revoked nor expired.
    pub fn is_valid_at(&self, at: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| at < expiry)
    }
}

string_enum!(
    /// A browser's credential: a single-use sign-in link, or the session a link or a token
    /// turned into.
    WebSessionKind { Link => "link", Session => "session" }
);

/// A browser's sign-in. A link (`basphere web` on the bastion) lives five minutes and is used
/// once; it becomes a session, which ends after an idle time, at an absolute expiry, at sign-out,
/// or when its account is suspended. Only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    pub id: Uuid,
    pub kind: WebSessionKind,
    /// The account signed in; `None` for the system administrator (root or the server's user on
    /// the socket), who owns no account.
    pub owner: Option<Username>,
    /// Who is signed in, as audited: the account, or `root` / `uid-N`.
    pub actor_name: String,
    /// The rights the sign-in carried. An account's session never has more than its account has
    /// at the time of each request.
    pub role: Role,
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
    /// The last request seen (recorded at most once a minute); the idle time counts from here.
    pub last_seen_at: Timestamp,
    /// When a link was used, or a session signed out or revoked.
    pub ended_at: Option<Timestamp>,
    /// The API token a session was signed in with: the session lasts no longer than the token
    /// (revoked, expired or gone, it ends the session at the next request).
    pub token_id: Option<Uuid>,
}

impl fmt::Debug for WebSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSession")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("owner", &self.owner)
            .field("actor_name", &self.actor_name)
            .field("role", &self.role)
            .field("secret_hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("ended_at", &self.ended_at)
            .finish()
    }
}

impl WebSession {
    /// Usable at `at`: not ended, not past its absolute expiry, and (for a session) not idle for
    /// `idle` or longer.
    pub fn is_valid_at(&self, at: Timestamp, idle: chrono::Duration) -> bool {
        self.ended_at.is_none()
            && at < self.expires_at
            && (self.kind == WebSessionKind::Link || at < self.last_seen_at + idle)
    }
}
