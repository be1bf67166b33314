//! An example for users of the `kube` crate: a flotta server's management API is
//! Kubernetes-shaped, so kube-rs's dynamic API works against it unchanged. From a
//! kubeconfig written by `flotta kubeconfig -o FILE` it
//!
//! 1. discovers EdgeDevice and EdgeWorkload (`kube::discovery::pinned_kind`),
//! 2. lists EdgeDevices, optionally by label selector, printing name, phase and labels,
//! 3. labels the first device listed with a merge patch,
//! 4. watches EdgeWorkloads from resource version `"0"` (the current objects come as
//!    `ADDED`, then every change) until `--max-events` events or `--watch-seconds`.
//!
//! ```text
//! flotta-example-kube-rs --kubeconfig kubeconfig.yaml [--namespace NS] [--selector SEL]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, ResourceExt, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::pinned_kind;
use kube::{Client, Config};

/// The API group and version of flotta's kinds.
const GROUP: &str = "management.project-flotta.io";
const VERSION: &str = "v1alpha1";

/// Lists, labels and watches a flotta fleet through kube-rs.
#[derive(Debug, Parser)]
struct Args {
    /// Kubeconfig written by `flotta kubeconfig -o FILE`.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Namespace to work in; the kubeconfig context's namespace by default.
    #[arg(long)]
    namespace: Option<String>,
    /// Label selector of the EdgeDevices to list (`key=value,key2!=value2`, ...).
    #[arg(long)]
    selector: Option<String>,
    /// Label set on the first device listed, `key=value`.
    #[arg(long, default_value = "managed-by=kube-rs", value_parser = parse_label)]
    label: (String, String),
    /// The watch ends after this many events ...
    #[arg(long, default_value_t = 10)]
    max_events: usize,
    /// ... or after this many seconds.
    #[arg(long, default_value_t = 5)]
    watch_seconds: u32,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // kube's rustls client uses the process-wide crypto provider; naming it here keeps
    // the program working when a dependency also enables rustls's `ring` provider.
    // An error only means a provider is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();

    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)?;

    let (devices, _) = pinned_kind(
        &client,
        &GroupVersionKind::gvk(GROUP, VERSION, "EdgeDevice"),
    )
    .await?;
    let devices: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &devices);
    list_and_label(&devices, &namespace, &args).await?;

    let (workloads, _) = pinned_kind(
        &client,
        &GroupVersionKind::gvk(GROUP, VERSION, "EdgeWorkload"),
    )
    .await?;
    let workloads: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &workloads);
    watch(&workloads, &namespace, &args).await
}

/// Lists the selected devices and labels the first with a merge patch.
async fn list_and_label(
    api: &Api<DynamicObject>,
    namespace: &str,
    args: &Args,
) -> Result<(), Error> {
    let mut params = ListParams::default();
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    let list = api.list(&params).await?;
    println!(
        "EdgeDevices in {namespace} (selector {:?}): {}",
        args.selector.as_deref().unwrap_or(""),
        list.items.len()
    );
    for device in &list.items {
        let phase = device.data["status"]["phase"].as_str().unwrap_or("-");
        println!(
            "device {} phase={phase} labels={}",
            device.name_any(),
            labels(device.labels())
        );
    }

    let Some(first) = list.items.first() else {
        println!("no device to label");
        return Ok(());
    };
    let (key, value) = &args.label;
    let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
    let patched = api
        .patch(
            &first.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    println!(
        "labelled {} {key}={value}: labels={}",
        patched.name_any(),
        labels(patched.labels())
    );
    Ok(())
}

/// Prints one line per watch event until `--max-events` or `--watch-seconds`.
async fn watch(api: &Api<DynamicObject>, namespace: &str, args: &Args) -> Result<(), Error> {
    println!(
        "watching EdgeWorkloads in {namespace}: at most {} events or {} s",
        args.max_events, args.watch_seconds
    );
    // The server ends the stream at `timeoutSeconds`; the local timeout is the bound
    // should the connection stall.
    let params = WatchParams::default().timeout(args.watch_seconds);
    let stream = api.watch(&params, "0").await?;
    let events = stream
        .take(args.max_events)
        .try_for_each(|event| async move {
            match event {
                WatchEvent::Added(o) => println!("ADDED {}", o.name_any()),
                WatchEvent::Modified(o) => println!("MODIFIED {}", o.name_any()),
                WatchEvent::Deleted(o) => println!("DELETED {}", o.name_any()),
                WatchEvent::Bookmark(b) => println!("BOOKMARK {}", b.metadata.resource_version),
                WatchEvent::Error(status) => println!("ERROR {}", status.message),
            }
            Ok(())
        });
    let limit = Duration::from_secs(u64::from(args.watch_seconds) + 5);
    match tokio::time::timeout(limit, events).await {
        Ok(result) => result?,
        Err(_) => println!("watch: no end from the server after {} s", limit.as_secs()),
    }
    println!("watch ended");
    Ok(())
}

/// `key=value,...` in key order.
fn labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}
