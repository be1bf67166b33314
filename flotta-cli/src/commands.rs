//! The subcommands.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use flotta_client::{
    ApplyOutcome, DryRun, ListParams, ManagementClient, ServerSideApply, WatchEvent,
};
use flotta_core::selector::Selector;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::kind::{Kind, parse_reference};
use crate::output::{self, Format};
use crate::{
    ApplyArgs, Cli, CliError, Command, CreateCommand, DEFAULT_CONFIG, DataSource, DryRunMode,
    EnrolmentRequests, GetArgs, GlobalArgs, SecretKind,
};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    if !matches!(
        cli.command,
        Command::Login(_) | Command::Crds | Command::Validate { .. } | Command::Completion { .. }
    ) {
        crate::login::renew_if_due(&global).await;
    }
    match cli.command {
        Command::Login(args) => crate::login::login(&global, args).await,
        Command::Get(args) => get(&global, args).await,
        Command::Describe { kind, name } => {
            let (kind, name) = kind_and_name(&kind, name)?;
            let client = client(&global)?;
            crate::describe::describe(&client, &global.namespace, kind, &name).await
        }
        Command::Apply(args) => apply(&global, args).await,
        Command::Delete { kind, names } => delete(&global, &kind, names).await,
        Command::Approve(requests) => decide(&global, requests, true).await,
        Command::Deny(requests) => decide(&global, requests, false).await,
        Command::Label {
            object,
            changes,
            overwrite,
        } => label(&global, &object, &changes, overwrite).await,
        Command::Create(what) => create(&global, what).await,
        Command::Rollout(command) => crate::rollout::run(&global, command).await,
        Command::Crds => crds(),
        Command::Kubeconfig { token, output } => kubeconfig(&global, token, output),
        Command::Validate { files, recursive } => validate(&files, recursive),
        Command::Token(command) => crate::access::token(&global, command).await,
        Command::Auth(crate::AuthCommand::CanI(args)) => crate::access::can_i(&global, args).await,
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "flotta", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The configuration file: `--config`, else `FLOTTA_CONFIG` (both via clap), else
/// `./flotta-data/admin.yaml`.
pub(crate) fn client(global: &GlobalArgs) -> Result<ManagementClient, CliError> {
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    ManagementClient::from_config_file(&path).map_err(|error| match error {
        flotta_client::ClientError::ReadConfig { path, source } => CliError::Usage(format!(
            "cannot read the client configuration {}: {source} (pass --config FILE or set FLOTTA_CONFIG)",
            path.display()
        )),
        other => other.into(),
    })
}

/// `KIND NAME`, or `KIND/NAME` in the first argument.
pub(crate) fn kind_and_name(kind: &str, name: Option<String>) -> Result<(Kind, String), CliError> {
    match (kind.contains('/'), name) {
        (true, None) => parse_reference(kind, None).map_err(CliError::Usage),
        (true, Some(_)) => Err(CliError::Usage(format!(
            "{kind}: give either KIND/NAME or KIND NAME, not both"
        ))),
        (false, Some(name)) => Ok((kind.parse().map_err(usage)?, name)),
        (false, None) => Err(CliError::Usage(format!("{kind}: a name is required"))),
    }
}

fn usage(error: impl std::fmt::Display) -> CliError {
    CliError::Usage(error.to_string())
}

async fn get(global: &GlobalArgs, args: GetArgs) -> Result<(), CliError> {
    let (kind, name) = match args.kind.split_once('/') {
        Some(_) if args.name.is_some() => {
            return Err(CliError::Usage(format!(
                "{}: give either KIND/NAME or KIND NAME, not both",
                args.kind
            )));
        }
        Some(_) => {
            let (kind, name) = parse_reference(&args.kind, None).map_err(CliError::Usage)?;
            (kind, Some(name))
        }
        None => (args.kind.parse::<Kind>().map_err(usage)?, args.name.clone()),
    };
    if args.all_namespaces && name.is_some() {
        return Err(CliError::Usage(
            "a name cannot be combined with --all-namespaces".into(),
        ));
    }
    let client = client(global)?;
    let resource = kind.resource_type();
    let namespace = (!args.all_namespaces).then_some(global.namespace.as_str());
    let mut params = ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        limit: None,
        continue_token: None,
    };
    if let Some(object) = &args.for_object {
        if kind != Kind::Event {
            return Err(CliError::Usage(format!(
                "--for {object}: only events can be selected by the object they are about"
            )));
        }
        let (about, about_name) =
            parse_reference(object, Some(Kind::Device)).map_err(CliError::Usage)?;
        params = params.involving(about.resource_type(), &about_name);
    }
    let mut stdout = std::io::stdout().lock();

    if args.watch {
        if let Some(name) = &name {
            let by_name = format!("metadata.name={name}");
            params.field_selector = Some(match params.field_selector.take() {
                Some(other) => format!("{other},{by_name}"),
                None => by_name,
            });
        }
        return watch(
            &client,
            kind,
            namespace,
            &params,
            args.output,
            args.all_namespaces,
        )
        .await;
    }

    let objects = match &name {
        Some(name) => vec![client.get_raw(resource, &global.namespace, name).await?],
        None => {
            params.limit = Some(args.chunk_size.max(1));
            let mut items = Vec::new();
            loop {
                let page = client.list_raw(resource, namespace, &params).await?;
                items.extend(page.items);
                match page.continue_token {
                    Some(token) => params.continue_token = Some(token),
                    None => break,
                }
            }
            items
        }
    };
    let mut objects = objects;
    if kind == Kind::Event {
        // Oldest first, newest last, as kubectl shows them.
        objects.sort_by_key(|o| output::event_time(o).unwrap_or_default().to_owned());
    }
    match args.output {
        Format::Table | Format::Wide => {
            if objects.is_empty() {
                match namespace {
                    Some(ns) => eprintln!("No {} found in namespace {ns}.", kind.plural()),
                    None => eprintln!("No {} found.", kind.plural()),
                }
                return Ok(());
            }
            let rows = output::table_rows(
                kind,
                &objects,
                args.output == Format::Wide,
                args.all_namespaces,
            );
            output::write_aligned(&mut stdout, &rows)?;
        }
        Format::Yaml | Format::Json if name.is_some() => {
            for object in &objects {
                output::write_object(&mut stdout, args.output, object)?;
            }
        }
        format => output::write_objects(&mut stdout, format, kind, &objects)?,
    }
    Ok(())
}

/// Streams changes; a table prints its header once and one row per event, padded
/// to the header widths (a stream cannot know its widest cell ahead).
async fn watch(
    client: &ManagementClient,
    kind: Kind,
    namespace: Option<&str>,
    params: &ListParams,
    format: Format,
    all_namespaces: bool,
) -> Result<(), CliError> {
    // Fail fast with a clear error when the server is unreachable or refuses.
    client
        .list_raw(
            kind.resource_type(),
            namespace,
            &ListParams {
                limit: Some(1),
                ..params.clone()
            },
        )
        .await?;
    let mut events = Box::pin(client.watch_raw(kind.resource_type(), namespace, params));
    let wide = format == Format::Wide;
    let mut widths: Option<Vec<usize>> = None;
    while let Some(event) = events.next().await {
        let objects = match event {
            Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => {
                vec![o]
            }
            Ok(WatchEvent::Restarted(objects)) => objects,
            Err(error) if error.is_retryable() => {
                eprintln!("warning: {}; reconnecting", crate::one_line(&error));
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let mut stdout = std::io::stdout().lock();
        match format {
            Format::Table | Format::Wide => {
                let rows = output::table_rows(kind, &objects, wide, all_namespaces);
                let (header, body) = rows
                    .split_first()
                    .map_or((None, &[][..]), |(h, b)| (Some(h), b));
                if widths.is_none() {
                    let header = header.cloned().unwrap_or_default();
                    let fixed: Vec<usize> = header
                        .iter()
                        .map(|h| h.len().max(WATCH_COLUMN_WIDTH))
                        .collect();
                    print_padded(&mut stdout, &fixed, std::slice::from_ref(&header))?;
                    widths = Some(fixed);
                }
                print_padded(&mut stdout, widths.as_deref().unwrap_or_default(), body)?;
            }
            Format::Json => {
                for object in &objects {
                    writeln!(
                        stdout,
                        "{}",
                        serde_json::to_string(object).map_err(std::io::Error::other)?
                    )?;
                }
            }
            Format::Yaml => {
                for object in &objects {
                    writeln!(stdout, "---")?;
                    output::write_object(&mut stdout, format, object)?;
                }
            }
            Format::Name => output::write_objects(&mut stdout, format, kind, &objects)?,
        }
        stdout.flush()?;
    }
    Ok(())
}

/// Least width of a column while watching.
const WATCH_COLUMN_WIDTH: usize = 12;

/// Prints rows padded to `widths`, three spaces apart.
fn print_padded(
    out: &mut impl Write,
    widths: &[usize],
    rows: &[Vec<String>],
) -> Result<(), CliError> {
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The `kind/name` the command line prints for an object of `kind` (a manifest's
/// `kind` field).
fn printed_object(kind: Option<&str>, name: Option<&str>) -> String {
    match (kind, name) {
        (Some(kind), Some(name)) => format!(
            "{}/{name}",
            Kind::from_kind_field(kind)
                .map_or_else(|| kind.to_lowercase(), |k| k.singular().to_owned())
        ),
        _ => "object".into(),
    }
}

/// What kubectl appends to a line of a dry run.
fn dry_run_suffix(mode: DryRunMode) -> &'static str {
    match mode {
        DryRunMode::None => "",
        DryRunMode::Client => " (dry run)",
        DryRunMode::Server => " (server dry run)",
    }
}

/// `apply`: every document of every source, in order; a failed document does not
/// stop the others. With `-l` only the documents the selector selects are applied
/// (as kubectl). With `--prune`, once every document applied, the objects the
/// selector selects that the input does not hold are deleted; after any failure
/// nothing is pruned, since an object whose document failed would be taken for
/// one the input dropped.
async fn apply(global: &GlobalArgs, args: ApplyArgs) -> Result<(), CliError> {
    let selector: Option<Selector> = args
        .selector
        .as_deref()
        .map(|text| {
            text.parse()
                .map_err(|error: flotta_core::selector::SelectorError| {
                    CliError::Usage(format!("invalid selector {text:?}: {error}"))
                })
        })
        .transpose()?;
    if args.prune && selector.as_ref().is_none_or(Selector::is_everything) {
        return Err(CliError::Usage(
            "--prune needs a label selector (-l/--selector) that the objects this apply manages carry: \
             without one every object of the input's kinds that the input does not name would be deleted"
                .into(),
        ));
    }
    let sources = crate::manifest::read_sources(&args.files, args.recursive)?;
    let client = client(global)?;
    let dry_run = match args.dry_run {
        DryRunMode::None => DryRun::None,
        DryRunMode::Client => DryRun::Client,
        DryRunMode::Server => DryRun::Server,
    };
    let suffix = dry_run_suffix(args.dry_run);
    let server_side = match (args.server_side, dry_run) {
        (false, _) if args.force_conflicts => {
            return Err(CliError::Usage(
                "--force-conflicts only applies to --server-side".into(),
            ));
        }
        (false, _) => None,
        (true, DryRun::Client) => {
            return Err(CliError::Usage(
                "--dry-run=client cannot tell what a server-side apply would do: use --dry-run=server"
                    .into(),
            ));
        }
        (true, _) => {
            let mut options = ServerSideApply::new(args.field_manager.clone());
            if args.force_conflicts {
                options = options.force();
            }
            if dry_run == DryRun::Server {
                options = options.dry_run();
            }
            Some(options)
        }
    };
    let mut failed = 0;
    let mut total = 0;
    let mut applied = BTreeSet::new();
    let mut stdout = std::io::stdout().lock();
    for source in sources {
        for (index, document) in flotta_client::parse_documents(&source.text) {
            let outcome = match document {
                Ok(document)
                    if selector
                        .as_ref()
                        .is_some_and(|s| !flotta_client::selects(s, &document)) =>
                {
                    continue;
                }
                Ok(document) => match &server_side {
                    Some(options) => {
                        client
                            .server_side_apply_document(index, &global.namespace, document, options)
                            .await
                    }
                    None => {
                        client
                            .apply_document_with(index, &global.namespace, document, dry_run)
                            .await
                    }
                },
                Err(error) => ApplyOutcome::unread(index, error),
            };
            total += 1;
            let object = printed_object(outcome.kind.as_deref(), outcome.name.as_deref());
            applied.extend(outcome.applied());
            match outcome.result {
                Ok(action) => {
                    writeln!(stdout, "{object} {}{suffix}", action.as_str())?;
                }
                Err(error) => {
                    failed += 1;
                    let message = match error {
                        flotta_client::ClientError::Manifest { message, .. } => message,
                        other => crate::one_line(&other),
                    };
                    eprintln!(
                        "error: {}: document {}: {object}: {message}",
                        source.name, outcome.index
                    );
                }
            }
        }
    }
    stdout.flush()?;
    if total == 0 {
        return Err(CliError::Usage(match &args.selector {
            Some(text) => format!("no objects in the given manifests match the selector {text:?}"),
            None => "no objects found in the given manifests".into(),
        }));
    }
    if failed > 0 {
        let pruned = if args.prune {
            "; nothing was pruned"
        } else {
            ""
        };
        return Err(CliError::Failed(format!(
            "{failed} of {total} documents failed to apply{pruned}"
        )));
    }
    if let (true, Some(selector)) = (args.prune, &selector) {
        let mut failed = 0;
        for outcome in client.prune(selector, &applied, dry_run).await? {
            let key = &outcome.object;
            let object = format!("{}/{}", key.kind.singular(), key.name);
            match outcome.result {
                Ok(()) => writeln!(stdout, "{object} pruned{suffix}")?,
                Err(error) => {
                    failed += 1;
                    eprintln!("error: pruning {object}: {}", crate::one_line(&error));
                }
            }
        }
        stdout.flush()?;
        if failed > 0 {
            return Err(CliError::Failed(format!(
                "{failed} object(s) could not be pruned"
            )));
        }
    }
    Ok(())
}

async fn delete(global: &GlobalArgs, kind: &str, names: Vec<String>) -> Result<(), CliError> {
    let targets: Vec<(Kind, String)> = if kind.contains('/') {
        let mut targets = vec![parse_reference(kind, None).map_err(CliError::Usage)?];
        for name in names {
            targets.push(parse_reference(&name, None).map_err(CliError::Usage)?);
        }
        targets
    } else {
        let kind: Kind = kind.parse().map_err(usage)?;
        if names.is_empty() {
            return Err(CliError::Usage(format!(
                "delete {}: at least one name is required",
                kind.plural()
            )));
        }
        names.into_iter().map(|n| (kind, n)).collect()
    };
    let client = client(global)?;
    let mut stdout = std::io::stdout().lock();
    for (kind, name) in targets {
        client
            .delete_raw(kind.resource_type(), &global.namespace, &name)
            .await?;
        writeln!(stdout, "{}/{name} deleted", kind.singular())?;
    }
    Ok(())
}

/// `approve` or `deny`: the requests named, or with `--all` every pending one
/// (neither approved nor denied) matching the selector.
async fn decide(
    global: &GlobalArgs,
    requests: EnrolmentRequests,
    approve: bool,
) -> Result<(), CliError> {
    let EnrolmentRequests {
        names,
        all,
        selector,
    } = requests;
    let (verb, done) = if approve {
        ("approve", "approved")
    } else {
        ("deny", "denied")
    };
    let client = client(global)?;
    let resource = Kind::SignedRequest.resource_type();
    let targets: Vec<String> = if all {
        let params = ListParams {
            label_selector: selector,
            ..ListParams::default()
        };
        let mut pending = Vec::new();
        let mut params = params;
        loop {
            let page = client
                .list_raw(resource, Some(&global.namespace), &params)
                .await?;
            for item in page.items {
                let decided = flotta_core::columns::enrolment_state(&item) != "Pending";
                if let (false, Some(name)) = (
                    decided,
                    item.pointer("/metadata/name").and_then(Value::as_str),
                ) {
                    pending.push(name.to_owned());
                }
            }
            match page.continue_token {
                Some(token) => params.continue_token = Some(token),
                None => break,
            }
        }
        pending
    } else {
        if names.is_empty() {
            return Err(CliError::Usage(format!(
                "{verb}: give edsr/NAME (one or more) or --all"
            )));
        }
        names
            .iter()
            .map(|n| match parse_reference(n, Some(Kind::SignedRequest)) {
                Ok((Kind::SignedRequest, name)) => Ok(name),
                Ok((other, _)) => Err(CliError::Usage(format!(
                    "{n}: only enrolment requests (edsr) can be {done}, not {other}"
                ))),
                Err(message) => Err(CliError::Usage(message)),
            })
            .collect::<Result<_, _>>()?
    };
    let mut stdout = std::io::stdout().lock();
    if targets.is_empty() {
        eprintln!(
            "No pending enrolment requests in namespace {}.",
            global.namespace
        );
    }
    for name in targets {
        if approve {
            client.approve(&global.namespace, &name).await?;
        } else {
            client.deny(&global.namespace, &name).await?;
        }
        writeln!(stdout, "{}/{name} {done}", Kind::SignedRequest.singular())?;
    }
    Ok(())
}

/// A parsed label change: set `key` to a value, or remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelChange {
    Set(String, String),
    Remove(String),
}

fn parse_label_change(text: &str) -> Result<LabelChange, CliError> {
    let bad = |why: String| CliError::Usage(format!("invalid label change {text:?}: {why}"));
    if let Some((key, value)) = text.split_once('=') {
        flotta_core::validation::label_key(key).map_err(bad)?;
        flotta_core::validation::label_value(value).map_err(bad)?;
        Ok(LabelChange::Set(key.to_owned(), value.to_owned()))
    } else if let Some(key) = text.strip_suffix('-') {
        flotta_core::validation::label_key(key).map_err(bad)?;
        Ok(LabelChange::Remove(key.to_owned()))
    } else {
        Err(bad("expected KEY=VALUE or KEY-".into()))
    }
}

async fn label(
    global: &GlobalArgs,
    object: &str,
    changes: &[String],
    overwrite: bool,
) -> Result<(), CliError> {
    let (kind, name) = parse_reference(object, None).map_err(CliError::Usage)?;
    let changes: Vec<LabelChange> = changes
        .iter()
        .map(|c| parse_label_change(c))
        .collect::<Result<_, _>>()?;
    let client = client(global)?;
    let resource = kind.resource_type();
    // The patch carries the resourceVersion it was computed from, so a change made
    // since the read (another user's, or the server's own status update) is never
    // overwritten blindly: on a conflict the object is read again, the --overwrite
    // check made again on what is there now, and the patch sent once more.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = client.get_raw(resource, &global.namespace, &name).await?;
        let body = label_patch(&current, &changes, overwrite, kind.singular(), &name)?;
        match client
            .patch_raw(resource, &global.namespace, &name, &body)
            .await
        {
            Ok(_) => break,
            Err(error) if error.is_conflict() && attempt < LABEL_ATTEMPTS => continue,
            Err(error) => return Err(error.into()),
        }
    }
    writeln!(std::io::stdout(), "{}/{name} labeled", kind.singular())?;
    Ok(())
}

/// How often `flotta label` reads and patches again when the object changed between
/// its read and its write.
const LABEL_ATTEMPTS: u32 = 5;

/// The merge patch that applies `changes` to the labels of `current`, pinned to the
/// resourceVersion it was computed from.
fn label_patch(
    current: &Value,
    changes: &[LabelChange],
    overwrite: bool,
    singular: &str,
    name: &str,
) -> Result<Value, CliError> {
    let existing = current
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut patch = Map::new();
    for change in changes {
        match change {
            LabelChange::Set(key, value) => {
                if let Some(old) = existing.get(key).and_then(Value::as_str)
                    && old != value
                    && !overwrite
                {
                    return Err(CliError::Usage(format!(
                        "{singular}/{name} already has label {key}={old}; pass --overwrite to change it"
                    )));
                }
                patch.insert(key.clone(), Value::String(value.clone()));
            }
            LabelChange::Remove(key) => {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    let mut metadata = Map::new();
    metadata.insert("labels".into(), Value::Object(patch));
    if let Some(rv) = current.pointer("/metadata/resourceVersion") {
        metadata.insert("resourceVersion".into(), rv.clone());
    }
    Ok(serde_json::json!({ "metadata": metadata }))
}

/// Reads `--from-literal` and `--from-file` into keys and bytes; a key given twice
/// is refused, as kubectl does.
fn data_entries(source: &DataSource) -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for literal in &source.from_literal {
        let Some((key, value)) = literal.split_once('=') else {
            // The text may be a value: never echoed.
            return Err(CliError::Usage(
                "--from-literal needs KEY=VALUE (no '=' found)".into(),
            ));
        };
        entries.push((key.to_owned(), value.as_bytes().to_vec()));
    }
    for file in &source.from_file {
        let (key, path) = match file.split_once('=') {
            Some((key, path)) => (key.to_owned(), path.to_owned()),
            None => {
                let key = std::path::Path::new(file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (key, file.clone())
            }
        };
        let bytes = std::fs::read(&path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        entries.push((key, bytes));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in &entries {
        flotta_core::secret_data::check_key(key)
            .map_err(|problem| CliError::Usage(format!("invalid key {key:?}: {problem}")))?;
        if !seen.insert(key.as_str()) {
            return Err(CliError::Usage(format!("key {key:?} is given twice")));
        }
    }
    Ok(entries)
}

/// The body `create` sends (`data` base64 for secrets; text `data` or, for bytes
/// that are not UTF-8, `binaryData` for config maps).
fn data_object(kind: Kind, name: &str, entries: Vec<(String, Vec<u8>)>) -> serde_json::Value {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut data = serde_json::Map::new();
    let mut binary = serde_json::Map::new();
    for (key, bytes) in entries {
        match kind {
            Kind::Secret => {
                data.insert(key, encode(&bytes).into());
            }
            _ => match String::from_utf8(bytes) {
                Ok(text) => {
                    data.insert(key, text.into());
                }
                Err(e) => {
                    binary.insert(key, encode(e.as_bytes()).into());
                }
            },
        }
    }
    let mut object = serde_json::json!({
        "apiVersion": "v1",
        "kind": kind.resource_type().as_str(),
        "metadata": {"name": name},
        "data": data,
    });
    if kind == Kind::Secret {
        object["type"] = "Opaque".into();
    } else if !binary.is_empty() {
        object["binaryData"] = binary.into();
    }
    object
}

async fn create(global: &GlobalArgs, what: CreateCommand) -> Result<(), CliError> {
    let (kind, source) = match what {
        CreateCommand::Secret {
            kind: SecretKind::Generic(source),
        } => (Kind::Secret, source),
        CreateCommand::Configmap(source) => (Kind::ConfigMap, source),
    };
    let object = data_object(kind, &source.name, data_entries(&source)?);
    let client = client(global)?;
    client
        .create_raw(kind.resource_type(), &global.namespace, &object)
        .await?;
    writeln!(
        std::io::stdout().lock(),
        "{}/{} created",
        kind.singular(),
        source.name
    )?;
    Ok(())
}

/// `flotta kubeconfig`: the client configuration as a kubeconfig for kubectl.
fn kubeconfig(
    global: &GlobalArgs,
    token: Option<String>,
    output: Option<PathBuf>,
) -> Result<(), CliError> {
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let text = std::fs::read_to_string(&path).map_err(|source| CliError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut config = flotta_core::client_config::ClientConfig::from_yaml(&text, &path)
        .map_err(|error| CliError::Usage(error.to_string()))?;
    if let Some(token) = token {
        config.token = token;
    }
    let yaml = serde_yaml_ng::to_string(&config.kubeconfig(&global.namespace))
        .map_err(std::io::Error::other)?;
    match output {
        None => std::io::stdout().lock().write_all(yaml.as_bytes())?,
        Some(file) => write_private(&file, yaml.as_bytes())?,
    }
    Ok(())
}

/// Writes `bytes` to `path` readable by its owner only: a kubeconfig holds a token.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // An existing file keeps its mode on open: narrow it too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

fn crds() -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    write!(
        stdout,
        "{}",
        crate::describe::crds_yaml().map_err(CliError::Failed)?
    )?;
    Ok(())
}

fn validate(files: &[String], recursive: bool) -> Result<(), CliError> {
    let sources = crate::manifest::read_sources(files, recursive)?;
    let mut problems = 0;
    let mut documents = 0;
    for source in &sources {
        let (count, found) = crate::manifest::check(&source.text);
        documents += count;
        problems += found.len();
        for problem in found {
            let object = problem
                .object
                .map(|o| format!(" ({o})"))
                .unwrap_or_default();
            let path = problem.path.map(|p| format!("{p}: ")).unwrap_or_default();
            eprintln!(
                "{}: document {}{object}: {path}{}",
                source.name, problem.index, problem.message
            );
        }
    }
    if problems > 0 {
        return Err(CliError::Failed(format!(
            "{problems} problem(s) in {documents} document(s) of {} file(s)",
            sources.len()
        )));
    }
    println!(
        "{documents} document(s) in {} file(s) are valid",
        sources.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes_set_or_remove_and_are_checked() {
        assert_eq!(
            parse_label_change("site=lab").ok(),
            Some(LabelChange::Set("site".into(), "lab".into()))
        );
        assert_eq!(
            parse_label_change("site-").ok(),
            Some(LabelChange::Remove("site".into()))
        );
        assert_eq!(
            parse_label_change("site=").ok(),
            Some(LabelChange::Set("site".into(), String::new()))
        );
        assert!(parse_label_change("site").is_err());
        assert!(parse_label_change("bad key=x").is_err());
        assert!(parse_label_change(&format!("k={}", "v".repeat(64))).is_err());
    }

    #[test]
    fn a_slash_reference_and_a_name_do_not_mix() {
        assert!(kind_and_name("device/a", Some("b".into())).is_err());
        assert_eq!(
            kind_and_name("device/a", None).ok(),
            Some((Kind::Device, "a".into()))
        );
        assert_eq!(
            kind_and_name("ew", Some("w".into())).ok(),
            Some((Kind::Workload, "w".into()))
        );
        assert!(kind_and_name("pods", Some("w".into())).is_err());
    }
}
