//! Rendering tables, the narrowing-selector regression, and Flotta's samples.

use std::collections::BTreeMap;

use flotta_core::model::{ConfigMap, EdgeDevice, EdgeDeviceSet, EdgeWorkload, Time};
use flotta_core::reconcile::{
    Action, ObservedState, ProblemReason, RenderedConfig, plan, prepare_workload,
    render_device_config, render_device_config_for_workloads, render_device_config_prepared,
};
use flotta_core::selector::{DeviceIndex, Selector};
use k8s_openapi::api::core::v1::Secret;

use crate::reference;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{text}"))
}

fn device(name: &str, labels: &str, spec: &str) -> EdgeDevice {
    yaml(&format!(
        "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDevice\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {labels}\nspec: {spec}\n"
    ))
}

fn workload(name: &str, target: &str, pod: &str) -> EdgeWorkload {
    yaml(&format!(
        "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  type: pod\n  {target}\n  pod:\n    spec: {pod}\n"
    ))
}

fn simple_pod(image: &str) -> String {
    format!("{{containers: [{{name: main, image: {image}}}]}}")
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: flotta_core::model::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: flotta_core::model::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn workload_names(rendered: &RenderedConfig) -> Vec<&str> {
    rendered
        .message
        .workloads
        .iter()
        .flatten()
        .filter_map(|w| w.name.as_deref())
        .collect()
}

fn heartbeat_period(rendered: &RenderedConfig) -> Option<i64> {
    rendered
        .message
        .configuration
        .as_ref()?
        .heartbeat
        .as_ref()?
        .period_seconds
}

#[test]
fn device_only_configuration() {
    let dev = device(
        "d1",
        "{}",
        "{heartbeat: {periodSeconds: 5}, osInformation: {commitID: abc, automaticallyUpgrade: true}, files: [{path: /etc/motd, content: hi}]}",
    );
    let rendered = render_device_config(&dev, &[], &[], &[], &[]);
    assert!(rendered.problems.is_empty(), "{:?}", rendered.problems);
    assert_eq!(rendered.message.device_id.as_deref(), Some("d1"));
    assert_eq!(heartbeat_period(&rendered), Some(5));
    let configuration = rendered
        .message
        .configuration
        .as_ref()
        .expect("configuration");
    let os = configuration.os.as_ref().expect("os");
    assert_eq!(os.commit_id.as_deref(), Some("abc"));
    assert_eq!(os.automatically_upgrade, Some(true));
    let files = configuration.files.as_ref().expect("files");
    assert_eq!(files[0].path, "/etc/motd");
    assert_eq!(
        rendered.message.version.as_deref(),
        Some(rendered.version.as_str())
    );

    let bare = render_device_config(&device("d2", "{}", "{}"), &[], &[], &[], &[]);
    assert_eq!(heartbeat_period(&bare), Some(60), "Flotta's default period");
}

#[test]
fn version_ignores_status_resource_version_and_input_order() {
    let mut dev = device("d1", "{app: cam}", "{heartbeat: {periodSeconds: 5}}");
    let workloads = [
        workload(
            "a",
            "deviceSelector: {matchLabels: {app: cam}}",
            &simple_pod("img:a"),
        ),
        workload("b", "device: d1", &simple_pod("img:b")),
    ];
    let first = render_device_config(&dev, &[], &workloads, &[], &[]);
    dev.metadata.resource_version = Some("999".into());
    dev.status = Some(yaml("{phase: up, lastSeen: '2026-01-01T00:00:00Z'}"));
    let reversed = [workloads[1].clone(), workloads[0].clone()];
    let second = render_device_config(&dev, &[], &reversed, &[], &[]);
    assert_eq!(first.version, second.version);
    assert_eq!(workload_names(&second), ["a", "b"]);

    let changed = [
        workloads[0].clone(),
        workload("b", "device: d1", &simple_pod("img:b2")),
    ];
    let third = render_device_config(&dev, &[], &changed, &[], &[]);
    assert_ne!(first.version, third.version);
}

#[test]
fn set_sections_replace_the_device_sections() {
    let dev = device(
        "d1",
        "{flotta/member-of: cams}",
        "{heartbeat: {periodSeconds: 5}, metrics: {system: {interval: 30}}}",
    );
    let set: EdgeDeviceSet = yaml(
        "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {name: cams, namespace: default}\nspec: {heartbeat: {periodSeconds: 15}}\n",
    );
    let other: EdgeDeviceSet = yaml(
        "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {name: others, namespace: default}\nspec: {heartbeat: {periodSeconds: 99}}\n",
    );
    let rendered = render_device_config(&dev, &[other.clone(), set.clone()], &[], &[], &[]);
    assert_eq!(rendered.device_set.as_deref(), Some("cams"));
    assert_eq!(heartbeat_period(&rendered), Some(15));
    let metrics = rendered
        .message
        .configuration
        .as_ref()
        .and_then(|c| c.metrics.as_ref())
        .expect("device metrics kept: the set does not define them");
    assert_eq!(metrics.system.as_ref().and_then(|s| s.interval), Some(30));

    // Membership by selector; the labelled set wins when both claim the device.
    let by_selector: EdgeDeviceSet = yaml(
        "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata: {name: aaa, namespace: default}\nspec: {selector: {matchLabels: {flotta/member-of: cams}}, heartbeat: {periodSeconds: 7}}\n",
    );
    let rendered = render_device_config(&dev, &[by_selector.clone(), set], &[], &[], &[]);
    assert_eq!(rendered.device_set.as_deref(), Some("cams"));
    assert!(
        rendered
            .problems
            .iter()
            .any(|p| p.reason == ProblemReason::SeveralDeviceSets)
    );
    assert!(!rendered.has_errors(), "several sets is a warning");
    let rendered = render_device_config(&dev, &[by_selector], &[], &[], &[]);
    assert_eq!(heartbeat_period(&rendered), Some(7));
}

fn template_set() -> EdgeDeviceSet {
    yaml(
        r#"apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeDeviceSet
metadata: {name: sites, namespace: default}
spec:
  selector: {matchLabels: {fleet: sites}}
  template:
    spec:
      files:
        - path: "/etc/{{ .metadata.name }}/site"
          content: "site={{ .metadata.labels.site }} rack={{ getOrDefault .metadata.labels \"rack\" \"r0\" }}"
"#,
    )
}

#[test]
fn template_parameters_render_per_device() {
    let dev = device("cam-1", "{fleet: sites, site: lyon}", "{}");
    let rendered = render_device_config(&dev, &[template_set()], &[], &[], &[]);
    assert!(rendered.problems.is_empty(), "{:?}", rendered.problems);
    let files = rendered
        .message
        .configuration
        .as_ref()
        .and_then(|c| c.files.as_ref())
        .expect("files");
    assert_eq!(files[0].path, "/etc/cam-1/site");
    assert_eq!(files[0].content, "site=lyon rack=r0");
}

#[test]
fn missing_template_label_is_a_problem_not_an_empty_string() {
    let dev = device("cam-2", "{fleet: sites}", "{}");
    let rendered = render_device_config(&dev, &[template_set()], &[], &[], &[]);
    assert!(rendered.has_errors());
    let problem = rendered
        .problems
        .iter()
        .find(|p| p.reason == ProblemReason::TemplateFailed)
        .expect("template problem");
    assert_eq!(problem.object, "EdgeDeviceSet/sites");
    assert_eq!(problem.field, "spec.template.spec.files[0].content");
    assert!(problem.message.contains("site"), "{}", problem.message);
    assert!(
        rendered
            .message
            .configuration
            .as_ref()
            .and_then(|c| c.files.as_ref())
            .is_none(),
        "a failed template is not applied"
    );
    let now = Time("2026-01-01T00:00:00Z".parse().expect("timestamp"));
    let condition = rendered.condition(&now);
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "TemplateFailed");
}

#[test]
fn workloads_target_by_name_and_by_selector() {
    let dev = device("d1", "{tier: edge}", "{}");
    let mut deleting = workload("deleting", "device: d1", &simple_pod("x"));
    deleting.metadata.deletion_timestamp =
        Some(Time("2026-01-01T00:00:00Z".parse().expect("timestamp")));
    let mut elsewhere = workload("elsewhere", "device: d1", &simple_pod("x"));
    elsewhere.metadata.namespace = Some("other".into());
    let workloads = [
        workload("by-name", "device: d1", &simple_pod("x")),
        workload("other-name", "device: d2", &simple_pod("x")),
        workload(
            "by-selector",
            "deviceSelector: {matchExpressions: [{key: tier, operator: In, values: [edge, core]}]}",
            &simple_pod("x"),
        ),
        workload(
            "no-match",
            "deviceSelector: {matchLabels: {tier: core}}",
            &simple_pod("x"),
        ),
        workload("no-target", "data: {}", &simple_pod("x")),
        deleting,
        elsewhere,
    ];
    let rendered = render_device_config(&dev, &[], &workloads, &[], &[]);
    assert_eq!(workload_names(&rendered), ["by-name", "by-selector"]);
    let spec = rendered.message.workloads.as_ref().expect("workloads")[0]
        .specification
        .as_deref()
        .expect("specification");
    assert!(spec.contains("image: x"), "{spec}");
}

#[test]
fn only_referenced_secrets_and_config_maps_are_sent() {
    let dev = device("d1", "{}", "{}");
    let pod = r#"{containers: [{name: main, image: app,
        envFrom: [{secretRef: {name: env-secret}}, {configMapRef: {name: env-config}}],
        env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: token-secret, key: token}}},
              {name: OPT, valueFrom: {secretKeyRef: {name: absent, key: k, optional: true}}}]}]}"#;
    let mut w = workload("app", "device: d1", pod);
    w.spec.image_registries = Some(yaml("{secretRef: {name: pull-secret}}"));
    let secrets = [
        secret("env-secret", &[("A", "1")]),
        secret("token-secret", &[("token", "t")]),
        secret("pull-secret", &[(".dockerconfigjson", "{\"auths\":{}}")]),
        secret("unrelated", &[("x", "y")]),
    ];
    let mut cm = config_map("env-config", &[("MODE", "fast")]);
    cm.metadata.resource_version = Some("1".into());
    let config_maps = [cm.clone(), config_map("unrelated-config", &[("a", "b")])];
    let rendered = render_device_config(&dev, &[], &[w.clone()], &secrets, &config_maps);
    assert!(rendered.problems.is_empty(), "{:?}", rendered.problems);

    let sent: Vec<&str> = rendered
        .message
        .secrets
        .iter()
        .flatten()
        .filter_map(|s| s.name.as_deref())
        .collect();
    assert_eq!(sent, ["env-secret", "token-secret"]);
    let token = rendered.message.secrets.as_ref().expect("secrets")[1]
        .data
        .as_deref()
        .expect("data");
    assert_eq!(token, r#"{"token":"dA=="}"#, "JSON of base64 values");

    let workload = &rendered.message.workloads.as_ref().expect("workloads")[0];
    assert_eq!(
        workload
            .image_registries
            .as_ref()
            .and_then(|r| r.auth_file.as_deref()),
        Some("{\"auths\":{}}")
    );
    let configmaps = workload.configmaps.as_ref().expect("configmaps");
    assert_eq!(configmaps.len(), 1);
    assert!(
        configmaps[0].contains("name: env-config"),
        "{}",
        configmaps[0]
    );
    assert!(configmaps[0].contains("MODE: fast"));
    assert!(!configmaps[0].contains("resourceVersion"));

    // Workloads prepared once for the fleet render to the same message.
    let prepared = prepare_workload(&w, &secrets, &config_maps);
    let via_prepared =
        render_device_config_prepared(&dev, &[], &[&prepared], &secrets, &config_maps);
    assert_eq!(via_prepared, rendered);

    // Server bookkeeping on the config map does not change the version; its data does.
    let mut bumped = cm.clone();
    bumped.metadata.resource_version = Some("2".into());
    let again = render_device_config(&dev, &[], &[w.clone()], &secrets, &[bumped]);
    assert_eq!(again.version, rendered.version);
    let edited = config_map("env-config", &[("MODE", "slow")]);
    let again = render_device_config(&dev, &[], &[w], &secrets, &[edited]);
    assert_ne!(again.version, rendered.version);
}

#[test]
fn dangling_references_are_problems_and_leave_the_workload_out() {
    let dev = device("d1", "{}", "{}");
    let pod = r#"{containers: [{name: main, image: app,
        envFrom: [{configMapRef: {name: missing-config}}],
        env: [{name: T, valueFrom: {secretKeyRef: {name: present, key: nokey}}}]}]}"#;
    let broken = workload("broken", "device: d1", pod);
    let fine = workload("fine", "device: d1", &simple_pod("x"));
    let rendered = render_device_config(
        &dev,
        &[],
        &[broken, fine],
        &[secret("present", &[("k", "v")])],
        &[],
    );
    // Handled per workload: the configuration itself is still fit to send.
    assert!(!rendered.has_errors());
    assert_eq!(workload_names(&rendered), ["fine"]);
    let fields: Vec<&str> = rendered.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.pod.spec.containers[0].env[0].valueFrom.secretKeyRef",
            "spec.pod.spec.containers[0].envFrom[0].configMapRef",
        ]
    );
    assert!(
        rendered
            .problems
            .iter()
            .all(|p| p.reason == ProblemReason::DanglingReference
                && p.object == "EdgeWorkload/broken")
    );
}

#[test]
fn narrowing_a_selector_removes_the_workload_from_devices_that_stop_matching() {
    let d1 = device("d1", "{tier: a}", "{}");
    let d2 = device("d2", "{tier: b}", "{}");
    let wide = workload(
        "w",
        "deviceSelector: {matchExpressions: [{key: tier, operator: In, values: [a, b]}]}",
        &simple_pod("x"),
    );
    let narrow = workload(
        "w",
        "deviceSelector: {matchLabels: {tier: a}}",
        &simple_pod("x"),
    );

    // Fleet-scale path: the index picks the devices, rendering takes the selection.
    let mut index = DeviceIndex::new();
    for d in [&d1, &d2] {
        index.upsert_device(
            d.metadata.name.as_deref().expect("name"),
            d.metadata.labels.clone().unwrap_or_default(),
        );
    }
    let selector = |w: &EdgeWorkload| {
        Selector::try_from(w.spec.device_selector.as_ref().expect("selector")).expect("valid")
    };
    assert_eq!(index.select(&selector(&wide)), ["d1", "d2"]);
    assert_eq!(index.select(&selector(&narrow)), ["d1"]);

    let before = render_device_config_for_workloads(&d2, &[], &[&wide], &[], &[]);
    assert_eq!(workload_names(&before), ["w"]);
    let after = render_device_config(&d2, &[], std::slice::from_ref(&narrow), &[], &[]);
    assert!(workload_names(&after).is_empty());
    assert_ne!(before.version, after.version);

    let observed = ObservedState::from_config(&before);
    let actions = plan(&before, &after, &observed);
    assert!(actions.contains(&Action::RemoveWorkload { name: "w".into() }));

    // d1 still matches and keeps it, unchanged.
    let d1_before = render_device_config(&d1, &[], &[wide], &[], &[]);
    let d1_after = render_device_config(&d1, &[], &[narrow], &[], &[]);
    assert_eq!(d1_before.version, d1_after.version);
}

#[test]
fn flotta_samples_render() {
    let Some(dir) = reference::flotta_dir() else {
        return;
    };
    let mut dev: EdgeDevice = yaml(&reference::read(
        &dir,
        "samples/management_v1alpha1_edgedevice.yaml",
    ));
    let set: EdgeDeviceSet = yaml(&reference::read(
        &dir,
        "samples/management_v1alpha1_edgedeviceset.yaml",
    ));
    let mut work: EdgeWorkload = yaml(&reference::read(
        &dir,
        "samples/management_v1alpha1_edgeworkload.yaml",
    ));

    // As shipped, the device carries neither the workload's label nor the set's.
    let rendered = render_device_config(
        &dev,
        std::slice::from_ref(&set),
        std::slice::from_ref(&work),
        &[],
        &[],
    );
    assert!(workload_names(&rendered).is_empty());
    assert_eq!(rendered.device_set, None);
    assert_eq!(heartbeat_period(&rendered), Some(5));

    let labels = dev.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("foo".into(), "bar".into());
    labels.insert("flotta/member-of".into(), "edgedeviceset-sample".into());
    // The samples have no namespace on the set and workload: default.
    work.metadata.namespace = None;
    let rendered = render_device_config(
        &dev,
        std::slice::from_ref(&set),
        std::slice::from_ref(&work),
        &[],
        &[],
    );
    assert_eq!(workload_names(&rendered), ["edgeworkload-sample"]);
    assert_eq!(
        heartbeat_period(&rendered),
        Some(15),
        "the set's heartbeat wins"
    );
    let os = rendered
        .message
        .configuration
        .as_ref()
        .and_then(|c| c.os.as_ref())
        .expect("os from the set");
    assert_eq!(
        os.commit_id.as_deref(),
        Some("0305686e69d673cb15ad459990fab4a3e4c5aba1")
    );
    // The set names a storage secret/config map and a syslog config map that the
    // samples do not ship: dangling, reported.
    let dangling: Vec<&str> = rendered
        .problems
        .iter()
        .filter(|p| p.reason == ProblemReason::DanglingReference)
        .map(|p| p.field.as_str())
        .collect();
    assert_eq!(
        dangling,
        [
            "spec.logCollection.syslog.syslogConfig",
            "spec.storage.s3.configMapName",
            "spec.storage.s3.secretName",
        ]
    );

    let with_objects = render_device_config(
        &dev,
        &[set],
        &[work],
        &[secret(
            "common-s3-secret",
            &[
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "key"),
            ],
        )],
        &[
            config_map(
                "common-s3-config",
                &[("BUCKET_HOST", "s3.local"), ("BUCKET_PORT", "443")],
            ),
            config_map(
                "syslog-config-map",
                &[("Address", "10.0.0.1:514"), ("Protocol", "tcp")],
            ),
        ],
    );
    assert!(
        with_objects.problems.is_empty(),
        "{:?}",
        with_objects.problems
    );
    let configuration = with_objects
        .message
        .configuration
        .as_ref()
        .expect("configuration");
    let s3 = configuration
        .storage
        .as_ref()
        .and_then(|s| s.s3.as_ref())
        .expect("s3");
    assert_eq!(s3.bucket_host.as_deref(), Some("s3.local"));
    assert_eq!(s3.bucket_port, Some(443));
    assert_eq!(s3.aws_access_key_id.as_deref(), Some("id"));
    let syslog = configuration
        .log_collection
        .as_ref()
        .and_then(|l| l.get("syslog"))
        .and_then(|l| l.syslog_config.as_ref())
        .expect("syslog");
    assert_eq!(syslog.address.as_deref(), Some("10.0.0.1:514"));
}

#[test]
fn a_missing_reference_keeps_the_last_good_rendering_until_it_appears() {
    use flotta_core::reconcile::{
        REFERENCES_RESOLVED_CONDITION, keep_last_good, references_condition,
    };
    let dev = device("d1", "{}", "{}");
    let pod = r#"{containers: [{name: main, image: app:1,
        env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: api, key: token}}}]}],
        volumes: [{name: certs, secret: {secretName: tls}}, {name: cfg, configMap: {name: app}}]}"#;
    let w = workload("app", "device: d1", pod);
    let secrets = [
        secret("api", &[("token", "t1")]),
        secret("tls", &[("crt", "c")]),
    ];
    let maps = [config_map("app", &[("a.conf", "x")])];
    let good = prepare_workload(&w, &secrets, &maps);
    assert!(good.workload.is_some(), "{:?}", good.problems);
    assert_eq!(
        good.uses
            .secrets
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["api", "tls"]
    );
    assert!(good.uses.uses(false, "app"));
    let rendered = render_device_config_prepared(&dev, &[], &[&good], &secrets, &maps);
    let sent: Vec<&str> = rendered
        .message
        .secrets
        .iter()
        .flatten()
        .filter_map(|s| s.name.as_deref())
        .collect();
    assert_eq!(sent, ["api", "tls"], "secret volumes are sent too");
    assert!(rendered.uses.uses(true, "tls"));

    // The workload moves to a new image that needs a secret not created yet.
    let pod2 = pod
        .replace("app:1", "app:2")
        .replace("name: api", "name: api2");
    let w2 = workload("app", "device: d1", &pod2);
    let failed = prepare_workload(&w2, &secrets, &maps);
    assert!(failed.workload.is_none());
    let held = keep_last_good(Some(&good), failed.clone());
    assert!(held.held_back);
    assert_eq!(held.workload, good.workload, "the running revision stays");
    assert!(held.uses.uses(true, "api2"), "its creation must re-render");
    let rendered = render_device_config_prepared(&dev, &[], &[&held], &secrets, &maps);
    assert_eq!(workload_names(&rendered), ["app"]);
    // A workload never rendered has nothing to keep.
    assert_eq!(keep_last_good(None, failed.clone()).workload, None);

    let now: Time = yaml("\"2026-01-01T00:00:00Z\"");
    let later: Time = yaml("\"2026-01-01T00:01:00Z\"");
    let condition = references_condition(&w2, &secrets, &maps, None, &now);
    assert_eq!(condition.type_, REFERENCES_RESOLVED_CONDITION);
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "DanglingReference")
    );
    assert!(
        condition.message.contains("secret 'api2' does not exist"),
        "{}",
        condition.message
    );
    let again = references_condition(&w2, &secrets, &maps, Some(&condition), &later);
    assert_eq!(again.last_transition_time, now);

    // The secret appears: the new rendering replaces the held one.
    let mut with_api2 = secrets.to_vec();
    with_api2.push(secret("api2", &[("token", "t2")]));
    let converged = keep_last_good(Some(&held), prepare_workload(&w2, &with_api2, &maps));
    assert!(!converged.held_back);
    assert!(
        converged
            .workload
            .as_ref()
            .and_then(|w| w.specification.as_deref())
            .is_some_and(|s| s.contains("app:2"))
    );
    let resolved = references_condition(&w2, &with_api2, &maps, Some(&condition), &later);
    assert_eq!(resolved.status, "True");
    assert_eq!(resolved.last_transition_time, later);
}
