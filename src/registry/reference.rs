//! Image references (`REGISTRY/REPOSITORY[:TAG]`) and the loopback test for plain HTTP.
//! Must not: talk to a registry.

use std::fmt;
use std::str::FromStr;

use super::RegistryError;

/// `REGISTRY/REPOSITORY:TAG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `host[:port]`.
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

impl FromStr for ImageReference {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| RegistryError::Reference {
            text: text.to_string(),
            message: message.to_string(),
        };
        let text_no_scheme = text.strip_prefix("docker://").unwrap_or(text);
        let (registry, rest) = text_no_scheme
            .split_once('/')
            .ok_or_else(|| bad("no registry host"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(
                "the part before the first `/` must be a registry host (with a dot or a port)",
            ));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (rest, "latest"),
        };
        if repository.contains('@') {
            return Err(bad("push by digest is not supported; give a tag"));
        }
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_ok {
            return Err(bad(
                "repository names use lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !tag_ok {
            return Err(bad(
                "a tag uses letters, digits, `.`, `_` and `-` (at most 128)",
            ));
        }
        Ok(ImageReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// Whether `host[:port]` is this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r: ImageReference = "127.0.0.1:5000/team/comfyui:v1".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/comfyui");
        assert_eq!(r.tag, "v1");
        let r: ImageReference = "registry.example/comfyui".parse().unwrap();
        assert_eq!(r.tag, "latest");
        assert!("comfyui:latest".parse::<ImageReference>().is_err());
        assert!("localhost:5000/Comfy:x".parse::<ImageReference>().is_err());
        assert!("localhost:5000/comfy@sha256:ab"
            .parse::<ImageReference>()
            .is_err());
    }

    #[test]
    fn loopback_only() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
