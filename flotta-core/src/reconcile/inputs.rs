//! What a workload's containers are given, resolved from its configuration message:
//! environment variables (`env`, `envFrom`) with their values read from the
//! workload's config maps and the message's secrets, the files of its `configMap` and
//! `secret` volumes, and its registry auth file. Runtimes carry this out (process
//! environments and files, podman kube YAML, the bindings' runtimes); the rules are
//! decided here once.
//!
//! Rules, as Kubernetes has them: `envFrom` sources first, then `env`, a later
//! variable replacing an earlier one of the same name; `$(VAR)` in `env` values
//! expands against the variables defined before it; a missing object or key is an
//! error unless the reference is `optional`. Volume files are the object's keys (or
//! the `items` chosen, at their `path`), with the item's `mode`, else the volume's
//! `defaultMode`, else 0644 for config maps and 0600 for secrets (they are files on a
//! host, not in a private mount namespace). Errors name the field, never a value.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, PodSpec};

use crate::wire;

/// Default mode of a config map volume's files.
pub const CONFIG_MAP_FILE_MODE: u32 = 0o644;
/// Default mode of a secret volume's files.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Why a workload's inputs cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    /// Path of the offending field in the pod spec, e.g. `spec.containers[0].env[1]`.
    pub field: String,
    /// What is wrong (names objects and keys, never values).
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        message: message.into(),
    }
}

/// The environment of one container, in definition order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContainerInputs {
    /// Container name.
    pub name: String,
    /// Variables, each name once, in the order Kubernetes defines them.
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for ContainerInputs {
    // Values may come from secrets: only names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerInputs")
            .field("name", &self.name)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// One file of a volume.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VolumeFile {
    /// Path relative to the volume's root (a key, or an item's `path`).
    pub path: String,
    /// Content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for VolumeFile {
    // The content may be a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeFile")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// The files of one `configMap` or `secret` volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeFiles {
    /// Volume name.
    pub name: String,
    /// Whether it comes from a secret.
    pub secret: bool,
    /// Its files, by path.
    pub files: Vec<VolumeFile>,
}

/// A secret as a workload sees it: keys and decoded values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData {
    /// Secret name.
    pub name: String,
    /// Keys and values.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for SecretData {
    // Values never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretData {
    /// Decodes a wire secret (its `data` is JSON of base64 values, as Flotta sends).
    pub fn from_wire(secret: &wire::Secret) -> Result<Self, InputError> {
        let name = secret.name.clone().unwrap_or_default();
        let field = format!("secrets[{name}]");
        let map: BTreeMap<String, String> = match &secret.data {
            None => BTreeMap::new(),
            Some(text) => serde_json::from_str(text)
                .map_err(|_| error(&field, "data is not a JSON map of base64 strings"))?,
        };
        let mut data = BTreeMap::new();
        for (key, value) in map {
            let bytes = STANDARD
                .decode(value.as_bytes())
                .map_err(|_| error(&field, format!("key {key:?} is not valid base64")))?;
            data.insert(key, bytes);
        }
        Ok(Self { name, data })
    }
}

/// Everything a workload's containers are given (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadInputs {
    /// One entry per container, in pod order (init containers first).
    pub containers: Vec<ContainerInputs>,
    /// The `configMap` and `secret` volumes, in pod order.
    pub volumes: Vec<VolumeFiles>,
    /// The secrets the pod references, decoded (for runtimes that hand whole
    /// objects over, as podman's kube YAML does).
    pub secrets: Vec<SecretData>,
    /// Registry credentials (`imageRegistries.authFile`), for `--authfile`.
    pub auth_file: Option<String>,
}

impl WorkloadInputs {
    /// The inputs of the container named `name`.
    pub fn container(&self, name: &str) -> Option<&ContainerInputs> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Resolves `workload`'s inputs from its config maps and `secrets` (the
    /// configuration message's secrets).
    pub fn resolve(
        workload: &wire::Workload,
        secrets: &[wire::Secret],
    ) -> Result<Self, InputError> {
        let text = workload
            .specification
            .as_deref()
            .ok_or_else(|| error("specification", "the workload has no pod specification"))?;
        let pod: PodSpec = serde_yaml_ng::from_str(text)
            .map_err(|e| error("specification", format!("not a valid PodSpec: {e}")))?;
        let mut config_maps: BTreeMap<String, ConfigMap> = BTreeMap::new();
        for (index, text) in workload.configmaps.iter().flatten().enumerate() {
            let map: ConfigMap = serde_yaml_ng::from_str(text).map_err(|e| {
                error(
                    format!("configmaps[{index}]"),
                    format!("not a valid ConfigMap: {e}"),
                )
            })?;
            config_maps.insert(map.metadata.name.clone().unwrap_or_default(), map);
        }
        let mut decoded: BTreeMap<String, SecretData> = BTreeMap::new();
        for secret in secrets {
            let data = SecretData::from_wire(secret)?;
            decoded.insert(data.name.clone(), data);
        }
        let objects = Objects {
            workload_name: workload.name.clone().unwrap_or_default(),
            namespace: workload.namespace.clone().unwrap_or_default(),
            config_maps,
            secrets: decoded,
        };
        let mut containers = Vec::new();
        let init = pod.init_containers.iter().flatten().enumerate();
        for (index, container) in init {
            let field = format!("spec.initContainers[{index}]");
            containers.push(objects.container(container, &field)?);
        }
        for (index, container) in pod.containers.iter().enumerate() {
            let field = format!("spec.containers[{index}]");
            containers.push(objects.container(container, &field)?);
        }
        let mut volumes = Vec::new();
        let mut used_secrets = std::collections::BTreeSet::new();
        for (index, volume) in pod.volumes.iter().flatten().enumerate() {
            let field = format!("spec.volumes[{index}]");
            if let Some(source) = &volume.config_map {
                let Some(map) = objects.config_maps.get(&source.name) else {
                    if source.optional == Some(true) {
                        continue;
                    }
                    return Err(error(
                        format!("{field}.configMap"),
                        format!("config map {:?} is not part of the workload", source.name),
                    ));
                };
                let entries = config_map_entries(map);
                volumes.push(VolumeFiles {
                    name: volume.name.clone(),
                    secret: false,
                    files: volume_files(
                        &entries,
                        source.items.as_deref(),
                        source.default_mode,
                        CONFIG_MAP_FILE_MODE,
                        &format!("{field}.configMap"),
                    )?,
                });
            }
            if let Some(source) = &volume.secret {
                let name = source.secret_name.clone().unwrap_or_default();
                let Some(secret) = objects.secrets.get(&name) else {
                    if source.optional == Some(true) {
                        continue;
                    }
                    return Err(error(
                        format!("{field}.secret"),
                        format!("secret {name:?} was not sent with the configuration"),
                    ));
                };
                used_secrets.insert(name);
                volumes.push(VolumeFiles {
                    name: volume.name.clone(),
                    secret: true,
                    files: volume_files(
                        &secret.data,
                        source.items.as_deref(),
                        source.default_mode,
                        SECRET_FILE_MODE,
                        &format!("{field}.secret"),
                    )?,
                });
            }
        }
        used_secrets.extend(objects.secrets_read_by(&pod));
        let secrets = used_secrets
            .iter()
            .filter_map(|name| objects.secrets.get(name).cloned())
            .collect();
        Ok(Self {
            containers,
            volumes,
            secrets,
            auth_file: workload
                .image_registries
                .as_ref()
                .and_then(|r| r.auth_file.clone()),
        })
    }
}

struct Objects {
    workload_name: String,
    namespace: String,
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, SecretData>,
}

fn config_map_entries(map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut entries: BTreeMap<String, Vec<u8>> = map
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (key, value) in map.binary_data.iter().flatten() {
        entries.insert(key.clone(), value.0.clone());
    }
    entries
}

/// A relative path inside a volume: no `..`, not absolute, not empty.
fn check_relative(path: &str, field: &str) -> Result<(), InputError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|part| part.is_empty() || part == "..");
    if bad {
        return Err(error(
            field,
            format!("{path:?} is not a relative path inside the volume"),
        ));
    }
    Ok(())
}

fn volume_files(
    entries: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    fallback_mode: u32,
    field: &str,
) -> Result<Vec<VolumeFile>, InputError> {
    let mode_of = |mode: Option<i32>| {
        mode.or(default_mode)
            .and_then(|m| u32::try_from(m).ok())
            .map_or(fallback_mode, |m| m & 0o777)
    };
    match items {
        None => Ok(entries
            .iter()
            .map(|(key, content)| VolumeFile {
                path: key.clone(),
                content: content.clone(),
                mode: mode_of(None),
            })
            .collect()),
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("{field}.items[{index}]");
                check_relative(&item.path, &at)?;
                let content = entries
                    .get(&item.key)
                    .ok_or_else(|| error(&at, format!("no key {:?}", item.key)))?;
                Ok(VolumeFile {
                    path: item.path.clone(),
                    content: content.clone(),
                    mode: mode_of(item.mode),
                })
            })
            .collect(),
    }
}

fn text(bytes: &[u8], field: &str, what: &str) -> Result<String, InputError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| error(field, format!("{what} is not UTF-8 text")))
}

impl Objects {
    fn secrets_read_by(&self, pod: &PodSpec) -> Vec<String> {
        let mut names = Vec::new();
        let containers = pod
            .init_containers
            .iter()
            .flatten()
            .chain(pod.containers.iter());
        for container in containers {
            for source in container.env_from.iter().flatten() {
                if let Some(r) = &source.secret_ref {
                    names.push(r.name.clone());
                }
            }
            for variable in container.env.iter().flatten() {
                if let Some(r) = variable
                    .value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                {
                    names.push(r.name.clone());
                }
            }
        }
        names
    }

    fn container(&self, container: &Container, field: &str) -> Result<ContainerInputs, InputError> {
        let mut env: Vec<(String, String)> = Vec::new();
        let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        };
        for (index, source) in container.env_from.iter().flatten().enumerate() {
            let prefix = source.prefix.clone().unwrap_or_default();
            let at = format!("{field}.envFrom[{index}]");
            if let Some(reference) = &source.config_map_ref {
                match self.config_maps.get(&reference.name) {
                    Some(map) => {
                        for (key, value) in map.data.iter().flatten() {
                            set(&mut env, format!("{prefix}{key}"), value.clone());
                        }
                    }
                    None if reference.optional == Some(true) => {}
                    None => {
                        return Err(error(
                            format!("{at}.configMapRef"),
                            format!(
                                "config map {:?} is not part of the workload",
                                reference.name
                            ),
                        ));
                    }
                }
            }
            if let Some(reference) = &source.secret_ref {
                match self.secrets.get(&reference.name) {
                    Some(secret) => {
                        for (key, value) in &secret.data {
                            let value = text(
                                value,
                                &format!("{at}.secretRef"),
                                &format!("key {key:?} of secret {:?}", reference.name),
                            )?;
                            set(&mut env, format!("{prefix}{key}"), value);
                        }
                    }
                    None if reference.optional == Some(true) => {}
                    None => {
                        return Err(error(
                            format!("{at}.secretRef"),
                            format!(
                                "secret {:?} was not sent with the configuration",
                                reference.name
                            ),
                        ));
                    }
                }
            }
        }
        for (index, variable) in container.env.iter().flatten().enumerate() {
            let at = format!("{field}.env[{index}]");
            let value = match (&variable.value, &variable.value_from) {
                (_, Some(from)) => {
                    if let Some(reference) = &from.config_map_key_ref {
                        let value = self
                            .config_maps
                            .get(&reference.name)
                            .and_then(|map| map.data.as_ref()?.get(&reference.key));
                        match value {
                            Some(value) => Some(value.clone()),
                            None if reference.optional == Some(true) => None,
                            None => {
                                return Err(error(
                                    format!("{at}.valueFrom.configMapKeyRef"),
                                    format!(
                                        "key {:?} of config map {:?} is not part of the workload",
                                        reference.key, reference.name
                                    ),
                                ));
                            }
                        }
                    } else if let Some(reference) = &from.secret_key_ref {
                        let value = self
                            .secrets
                            .get(&reference.name)
                            .and_then(|secret| secret.data.get(&reference.key));
                        match value {
                            Some(value) => Some(text(
                                value,
                                &format!("{at}.valueFrom.secretKeyRef"),
                                &format!("key {:?} of secret {:?}", reference.key, reference.name),
                            )?),
                            None if reference.optional == Some(true) => None,
                            None => {
                                return Err(error(
                                    format!("{at}.valueFrom.secretKeyRef"),
                                    format!(
                                        "key {:?} of secret {:?} was not sent with the configuration",
                                        reference.key, reference.name
                                    ),
                                ));
                            }
                        }
                    } else if let Some(reference) = &from.field_ref {
                        match reference.field_path.as_str() {
                            "metadata.name" => Some(self.workload_name.clone()),
                            "metadata.namespace" => Some(self.namespace.clone()),
                            other => {
                                return Err(error(
                                    format!("{at}.valueFrom.fieldRef"),
                                    format!("{other:?} is not metadata.name or metadata.namespace"),
                                ));
                            }
                        }
                    } else {
                        return Err(error(
                            format!("{at}.valueFrom"),
                            "only configMapKeyRef, secretKeyRef and fieldRef are supported",
                        ));
                    }
                }
                (Some(value), None) => Some(expand(value, &env)),
                (None, None) => Some(String::new()),
            };
            if let Some(value) = value {
                set(&mut env, variable.name.clone(), value);
            }
        }
        Ok(ContainerInputs {
            name: container.name.clone(),
            env,
        })
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined
/// reference is left as written, and `$$` is a literal `$`.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, value)) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, data: &[(&str, &str)]) -> wire::Secret {
        let map: BTreeMap<&str, String> =
            data.iter().map(|(k, v)| (*k, STANDARD.encode(v))).collect();
        wire::Secret {
            name: Some(name.into()),
            data: Some(serde_json::to_string(&map).expect("json")),
            extra: Default::default(),
        }
    }

    fn workload(pod: &str) -> wire::Workload {
        wire::Workload {
            name: Some("app".into()),
            namespace: Some("ns".into()),
            specification: Some(pod.into()),
            configmaps: Some(vec![
                "metadata: {name: cfg}\ndata: {MODE: fast, app.conf: \"x=1\"}\n".into(),
            ]),
            image_registries: Some(wire::ImageRegistries {
                auth_file: Some("{\"auths\":{}}".into()),
                extra: Default::default(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn env_and_volumes_come_from_config_maps_and_secrets() {
        let pod = r#"
containers:
- name: main
  envFrom: [{configMapRef: {name: cfg}, prefix: C_}, {secretRef: {name: db}}]
  env:
  - {name: TOKEN, valueFrom: {secretKeyRef: {name: api, key: token}}}
  - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: MODE}}}
  - {name: URL, value: "https://$(TOKEN)@host"}
  - {name: WHO, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
  - {name: OPT, valueFrom: {secretKeyRef: {name: absent, key: k, optional: true}}}
volumes:
- {name: conf, configMap: {name: cfg, items: [{key: app.conf, path: etc/app.conf}]}}
- {name: certs, secret: {secretName: tls, defaultMode: 0o440}}
"#;
        let secrets = [
            secret("api", &[("token", "t1")]),
            secret("db", &[("PASSWORD", "pw")]),
            secret("tls", &[("tls.key", "k")]),
            secret("unrelated", &[("x", "y")]),
        ];
        let inputs = WorkloadInputs::resolve(&workload(pod), &secrets).expect("resolves");
        let env = &inputs.container("main").expect("main").env;
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("C_MODE"), Some("fast"));
        assert_eq!(get("PASSWORD"), Some("pw"));
        assert_eq!(get("TOKEN"), Some("t1"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("URL"), Some("https://t1@host"));
        assert_eq!(get("WHO"), Some("app"));
        assert_eq!(get("OPT"), None);
        assert_eq!(inputs.volumes.len(), 2);
        assert_eq!(inputs.volumes[0].files[0].path, "etc/app.conf");
        assert_eq!(inputs.volumes[0].files[0].content, b"x=1");
        assert_eq!(inputs.volumes[0].files[0].mode, 0o644);
        assert!(inputs.volumes[1].secret);
        assert_eq!(inputs.volumes[1].files[0].mode, 0o440);
        let names: Vec<&str> = inputs.secrets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "db", "tls"], "only what the pod references");
        assert_eq!(inputs.auth_file.as_deref(), Some("{\"auths\":{}}"));
        // Debug output never shows a value.
        let debug = format!("{inputs:?}");
        assert!(
            !debug.contains("\"k\"") && !debug.contains("pw\""),
            "{debug}"
        );
    }

    #[test]
    fn missing_objects_are_errors_naming_the_field_never_the_value() {
        let pod = "containers:\n- name: main\n  env:\n  - {name: T, valueFrom: {secretKeyRef: {name: api, key: nokey}}}\n";
        let error = WorkloadInputs::resolve(&workload(pod), &[secret("api", &[("token", "t1")])])
            .expect_err("missing key");
        assert_eq!(
            error.field,
            "spec.containers[0].env[0].valueFrom.secretKeyRef"
        );
        assert!(!error.to_string().contains("t1"));
        let volume = "containers: [{name: main}]\nvolumes:\n- {name: v, configMap: {name: cfg, items: [{key: MODE, path: ../escape}]}}\n";
        let error = WorkloadInputs::resolve(&workload(volume), &[]).expect_err("escape");
        assert!(error.message.contains("relative path"), "{error}");
        let bad = wire::Secret {
            name: Some("s".into()),
            data: Some("{\"k\": \"not base64!!\"}".into()),
            extra: Default::default(),
        };
        let error = SecretData::from_wire(&bad).expect_err("bad base64");
        assert!(!error.to_string().contains("not base64!!"), "{error}");
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let env = vec![
            ("A".to_owned(), "one".to_owned()),
            ("B".to_owned(), "two".to_owned()),
        ];
        assert_eq!(expand("$(A)-$(B)", &env), "one-two");
        assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5 $(A", &env), "cost $5 $(A");
    }
}
