//! Validated app and service names. A name is a single path component we
//! create directories from, so it must never be able to escape the lock root.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted name: well under NAME_MAX (255) and short enough for logs.
/// (A refused name is quoted cut to `text::SHOWN_MAX` characters.)
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {0:?} is longer than {MAX_NAME_LEN} bytes")]
    TooLong(String),
    #[error("name {0:?} starts with '.' (hidden names, '.' and '..' are not allowed)")]
    LeadingDot(String),
    #[error("name {0:?} contains {1:?}; allowed are letters, digits, '-', '_' and '.'")]
    BadChar(String, char),
    #[error("{0:?} is not of the form <app>/<service>")]
    NotAServiceId(String),
}

fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(crate::text::clip(
            s,
            crate::text::SHOWN_MAX,
        )));
    }
    if s.starts_with('.') {
        return Err(NameError::LeadingDot(crate::text::clip(
            s,
            crate::text::SHOWN_MAX,
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadChar(
            crate::text::clip(s, crate::text::SHOWN_MAX),
            c,
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An application name: one directory under the lock root.
    AppName
);
name_type!(
    /// A service name: one directory under its app's directory.
    ServiceName
);

/// `<app>/<service>`: the unit a lock belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceId {
    pub app: AppName,
    pub service: ServiceName,
}

impl ServiceId {
    pub fn new(app: AppName, service: ServiceName) -> Self {
        Self { app, service }
    }

    /// Parses `app/service`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (app, service) = s.split_once('/').ok_or_else(|| {
            NameError::NotAServiceId(crate::text::clip(s, crate::text::SHOWN_MAX))
        })?;
        Ok(Self::new(AppName::new(app)?, ServiceName::new(service)?))
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["app1", "main", "my-app_2", "a.b", "X"] {
            AppName::new(ok).unwrap();
        }
    }

    #[test]
    fn rejects_path_tricks() {
        assert_eq!(AppName::new(""), Err(NameError::Empty));
        assert!(matches!(AppName::new(".."), Err(NameError::LeadingDot(_))));
        assert!(matches!(AppName::new("."), Err(NameError::LeadingDot(_))));
        assert!(matches!(
            AppName::new(".hidden"),
            Err(NameError::LeadingDot(_))
        ));
        assert!(matches!(
            AppName::new("a/b"),
            Err(NameError::BadChar(_, '/'))
        ));
        assert!(matches!(
            AppName::new("a\0b"),
            Err(NameError::BadChar(_, '\0'))
        ));
        assert!(matches!(
            AppName::new("a b"),
            Err(NameError::BadChar(_, ' '))
        ));
        assert!(matches!(
            AppName::new("x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong(_))
        ));
        AppName::new("x".repeat(MAX_NAME_LEN)).unwrap();
    }

    #[test]
    fn parses_service_ids() {
        let id = ServiceId::parse("app1/main").unwrap();
        assert_eq!(id.to_string(), "app1/main");
        assert!(ServiceId::parse("app1").is_err());
        assert!(ServiceId::parse("app1/../x").is_err());
        assert!(ServiceId::parse("../x").is_err());
    }

    #[test]
    fn deserialize_validates() {
        let r: Result<AppName, _> = serde_json::from_str("\"../etc\"");
        assert!(r.is_err());
    }
}
