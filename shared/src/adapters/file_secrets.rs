//! The local runtime's [`SecretSource`]: one JSON file (named by `CARTEIRO_SECRETS_FILE`) whose
//! top-level members are the documents that live in Secrets Manager on AWS, one secret each:
//! `whatsapp`, `smtp`, `api_keys`, `callbacks` ([`SecretName::file_key`]).
//!
//! The file is read at [`FileSecretSource::open`] (or on first use, with
//! [`FileSecretSource::new`]) and cached; `refresh = true` re-reads it, so a credential
//! rotated in the file is picked up after a provider rejects the old one, without a restart.
//! Neither `Debug` nor any error shows a value from the file.

use crate::json::describe_error;
use crate::ports::secrets::{SecretError, SecretName, SecretSource};
use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Secrets from a local JSON file (or, for tests, from a JSON value).
pub struct FileSecretSource {
    origin: Origin,
    /// The parsed file, once read successfully.
    cache: Mutex<Option<Arc<Map<String, Value>>>>,
}

enum Origin {
    File(PathBuf),
    Inline(Value),
}

impl fmt::Debug for FileSecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FileSecretSource");
        match &self.origin {
            Origin::File(path) => d.field("path", path),
            Origin::Inline(_) => d.field("path", &"<inline>"),
        };
        d.field("values", &"<redacted>").finish()
    }
}

impl FileSecretSource {
    /// Secrets from the file at `path`, read on first use.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            origin: Origin::File(path.into()),
            cache: Mutex::new(None),
        }
    }

    /// Secrets from the file at `path`, read now, so that an unreadable or malformed file
    /// stops the runtime at startup rather than failing its first request (as
    /// [`SecretError::Unavailable`], naming the file, never quoting it). `refresh` re-reads it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SecretError> {
        let path = path.into();
        let members = read_file(&path).map_err(|e| match e {
            FileError::Unreadable(m) => SecretError::Unavailable(m),
            FileError::Malformed(m) => SecretError::Unavailable(format!("{}: {m}", path.display())),
        })?;
        Ok(Self {
            origin: Origin::File(path),
            cache: Mutex::new(Some(Arc::new(members))),
        })
    }

    /// Secrets from a JSON value shaped like the file, for tests.
    pub fn from_json(document: Value) -> Self {
        Self {
            origin: Origin::Inline(document),
            cache: Mutex::new(None),
        }
    }

    /// The file behind this source; `None` for [`FileSecretSource::from_json`].
    pub fn path(&self) -> Option<&Path> {
        match &self.origin {
            Origin::File(path) => Some(path),
            Origin::Inline(_) => None,
        }
    }

    async fn load(&self, name: SecretName) -> Result<Arc<Map<String, Value>>, SecretError> {
        let read = match &self.origin {
            Origin::Inline(Value::Object(members)) => Ok(members.clone()),
            Origin::Inline(_) => Err(FileError::Malformed(NOT_AN_OBJECT.to_owned())),
            Origin::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .map_err(|e| SecretError::Unavailable(format!("reading secrets: {e}")))?
            }
        };
        match read {
            Ok(members) => Ok(Arc::new(members)),
            Err(FileError::Unreadable(m)) => Err(SecretError::Unavailable(m)),
            Err(FileError::Malformed(reason)) => Err(SecretError::Malformed { name, reason }),
        }
    }
}

const NOT_AN_OBJECT: &str = "the secrets file must hold one JSON object";

enum FileError {
    Unreadable(String),
    Malformed(String),
}

/// Reads and parses the secrets file. Errors name the file, never quote its content.
fn read_file(path: &Path) -> Result<Map<String, Value>, FileError> {
    let bytes = std::fs::read(path).map_err(|e| {
        FileError::Unreadable(format!(
            "cannot read the secrets file {}: {e}",
            path.display()
        ))
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(FileError::Malformed(NOT_AN_OBJECT.to_owned())),
        Err(e) => Err(FileError::Malformed(format!(
            "the secrets file is not valid JSON ({})",
            describe_error(&e)
        ))),
    }
}

#[async_trait]
impl SecretSource for FileSecretSource {
    async fn get(&self, name: SecretName, refresh: bool) -> Result<SecretString, SecretError> {
        let cached = if refresh {
            None
        } else {
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        let members = match cached {
            Some(members) => members,
            None => {
                let members = self.load(name).await?;
                *self.cache.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&members));
                members
            }
        };
        match members.get(name.file_key()) {
            None | Some(Value::Null) => Err(SecretError::Missing(name)),
            Some(document) => serde_json::to_string(document)
                .map(SecretString::from)
                .map_err(|e| SecretError::Malformed {
                    name,
                    reason: describe_error(&e),
                }),
        }
    }
}
