//! What the configuration asks of the data upload ([`DataPlan`]): the bucket the
//! device's `storage.s3` names (resolved by the server from its ConfigMap and
//! Secret) and, per workload, the `data.egress` paths whose files go there; or why
//! it cannot be carried out.
//!
//! A `source` is a path in the workload's export directory (`/export` in the
//! workload; absolute paths under `/export` and relative paths are the same
//! place); a `target` is a prefix in the bucket. A file `F` under `source` becomes
//! the object `DEVICE/TARGET/F`.

use std::path::{Component, Path, PathBuf};

use flotta_core::wire::{DeviceConfigurationMessage, S3StorageConfiguration};

/// The directory workloads see their export directory as.
pub const EXPORT_MOUNT: &str = "/export";

/// Where objects go.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketPlan {
    /// `http[s]://HOST:PORT`.
    pub endpoint: String,
    /// The bucket.
    pub name: String,
    /// The region signatures are made for.
    pub region: String,
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// CA bundle (PEM) the endpoint's certificate is checked with, instead of
    /// the system's roots.
    pub ca_bundle: Option<String>,
}

impl std::fmt::Debug for BucketPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketPlan")
            .field("endpoint", &self.endpoint)
            .field("name", &self.name)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// One `data.egress` entry of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPath {
    /// Relative path in the workload's export directory (`.` for all of it).
    pub source: PathBuf,
    /// Object key prefix, without leading or trailing `/`.
    pub target: String,
}

/// A workload whose files are uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadData {
    /// The workload's name.
    pub workload: String,
    /// Its egress paths.
    pub paths: Vec<EgressPath>,
}

/// Every upload the configuration asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlan {
    /// The bucket.
    pub bucket: BucketPlan,
    /// Workloads with egress paths, sorted by name.
    pub workloads: Vec<WorkloadData>,
}

impl DataPlan {
    /// The plan of `message`: `None` when no workload has egress paths, or every
    /// reason it cannot be carried out, each naming the field at fault.
    pub fn from_message(message: &DeviceConfigurationMessage) -> Result<Option<Self>, Vec<String>> {
        let mut problems = Vec::new();
        let mut workloads = Vec::new();
        for workload in message.workloads.iter().flatten() {
            let Some(name) = &workload.name else { continue };
            let egress = workload
                .data
                .as_ref()
                .and_then(|d| d.egress.as_ref())
                .filter(|e| !e.is_empty());
            let Some(egress) = egress else { continue };
            let mut paths = Vec::new();
            for (index, path) in egress.iter().enumerate() {
                let field = format!("workload {name}: data.egress[{index}]");
                let source = match source_path(path.source.as_deref().unwrap_or_default()) {
                    Ok(source) => source,
                    Err(problem) => {
                        problems.push(format!("{field}.source: {problem}"));
                        continue;
                    }
                };
                let target = path.target.as_deref().unwrap_or_default().trim_matches('/');
                if target.is_empty()
                    || target
                        .split('/')
                        .any(|s| s.is_empty() || s == "." || s == "..")
                {
                    problems.push(format!(
                        "{field}.target: {:?} is not an object key prefix (segments separated by /, no empty, . or .. segment)",
                        path.target.as_deref().unwrap_or_default()
                    ));
                    continue;
                }
                paths.push(EgressPath {
                    source,
                    target: target.to_owned(),
                });
            }
            workloads.push(WorkloadData {
                workload: name.clone(),
                paths,
            });
        }
        if workloads.is_empty() && problems.is_empty() {
            return Ok(None);
        }
        let storage = message
            .configuration
            .as_ref()
            .and_then(|c| c.storage.as_ref())
            .and_then(|s| s.s3.as_ref());
        let bucket = match storage {
            Some(s3) => bucket_of(s3).map_err(|p| problems.extend(p)).ok(),
            None => {
                problems.push(format!(
                    "workloads {} have data.egress paths but the device has no storage.s3",
                    workloads
                        .iter()
                        .map(|w| w.workload.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                None
            }
        };
        match bucket {
            Some(bucket) if problems.is_empty() => {
                workloads.sort_by(|a, b| a.workload.cmp(&b.workload));
                Ok(Some(Self { bucket, workloads }))
            }
            _ => Err(problems),
        }
    }
}

/// `source` as a relative path in the export directory.
fn source_path(source: &str) -> Result<PathBuf, String> {
    let trimmed = source.trim();
    let relative = match trimmed.strip_prefix(EXPORT_MOUNT) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ if trimmed.starts_with('/') => {
            return Err(format!(
                "{source:?} is outside {EXPORT_MOUNT}, the only directory uploaded from"
            ));
        }
        _ => trimmed,
    };
    let mut path = PathBuf::new();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return Err(format!("{source:?} leaves {EXPORT_MOUNT}")),
        }
    }
    Ok(path)
}

fn bucket_of(s3: &S3StorageConfiguration) -> Result<BucketPlan, Vec<String>> {
    let mut problems = Vec::new();
    let mut required = |value: &Option<String>, key: &str| match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => {
            problems.push(format!("storage.s3: {key} is missing"));
            String::new()
        }
    };
    let host = required(&s3.bucket_host, "BUCKET_HOST");
    let name = required(&s3.bucket_name, "BUCKET_NAME");
    let access_key_id = required(&s3.aws_access_key_id, "AWS_ACCESS_KEY_ID");
    let secret_access_key = required(&s3.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY");
    let port = match s3.bucket_port {
        None => 443,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => port,
            _ => {
                problems.push(format!("storage.s3: BUCKET_PORT {port} is not a port"));
                443
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let ca_bundle = s3.aws_ca_bundle.clone().filter(|c| !c.trim().is_empty());
    // TLS on 443 or with a CA bundle; plain HTTP on any other port without one.
    let scheme = match (port, &ca_bundle) {
        (_, Some(_)) => "https",
        (443, None) => {
            return Err(vec![
                "storage.s3: the endpoint is https (BUCKET_PORT 443) but no CA bundle is set \
                 (AWS_CA_BUNDLE); the agent trusts only the CAs it is given"
                    .into(),
            ]);
        }
        _ => "http",
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(BucketPlan {
        endpoint: format!("{scheme}://{host}:{port}"),
        name,
        region: s3
            .bucket_region
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into()),
        access_key_id,
        secret_access_key,
        ca_bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotta_core::wire::{
        DataConfiguration, DataPath, DeviceConfiguration, StorageConfiguration, Workload,
    };

    fn message(
        storage: Option<S3StorageConfiguration>,
        paths: &[(&str, &str)],
    ) -> DeviceConfigurationMessage {
        DeviceConfigurationMessage {
            configuration: Some(DeviceConfiguration {
                storage: storage.map(|s3| StorageConfiguration {
                    s3: Some(s3),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            workloads: Some(vec![Workload {
                name: Some("cam".into()),
                data: Some(DataConfiguration {
                    egress: Some(
                        paths
                            .iter()
                            .map(|(s, t)| DataPath {
                                source: Some((*s).into()),
                                target: Some((*t).into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn s3(port: Option<i32>) -> S3StorageConfiguration {
        S3StorageConfiguration {
            bucket_host: Some("127.0.0.1".into()),
            bucket_port: port,
            bucket_name: Some("frames".into()),
            aws_access_key_id: Some("id".into()),
            aws_secret_access_key: Some("secret".into()),
            ..Default::default()
        }
    }

    #[test]
    fn egress_paths_go_to_the_bucket_under_their_target() {
        let plan = DataPlan::from_message(&message(
            Some(s3(Some(9000))),
            &[("/export/frames", "/camera/frames/"), (".", "all")],
        ))
        .expect("plan")
        .expect("something to upload");
        assert_eq!(plan.bucket.endpoint, "http://127.0.0.1:9000");
        assert_eq!(plan.bucket.region, "us-east-1");
        assert_eq!(plan.workloads[0].paths[0].source, PathBuf::from("frames"));
        assert_eq!(plan.workloads[0].paths[0].target, "camera/frames");
        assert_eq!(plan.workloads[0].paths[1].source, PathBuf::new());
        let mut with_ca = s3(None);
        with_ca.aws_ca_bundle = Some("-----BEGIN CERTIFICATE-----".into());
        let tls = DataPlan::from_message(&message(Some(with_ca), &[("frames", "f")]))
            .expect("plan")
            .expect("plan");
        assert_eq!(tls.bucket.endpoint, "https://127.0.0.1:443");
        let problems = DataPlan::from_message(&message(Some(s3(None)), &[("frames", "f")]))
            .expect_err("https without a CA");
        assert!(problems[0].contains("no CA bundle"), "{problems:?}");
    }

    #[test]
    fn what_cannot_be_carried_out_is_named() {
        let problems = DataPlan::from_message(&message(
            None,
            &[("/etc", "x"), ("../up", "x"), ("ok", "a//b")],
        ))
        .expect_err("refused");
        let all = problems.join("\n");
        assert!(
            all.contains("data.egress[0].source: \"/etc\" is outside /export"),
            "{all}"
        );
        assert!(
            all.contains("data.egress[1].source: \"../up\" leaves /export"),
            "{all}"
        );
        assert!(all.contains("data.egress[2].target: \"a//b\""), "{all}");
        assert!(all.contains("the device has no storage.s3"), "{all}");
        let mut incomplete = s3(Some(0));
        incomplete.aws_secret_access_key = None;
        let problems =
            DataPlan::from_message(&message(Some(incomplete), &[("f", "f")])).expect_err("refused");
        assert_eq!(
            problems,
            [
                "storage.s3: AWS_SECRET_ACCESS_KEY is missing",
                "storage.s3: BUCKET_PORT 0 is not a port"
            ]
        );
    }

    #[test]
    fn no_egress_is_no_plan() {
        assert_eq!(
            DataPlan::from_message(&message(Some(s3(None)), &[])),
            Ok(None)
        );
    }
}
