//! The image config of one platform: base config merged with the stack's environment,
//! entrypoint and command, the layers' diff_ids and one history entry per layer.
//!
//! Owns the config JSON (a `serde_json::Value`, so a base image's unknown fields survive
//! and keys serialise sorted). It must not write files or build layers.

use serde_json::{json, Map, Value};

use super::settings::ImageSettings;

/// The PATH an image gets when its base sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One history entry of a comfypak layer.
#[derive(Debug, Clone)]
pub struct LayerHistory {
    /// `comfypak pack: layer deps (pak4.txt, pak2.txt)`.
    pub created_by: String,
    pub comment: String,
}

/// What a config is built from.
pub struct ConfigInputs<'a> {
    /// The base image's config, if there is a base.
    pub base: Option<&'a Value>,
    pub settings: &'a ImageSettings,
    /// In-image venv path (`/opt/comfyui/venv`).
    pub venv: &'a str,
    /// OCI architecture (`amd64`, `arm64`).
    pub architecture: &'a str,
    /// RFC 3339.
    pub created: &'a str,
    /// diff_ids of comfypak's layers, bottom first (the base's come from its config).
    pub diff_ids: Vec<String>,
    pub history: Vec<LayerHistory>,
}

/// Builds the config JSON.
pub fn build_config(inputs: &ConfigInputs<'_>) -> Value {
    let mut config = match inputs.base {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    // Fields that describe how a base was built, not this image.
    for key in ["container", "container_config", "docker_version", "author"] {
        config.remove(key);
    }
    config.insert("created".into(), json!(inputs.created));
    config.insert("architecture".into(), json!(inputs.architecture));
    config.insert("os".into(), json!("linux"));
    if inputs.architecture != "arm64" {
        config.remove("variant");
    }

    let mut run = match config.remove("config") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut env: Vec<(String, String)> = run
        .get("Env")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    let venv_bin = format!("{}/bin", inputs.venv.trim_end_matches('/'));
    let base_path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let path = if base_path.split(':').any(|p| p == venv_bin) {
        base_path
    } else {
        format!("{venv_bin}:{base_path}")
    };
    set_env(&mut env, "PATH", &path);
    set_env(&mut env, "VIRTUAL_ENV", inputs.venv);
    for (k, v) in &inputs.settings.env {
        set_env(&mut env, k, v);
    }
    run.insert(
        "Env".into(),
        Value::Array(env.iter().map(|(k, v)| json!(format!("{k}={v}"))).collect()),
    );
    if let Some(entrypoint) = &inputs.settings.entrypoint {
        run.insert("Entrypoint".into(), json!(entrypoint));
        // As in a Dockerfile: a new entrypoint drops the command inherited from the base.
        if inputs.settings.cmd.is_none() {
            run.remove("Cmd");
        }
    }
    if let Some(cmd) = &inputs.settings.cmd {
        run.insert("Cmd".into(), json!(cmd));
    }
    if let Some(workdir) = &inputs.settings.workdir {
        run.insert("WorkingDir".into(), json!(workdir));
    }
    if let Some(user) = &inputs.settings.user {
        run.insert("User".into(), json!(user));
    }
    if !inputs.settings.volumes.is_empty() {
        let mut volumes = match run.remove("Volumes") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for path in &inputs.settings.volumes {
            volumes.insert(path.clone(), json!({}));
        }
        run.insert("Volumes".into(), Value::Object(volumes));
    }
    if !inputs.settings.labels.is_empty() {
        let mut labels = match run.remove("Labels") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for (k, v) in &inputs.settings.labels {
            labels.insert(k.clone(), json!(v));
        }
        run.insert("Labels".into(), Value::Object(labels));
    }
    config.insert("config".into(), Value::Object(run));

    let mut diff_ids: Vec<Value> = inputs
        .base
        .and_then(|b| b.pointer("/rootfs/diff_ids"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    diff_ids.extend(inputs.diff_ids.iter().map(|d| json!(d)));
    config.insert(
        "rootfs".into(),
        json!({ "type": "layers", "diff_ids": diff_ids }),
    );

    let mut history: Vec<Value> = inputs
        .base
        .and_then(|b| b.get("history"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for h in &inputs.history {
        history.push(json!({
            "created": inputs.created,
            "created_by": h.created_by,
            "comment": h.comment,
        }));
    }
    config.insert("history".into(), Value::Array(history));
    Value::Object(config)
}

fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venv_goes_first_on_the_base_path() {
        let base = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/cuda/bin:/usr/bin", "LANG=C.UTF-8"], "Cmd": ["bash"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "base"}]
        });
        let settings = ImageSettings {
            entrypoint: Some(vec!["python".into()]),
            ..Default::default()
        };
        let config = build_config(&ConfigInputs {
            base: Some(&base),
            settings: &settings,
            venv: "/opt/venv",
            architecture: "amd64",
            created: "1970-01-01T00:00:00Z",
            diff_ids: vec!["sha256:bb".into()],
            history: vec![LayerHistory {
                created_by: "comfypak".into(),
                comment: String::new(),
            }],
        });
        assert_eq!(
            config["config"]["Env"],
            json!([
                "PATH=/opt/venv/bin:/usr/local/cuda/bin:/usr/bin",
                "LANG=C.UTF-8",
                "VIRTUAL_ENV=/opt/venv"
            ])
        );
        assert!(config["config"].get("Cmd").is_none());
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!(["sha256:aa", "sha256:bb"])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
    }
}
