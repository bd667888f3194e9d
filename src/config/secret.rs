//! Secrets that redact themselves: `Debug` and `Display` print a mask, so no
//! log line or error message leaks a password.

use std::fmt;

/// A password or a URL holding one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; call only where it is handed to a library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// `url` with the password of its user info replaced by `****`
/// (`mysql://u:p@h:3306/db` -> `mysql://u:****@h:3306/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let mask = if user_info.contains(':') { ":****" } else { "" };
            format!("{scheme}://{user}{mask}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// Whether `url` carries a password in its user info.
pub fn url_has_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| &rest[..rest.find('/').unwrap_or(rest.len())])
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(user_info, _)| user_info.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "**** Secret(****)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://edgemon:s3cr@t@db:3306/edgemon"),
            "mysql://edgemon:****@db:3306/edgemon"
        );
        assert_eq!(redact_url("mysql://u@db/x"), "mysql://u@db/x");
        assert_eq!(redact_url("garbage"), "****");
        assert!(url_has_password("mysql://u:p@h/db"));
        assert!(!url_has_password("mysql://u@h/db"));
        assert!(!url_has_password("mysql://h/db:x@y"));
    }
}
