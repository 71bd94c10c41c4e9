//! HTTP Basic credentials: from `--credentials FILE`, or from
//! `DIGIDESK_USERNAME` and `DIGIDESK_PASSWORD`; never from argv, never
//! printed.

use std::path::Path;

use base64::Engine as _;
use reqwest::header::HeaderValue;

use super::TransportError;

/// HTTP Basic credentials. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header, marked sensitive so that nothing prints it.
    pub fn header(&self) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        // Base64 is always a valid header value.
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .expect("base64 is a valid header value");
        value.set_sensitive(true);
        value
    }

    /// From `--credentials FILE` when given, else `DIGIDESK_USERNAME` and
    /// `DIGIDESK_PASSWORD`. Never from argv.
    pub fn load(file: Option<&Path>) -> Result<Credentials, TransportError> {
        if let Some(path) = file {
            return Self::from_file(path);
        }
        let user = std::env::var("DIGIDESK_USERNAME")
            .ok()
            .filter(|s| !s.is_empty());
        let pass = std::env::var("DIGIDESK_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty());
        match (user, pass) {
            (Some(u), Some(p)) => Ok(Credentials::new(u, p)),
            (u, p) => {
                let mut missing = Vec::new();
                if u.is_none() {
                    missing.push("DIGIDESK_USERNAME");
                }
                if p.is_none() {
                    missing.push("DIGIDESK_PASSWORD");
                }
                Err(TransportError::CredentialsMissing {
                    missing: missing.join(" and "),
                })
            }
        }
    }

    fn from_file(path: &Path) -> Result<Credentials, TransportError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TransportError::CredentialsRead {
                path: path.to_path_buf(),
                source,
            })?;
        warn_if_readable_by_others(path);
        let bad_line = |n: usize, what: String| TransportError::CredentialsLine {
            path: path.to_path_buf(),
            line: n + 1,
            what,
        };
        let (mut user, mut pass) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad_line(
                    n,
                    "expected `username=...` or `password=...`".into(),
                ));
            };
            let value = unquote(value.trim()).to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "username" | "user" | "digidesk_username" => user = Some(value),
                "password" | "digidesk_password" => pass = Some(value),
                other => {
                    return Err(bad_line(
                        n,
                        format!("unknown key `{other}`; expected `username` or `password`"),
                    ))
                }
            }
        }
        match (user, pass) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Credentials::new(u, p)),
            _ => Err(TransportError::CredentialsIncomplete {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// A value without the matching quotes around it (`"demo"`, `'demo'`).
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|rest| rest.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// Warns when the group or others may read the credentials file.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            tracing::warn!(
                "the credentials file {} can be read by other users (mode {:o}); make it private with: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let c = Credentials::new("u", "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.header().is_sensitive());
    }

    #[test]
    fn matching_quotes_around_a_value_are_not_part_of_it() {
        assert_eq!(unquote("\"demo\""), "demo");
        assert_eq!(unquote("'demo'"), "demo");
        assert_eq!(unquote("\"demo'"), "\"demo'");
        assert_eq!(unquote("\""), "\"");
        assert_eq!(unquote("de\"mo"), "de\"mo");
    }
}
