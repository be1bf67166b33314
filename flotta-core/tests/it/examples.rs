//! Our example manifests parse, validate cleanly and round-trip.

use flotta_core::manifest::{AnyResource, parse_manifests};
use flotta_core::validation::Validate;
use serde_json::Value;

use crate::reference::example_manifests;

#[test]
fn every_example_parses_validates_and_round_trips() {
    let examples = example_manifests();
    let mut kinds: Vec<&str> = Vec::new();
    for (name, text) in &examples {
        let resources = parse_manifests(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resources.len(), 1, "{name} holds one resource");
        for resource in &resources {
            let problems = resource.validate();
            assert!(problems.is_empty(), "{name}: {problems:?}");
            let input: Value = serde_yaml_ng::from_str(text).expect("valid YAML");
            let output = serde_json::to_value(resource).expect("serializes");
            assert_eq!(output, input, "{name} changed on a round trip");
            kinds.push(resource.kind());
        }
    }
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "EdgeConfig",
            "EdgeDevice",
            "EdgeDeviceSet",
            "EdgeDeviceSignedRequest",
            "EdgeWorkload"
        ]
    );
}

#[test]
fn examples_use_the_extensions() {
    let examples = example_manifests();
    let all: String = examples.iter().map(|(_, t)| format!("---\n{t}")).collect();
    let resources = parse_manifests(&all).expect("examples parse together");
    for resource in resources {
        match resource {
            AnyResource::EdgeDeviceSet(set) => {
                assert!(set.spec.selector.is_some());
                let template = set.spec.template.expect("set has a template");
                let labels = template.metadata.and_then(|m| m.labels).expect("labels");
                assert!(labels.values().any(|v| v.contains("getOrDefault")));
            }
            AnyResource::EdgeWorkload(workload) => {
                let rollout = workload.spec.rollout_policy.expect("has a rollout policy");
                assert_eq!(rollout.batches.map(|b| b.len()), Some(2));
            }
            AnyResource::EdgeDevice(device) => {
                assert_eq!(device.spec.files.map(|f| f.len()), Some(2));
                let os = device.spec.os_information.expect("os target");
                assert_eq!(os.automatic_rollback, Some(true));
            }
            AnyResource::EdgeDeviceSignedRequest(request) => {
                assert_eq!(request.spec.target_namespace, "plant-north");
            }
            _ => {}
        }
    }
}

#[test]
fn the_secrets_example_validates_and_renders_with_its_objects() {
    use flotta_core::model::{ConfigMap, EdgeDevice, Secret};
    use flotta_core::reconcile::render_device_config;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/manifests/secrets/app-with-secrets.yaml");
    let text = std::fs::read_to_string(&path).expect("example");
    let resources = parse_manifests(&text).expect("parses");
    let mut secrets: Vec<Secret> = Vec::new();
    let mut maps: Vec<ConfigMap> = Vec::new();
    let mut workloads = Vec::new();
    let mut sets = Vec::new();
    for resource in resources {
        assert!(resource.validate().is_empty(), "{}", resource.kind());
        match resource {
            AnyResource::Secret(s) => secrets.push(*s),
            AnyResource::ConfigMap(c) => maps.push(*c),
            AnyResource::EdgeWorkload(w) => workloads.push(*w),
            AnyResource::EdgeDeviceSet(s) => sets.push(*s),
            other => panic!("unexpected {}", other.kind()),
        }
    }
    let device: EdgeDevice = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
        "metadata": {"name": "cam-1", "namespace": "plant-north",
                     "labels": {"device-class": "camera"}},
        "spec": {}
    }))
    .expect("device");
    let rendered = render_device_config(&device, &sets, &workloads, &secrets, &maps);
    assert!(!rendered.has_errors(), "{:?}", rendered.problems);
    assert_eq!(rendered.message.secrets.map(|s| s.len()), Some(1));
    let files = rendered.message.configuration.and_then(|c| c.files);
    assert_eq!(files.map(|f| f.len()), Some(2));
}

#[test]
fn the_architecture_example_selects_devices_by_their_reported_hardware() {
    use flotta_core::model::{EdgeDevice, Hardware};
    use flotta_core::reconcile::{relabel_from_hardware, workload_targets};
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/manifests/hardware/edgeworkload-by-architecture.yaml");
    let text = std::fs::read_to_string(&path).expect("example");
    let resources = parse_manifests(&text).expect("parses");
    let [AnyResource::EdgeWorkload(workload)] = resources.as_slice() else {
        panic!("one EdgeWorkload expected");
    };
    assert!(workload.validate().is_empty());
    let device_reporting = |architecture: &str| {
        let hardware: Hardware = serde_json::from_value(serde_json::json!({
            "hostname": "box", "disks": [], "gpus": [], "interfaces": [],
            "cpu": {"architecture": architecture, "flags": []}}))
        .expect("hardware");
        let labels = relabel_from_hardware(&Default::default(), &hardware).expect("labels");
        let device: EdgeDevice = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
            "metadata": {"name": "box", "namespace": "default", "labels": labels},
            "spec": {}
        }))
        .expect("device");
        device
    };
    assert_eq!(
        workload_targets(&device_reporting("x86_64"), workload),
        Ok(true)
    );
    assert_eq!(
        workload_targets(&device_reporting("aarch64"), workload),
        Ok(false)
    );
}

#[test]
fn the_rbac_examples_validate_and_isolate_the_teams() {
    use flotta_core::rbac::{Attributes, RbacSnapshot, UserInfo, authorize, request};
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/rbac");
    let (mut roles, mut bindings, mut cluster_roles, mut cluster_bindings) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for file in ["team-a.yaml", "team-b.yaml", "fleet-auditors.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("example");
        for resource in parse_manifests(&text).expect("parses") {
            assert!(
                resource.validate().is_empty(),
                "{file}: {}",
                resource.kind()
            );
            match resource {
                AnyResource::Role(r) => roles.push(*r),
                AnyResource::RoleBinding(b) => bindings.push(*b),
                AnyResource::ClusterRole(r) => cluster_roles.push(*r),
                AnyResource::ClusterRoleBinding(b) => cluster_bindings.push(*b),
                other => panic!("unexpected {}", other.kind()),
            }
        }
    }
    let snapshot = RbacSnapshot::new(&roles, &bindings, &cluster_roles, &cluster_bindings);
    let may = |user: &UserInfo, method: &str, path: &str| {
        let request = request::attributes(method, path, None);
        authorize(
            &Attributes {
                user,
                request: &request,
            },
            &snapshot,
        )
        .allowed
    };
    let flotta = "/apis/management.project-flotta.io/v1alpha1";
    let alice = UserInfo::new("alice", ["team-a"]);
    let carol = UserInfo::new("carol", ["auditors"]);
    assert!(may(
        &alice,
        "POST",
        &format!("{flotta}/namespaces/team-a/edgeworkloads")
    ));
    assert!(!may(
        &alice,
        "GET",
        &format!("{flotta}/namespaces/team-b/edgeworkloads")
    ));
    assert!(!may(&alice, "GET", &format!("{flotta}/edgedevices")));
    assert!(may(&carol, "GET", &format!("{flotta}/edgedevices")));
    assert!(may(&carol, "GET", "/api/v1/namespaces/team-a/secrets/db"));
    assert!(!may(&carol, "GET", "/api/v1/namespaces/team-b/secrets/db"));
}

/// The configuration `examples/manifests/observability/FILE` renders for a camera
/// of plant-north (`device-class: camera`), after checking every object validates.
fn render_observability_example(file: &str) -> flotta_core::wire::DeviceConfigurationMessage {
    use flotta_core::model::EdgeDevice;
    use flotta_core::reconcile::render_device_config;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/manifests/observability")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    let (mut maps, mut secrets, mut workloads, mut sets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for resource in parse_manifests(&text).expect("parses") {
        assert!(
            resource.validate().is_empty(),
            "{file}: {}",
            resource.kind()
        );
        match resource {
            AnyResource::ConfigMap(c) => maps.push(*c),
            AnyResource::Secret(s) => secrets.push(*s),
            AnyResource::EdgeWorkload(w) => workloads.push(*w),
            AnyResource::EdgeDeviceSet(s) => sets.push(*s),
            other => panic!("{file}: unexpected {}", other.kind()),
        }
    }
    let device: EdgeDevice = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
        "metadata": {"name": "cam-1", "namespace": "plant-north",
                     "labels": {"device-class": "camera"}},
        "spec": {}
    }))
    .expect("device");
    let rendered = render_device_config(&device, &sets, &workloads, &secrets, &maps);
    assert!(!rendered.has_errors(), "{file}: {:?}", rendered.problems);
    rendered.message
}

/// The rendered workload `name`.
fn rendered_workload(
    message: &flotta_core::wire::DeviceConfigurationMessage,
    name: &str,
) -> flotta_core::wire::Workload {
    message
        .workloads
        .iter()
        .flatten()
        .find(|w| w.name.as_deref() == Some(name))
        .cloned()
        .unwrap_or_else(|| panic!("workload {name} rendered"))
}

#[test]
fn the_observability_example_renders_metrics_for_its_devices() {
    let message = render_observability_example("metrics.yaml");
    let metrics = message
        .configuration
        .as_ref()
        .and_then(|c| c.metrics.clone())
        .expect("metrics");
    let receiver = metrics.receiver.expect("receiver");
    assert_eq!(
        receiver.url.as_deref(),
        Some("http://prometheus.plant-north.example:9090/api/v1/write")
    );
    assert_eq!(receiver.request_num_samples, Some(1000));
    let system = metrics.system.expect("system");
    assert_eq!(system.interval, Some(60));
    let names = system.allow_list.and_then(|l| l.names).expect("names");
    assert!(names.contains(&"node_load1".to_owned()), "{names:?}");
    assert_eq!(metrics.retention.and_then(|r| r.max_mib), Some(32));
    let workload_metrics = rendered_workload(&message, "frame-counter")
        .metrics
        .expect("workload metrics");
    assert_eq!(workload_metrics.port, Some(9102));
}

#[test]
fn the_logs_example_sends_its_workload_to_the_syslog_target() {
    let message = render_observability_example("logs.yaml");
    let targets = message
        .configuration
        .as_ref()
        .and_then(|c| c.log_collection.clone())
        .expect("log collection");
    let syslog = targets["central"].syslog_config.as_ref().expect("syslog");
    assert_eq!(
        syslog.address.as_deref(),
        Some("logs.plant-north.example:601")
    );
    assert_eq!(syslog.protocol.as_deref(), Some("tcp"));
    assert_eq!(targets["central"].buffer_size, Some(12));
    assert_eq!(
        rendered_workload(&message, "frame-logger")
            .log_collection
            .as_deref(),
        Some("central")
    );
}

#[test]
fn the_data_example_resolves_the_bucket_and_the_egress_paths() {
    let message = render_observability_example("data.yaml");
    let s3 = message
        .configuration
        .as_ref()
        .and_then(|c| c.storage.as_ref())
        .and_then(|s| s.s3.clone())
        .expect("storage.s3");
    assert_eq!(s3.bucket_host.as_deref(), Some("s3.plant-north.example"));
    assert_eq!(s3.bucket_port, Some(9000));
    assert_eq!(s3.aws_access_key_id.as_deref(), Some("camera-uploader"));
    let egress = rendered_workload(&message, "frame-grabber")
        .data
        .and_then(|d| d.egress)
        .expect("egress");
    assert_eq!(egress[0].source.as_deref(), Some("/export/frames"));
    assert_eq!(egress[0].target.as_deref(), Some("camera-frames"));
}

/// The GitOps examples parse, validate, and name each other (the sync's
/// repository, the Secrets they reference).
#[test]
fn the_gitops_examples_validate_and_reference_each_other() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/gitops");
    let mut secrets = Vec::new();
    let mut repositories = Vec::new();
    let mut syncs = Vec::new();
    for file in ["repository.yaml", "resourcesync.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("example");
        for resource in parse_manifests(&text).expect("parses") {
            assert!(
                resource.validate().is_empty(),
                "{file}: {}",
                resource.kind()
            );
            match resource {
                AnyResource::Secret(secret) => {
                    secrets.push(secret.metadata.name.clone().expect("name"))
                }
                AnyResource::Repository(repository) => repositories.push(*repository),
                AnyResource::ResourceSync(sync) => syncs.push(*sync),
                other => panic!("unexpected {}", other.kind()),
            }
        }
    }
    let [repository] = repositories.as_slice() else {
        panic!("one repository: {repositories:?}");
    };
    let [sync] = syncs.as_slice() else {
        panic!("one sync: {syncs:?}");
    };
    assert_eq!(
        Some(&sync.spec.repository),
        repository.metadata.name.as_ref()
    );
    let referenced = [
        repository
            .spec
            .secret_ref
            .as_ref()
            .expect("secretRef")
            .name
            .clone(),
        sync.spec
            .webhook_secret_ref
            .as_ref()
            .expect("webhookSecretRef")
            .name
            .clone(),
    ];
    for name in referenced {
        assert!(secrets.contains(&name), "{name} is defined: {secrets:?}");
    }
    assert_eq!(
        flotta_core::gitops::poll_interval(sync.spec.poll_interval.as_deref()),
        Ok(std::time::Duration::from_secs(60))
    );
}
