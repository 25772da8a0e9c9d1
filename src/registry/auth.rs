//! Registry credentials (environment, `~/.docker/config.json`) and `WWW-Authenticate`
//! challenges: Basic, or Bearer with a token from the registry's token service.
//! Must not: print or put in an error any password or token.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Method;
use url::Url;

use super::RegistryError;
use crate::http::HttpClient;

/// Registry credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// A ready bearer token.
    Token(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// Credentials for `registry`: `COMFYPAK_REGISTRY_TOKEN`, or `COMFYPAK_REGISTRY_USERNAME` +
/// `COMFYPAK_REGISTRY_PASSWORD`, else the `auths` entry of `$DOCKER_CONFIG/config.json`
/// (default `~/.docker/config.json`). `None` when there are none.
pub fn credentials_for(registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(token) = env("COMFYPAK_REGISTRY_TOKEN") {
        return Ok(Some(Credentials::Token(token)));
    }
    if let (Some(username), Some(password)) = (
        env("COMFYPAK_REGISTRY_USERNAME"),
        env("COMFYPAK_REGISTRY_PASSWORD"),
    ) {
        return Ok(Some(Credentials::Basic { username, password }));
    }
    let dir = match (env("DOCKER_CONFIG"), env("HOME")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(home)) => Path::new(&home).join(".docker"),
        (None, None) => return Ok(None),
    };
    let path = dir.join("config.json");
    if !path.exists() {
        return Ok(None);
    }
    docker_config_credentials(&path, registry)
}

/// The credentials for `registry` in a Docker `config.json`.
pub fn docker_config_credentials(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let bad = |message: String| RegistryError::DockerConfig {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let host_of = |key: &str| -> String {
        let key = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        key.split('/').next().unwrap_or(key).to_string()
    };
    let Some(entry) = auths
        .iter()
        .find(|(key, _)| host_of(key) == registry)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    if let Some(token) = entry.get("registrytoken").and_then(|v| v.as_str()) {
        return Ok(Some(Credentials::Token(token.to_string())));
    }
    if let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad(format!("auths.{registry}.auth is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths.{registry}.auth is not UTF-8")))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not USER:PASSWORD")))?;
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (
        entry.get("username").and_then(|v| v.as_str()),
        entry.get("password").and_then(|v| v.as_str()),
    ) {
        (Some(u), Some(p)) => Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Ok(None),
    }
}

/// What a registry's 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses `WWW-Authenticate: Bearer realm="...",service="..."` or `Basic realm=...`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut values = BTreeMap::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v.to_string(), n),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            }
        };
        values.insert(key, value);
        rest = next;
    }
    Some(Challenge::Bearer {
        realm: values.remove("realm")?,
        service: values.remove("service"),
    })
}

pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// The `Authorization` value answering `challenge` for `scopes` (token-service scopes such
/// as `repository:team/comfyui:pull,push`), asking the token service over `http` when the
/// challenge is Bearer and no ready token was given. Marked sensitive.
pub async fn authorization(
    http: &HttpClient,
    registry: &str,
    challenge: Option<&str>,
    credentials: Option<&Credentials>,
    scopes: &[String],
) -> Result<HeaderValue, RegistryError> {
    let auth_err = |message: String| RegistryError::Auth {
        registry: registry.to_string(),
        message,
    };
    let challenge = challenge.and_then(parse_challenge).ok_or_else(|| {
        auth_err("the registry asked for an unknown kind of authentication".to_string())
    })?;
    let header = match (challenge, credentials) {
        (Challenge::Basic, Some(Credentials::Basic { username, password })) => {
            basic_header(username, password)
        }
        (Challenge::Basic, _) => {
            return Err(auth_err("it asks for a user name and password".to_string()))
        }
        (Challenge::Bearer { .. }, Some(Credentials::Token(token))) => format!("Bearer {token}"),
        (Challenge::Bearer { realm, service }, credentials) => {
            let mut token_url =
                Url::parse(&realm).map_err(|e| auth_err(format!("token realm {realm:?}: {e}")))?;
            {
                let mut query = token_url.query_pairs_mut();
                if let Some(service) = &service {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
            }
            let mut headers = HeaderMap::new();
            if let Some(Credentials::Basic { username, password }) = credentials {
                let mut value =
                    HeaderValue::from_str(&basic_header(username, password)).map_err(|_| {
                        auth_err(
                            "the credentials contain characters HTTP headers cannot carry"
                                .to_string(),
                        )
                    })?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            let response = http
                .request(Method::GET, &token_url, headers, None)
                .await
                .map_err(|source| RegistryError::Http {
                    registry: registry.to_string(),
                    loopback_tls: false,
                    source: Box::new(source),
                })?;
            if !(200..300).contains(&response.status) {
                let status = response.status;
                return Err(auth_err(match (status, credentials) {
                    (401 | 403, Some(Credentials::Basic { username, .. })) => format!(
                        "the token service at {realm} refused the user name and password given \
                         for `{username}` (HTTP {status})"
                    ),
                    (401 | 403, _) => format!(
                        "the token service at {realm} wants a user name and password (HTTP \
                         {status}), and none were given"
                    ),
                    _ => format!("the token service at {realm} answered HTTP {status}"),
                }));
            }
            let body: serde_json::Value = serde_json::from_slice(&response.body)
                .map_err(|_| auth_err(format!("the token service at {realm} sent no JSON")))?;
            let token = body
                .get("token")
                .or_else(|| body.get("access_token"))
                .and_then(|t| t.as_str())
                .ok_or_else(|| auth_err(format!("the token service at {realm} sent no token")))?;
            format!("Bearer {token}")
        }
    };
    let mut value = HeaderValue::from_str(&header).map_err(|_| {
        auth_err("the credentials contain characters HTTP headers cannot carry".to_string())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#,
        ) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("registry.example"));
            }
            _ => panic!("not parsed as bearer"),
        }
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Token("secret".into())).contains("secret"));
    }
}
