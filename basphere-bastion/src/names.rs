//! Defence in depth: every name and text that reaches a command line or a system file is checked
//! here, even when core validated it already.

use std::path::Path;

use basphere_core::error::{Error, Result};

/// The longest login or group name accepted (what shadow's tools accept on Linux).
const MAX_NAME: usize = 32;

/// A login or group name: 1-32 characters without control characters, `:`, `,`, `/` or
/// whitespace, not `.`/`..`, and not starting with `-` (it would read as an option).
pub(crate) fn check_name(field: &'static str, value: &str) -> Result<()> {
    let refuse = |why: &str| Err(Error::invalid(field, format!("{value:?} is not usable as a Unix name: {why}")));
    if value.is_empty() || value.len() > MAX_NAME {
        return refuse("it must be 1 to 32 characters");
    }
    if let Some(why) = forbidden_text(value) {
        return refuse(why);
    }
    if value.contains('/') || value.chars().any(char::is_whitespace) {
        return refuse("it contains a '/' or white space");
    }
    if value.starts_with('-') || value == "." || value == ".." {
        return refuse("it starts with '-' or is '.' or '..'");
    }
    Ok(())
}

/// Free text for the comment (GECOS) field: no control characters, `:` or `,`.
pub(crate) fn check_text(field: &'static str, value: &str) -> Result<()> {
    match forbidden_text(value) {
        Some(why) => Err(Error::invalid(field, format!("{value:?} cannot go into the passwd file: {why}"))),
        None => Ok(()),
    }
}

/// An absolute path that goes into the passwd file (shell, home): no control characters or `:`.
pub(crate) fn check_path(field: &'static str, path: &Path) -> Result<()> {
    let Some(text) = path.to_str() else {
        return Err(Error::invalid(field, format!("{} is not valid UTF-8", path.display())));
    };
    if !path.is_absolute() {
        return Err(Error::invalid(field, format!("{text:?} is not an absolute path")));
    }
    if text.chars().any(char::is_control) || text.contains(':') {
        return Err(Error::invalid(field, format!("{text:?} contains a control character or ':'")));
    }
    Ok(())
}

fn forbidden_text(value: &str) -> Option<&'static str> {
    if value.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if value.contains(':') {
        Some("it contains a ':'")
    } else if value.contains(',') {
        Some("it contains a ','")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_break_a_system_file_or_a_command_line_are_refused() {
        for bad in ["", "a:b", "a,b", "a\nb", "a\rb", "a\0b", "a\tb", "a b", "a/b", "-r", ".", "..", &"x".repeat(33)] {
            let error = check_name("username", bad).expect_err(bad);
            assert_eq!(error.kind(), "invalid-input", "{bad:?}");
        }
        for good in ["alice", "basphere-users", "dev_team", "a1"] {
            check_name("group", good).expect(good);
        }
    }

    #[test]
    fn comments_refuse_separators_and_control_characters() {
        check_text("comment", "Basphere account alice").unwrap();
        for bad in ["x:y", "x,y", "x\ny", "x\u{7f}y", "x\u{85}y"] {
            assert!(check_text("comment", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_must_be_absolute_and_fit_in_passwd() {
        check_path("bastion.shell", Path::new("/bin/bash")).unwrap();
        for bad in ["bin/bash", "/bin:/x", "/home\n/x"] {
            assert!(check_path("bastion.home", Path::new(bad)).is_err(), "{bad:?}");
        }
    }
}
