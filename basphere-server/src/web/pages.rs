//! The templates, compiled into the binary, and the filters they use.

use chrono::{DateTime, Utc};
use minijinja::{Environment, Value};

/// The page templates (HTML, auto-escaped).
pub struct Pages {
    env: Environment<'static>,
}

macro_rules! templates {
    ($env:expr, $($name:literal),+ $(,)?) => {
        $( $env.add_template($name, include_str!(concat!("../../web/templates/", $name))).expect($name); )+
    };
}

impl Pages {
    pub fn new() -> Self {
        let mut env = Environment::new();
        templates!(
            env,
            "base.html",
            "macros.html",
            "message.html",
            "register.html",
            "success.html",
            "ssh_guide.html",
            "key_change.html",
            "key_change_success.html",
            "sign_in.html",
            "sign_in_link.html",
            "dashboard.html",
            "quota.html",
            "live.html",
            "vm_new.html",
            "vm_delete.html",
            "token_created.html",
            "admin_requests.html",
            "admin_users.html",
            "admin_user.html",
            "vm_table.html",
            "admin_vms.html",
            "admin_networks.html",
            "admin_purge.html",
            "admin_outbox.html",
            "admin_reconcile.html",
            "admin_audit.html",
        );
        env.add_filter("short", short);
        env.add_filter("age", age);
        env.add_filter("truncate", truncate);
        Pages { env }
    }

    /// Renders `name` with `context`.
    pub fn render(&self, name: &str, context: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

fn parse(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).ok().map(|at| at.with_timezone(&Utc))
}

/// `2026-11-30 19:45 UTC`.
fn short(value: String) -> String {
    match parse(&value) {
        Some(at) => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        None => value,
    }
}

/// How long ago: `40 s`, `12 min`, `3 h`, `5 d`.
fn age(value: String) -> String {
    let Some(at) = parse(&value) else {
        return value;
    };
    let seconds = (Utc::now() - at).num_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86400),
    }
}

/// The first `length` characters, with `…` when cut.
fn truncate(value: String, length: Option<usize>) -> String {
    let length = length.unwrap_or(60);
    if value.chars().count() <= length {
        value
    } else {
        let mut cut: String = value.chars().take(length).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_values_are_escaped() {
        let pages = Pages::new();
        let html = pages
            .render(
                "message.html",
                minijinja::context! { title => "<b>t</b>", message => "<script>alert(1)</script>\"'", kind => "error",
                back => "javascript:x\" onclick=\"y", notices => Vec::<Value>::new() },
            )
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;&quot;&#x27;"), "{html}");
        assert!(!html.contains("\" onclick=\"y"), "an attribute cannot be closed: {html}");
    }

    #[test]
    fn filters_format_times_and_cut_text() {
        assert_eq!(short("2026-11-30T19:45:12.123Z".into()), "2026-11-30 19:45 UTC");
        assert_eq!(short("not a time".into()), "not a time");
        assert!(age((Utc::now() - chrono::Duration::minutes(12)).to_rfc3339()).starts_with("12 min"));
        assert_eq!(truncate("abcdef".into(), Some(3)), "abc…");
        assert_eq!(truncate("abc".into(), Some(3)), "abc");
    }
}
