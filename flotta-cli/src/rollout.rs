//! `flotta rollout status|pause|resume|approve|undo|history workload/NAME|set/NAME`.

use std::io::Write;

use flotta_client::ApiObject;
use flotta_core::model::{EdgeDeviceSet, EdgeWorkload};
use flotta_core::reconcile::{RevisionEntry, RolloutRecord, RolloutSubject};

use crate::commands::{client, kind_and_name};
use crate::kind::Kind;
use crate::{CliError, GlobalArgs, RolloutCommand};

/// Runs a `rollout` subcommand on a workload or a device set, refusing other kinds
/// with the reason.
pub async fn run(global: &GlobalArgs, command: RolloutCommand) -> Result<(), CliError> {
    let object = match &command {
        RolloutCommand::Status(object)
        | RolloutCommand::Pause(object)
        | RolloutCommand::Resume(object)
        | RolloutCommand::Approve(object)
        | RolloutCommand::Undo(object)
        | RolloutCommand::History(object) => object,
    };
    let (kind, name) = kind_and_name(&object.object, object.name.clone())?;
    match kind {
        Kind::Workload => run_on::<EdgeWorkload>(global, &command, "workload", &name).await,
        Kind::Set => run_on::<EdgeDeviceSet>(global, &command, "set", &name).await,
        other => Err(CliError::Usage(format!(
            "{other:?}/{name}: only workloads (workload/NAME) and device sets (set/NAME) have rollouts"
        ))),
    }
}

async fn run_on<T: ApiObject + RolloutSubject>(
    global: &GlobalArgs,
    command: &RolloutCommand,
    kind: &str,
    name: &str,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let namespace = global.namespace.as_str();
    let client = client(global)?;
    let object = format!("{kind}/{name}");
    match command {
        RolloutCommand::Status(_) => match client.rollout_status_of::<T>(namespace, name).await? {
            Some(record) => write_status(&mut out, &object, &record)?,
            None => writeln!(out, "{object}: no rollout recorded yet")?,
        },
        RolloutCommand::History(_) => {
            let record = client
                .rollout_status_of::<T>(namespace, name)
                .await?
                .unwrap_or_default();
            writeln!(out, "REVISION  GENERATION  STATE")?;
            for revision in &record.revisions {
                let id = Some(revision.id());
                let state = if record.current_revision.as_deref() == id {
                    "current"
                } else if record.previous_revision.as_deref() == id {
                    "previous"
                } else {
                    ""
                };
                let generation = serde_json::to_value(revision)
                    .ok()
                    .and_then(|r| r.get("generation").and_then(serde_json::Value::as_i64))
                    .map_or_else(|| "-".to_owned(), |g| g.to_string());
                writeln!(out, "{}  {generation:>10}  {state}", revision.id())?;
            }
        }
        RolloutCommand::Pause(_) => {
            client.pause_rollout_of::<T>(namespace, name).await?;
            writeln!(out, "{object} rollout paused")?;
        }
        RolloutCommand::Resume(_) => {
            client.resume_rollout_of::<T>(namespace, name).await?;
            writeln!(out, "{object} rollout resumed")?;
        }
        RolloutCommand::Approve(_) => {
            let before = client.rollout_status_of::<T>(namespace, name).await?;
            client.approve_rollout_of::<T>(namespace, name).await?;
            let batch = before.map_or(0, |r| r.released_batches);
            writeln!(out, "{object} batch {batch} approved")?;
        }
        RolloutCommand::Undo(_) => {
            let before = client.rollout_status_of::<T>(namespace, name).await?;
            client.undo_rollout_of::<T>(namespace, name).await?;
            let target = before
                .as_ref()
                .and_then(RolloutRecord::undo_target)
                .map(|r| r.id().to_owned())
                .unwrap_or_default();
            writeln!(out, "{object} rolling back to revision {target}")?;
        }
    }
    Ok(())
}

fn write_status<R>(
    out: &mut impl Write,
    object: &str,
    record: &RolloutRecord<R>,
) -> std::io::Result<()> {
    let state = if record.complete {
        "complete".to_owned()
    } else if record.paused {
        format!(
            "paused ({}): {}",
            record.reason.as_deref().unwrap_or("Paused"),
            record.message.as_deref().unwrap_or_default()
        )
    } else {
        "progressing".to_owned()
    };
    writeln!(out, "{object}")?;
    writeln!(
        out,
        "current revision:  {}",
        record.current_revision.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "previous revision: {}",
        record.previous_revision.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "state:             {state}")?;
    writeln!(
        out,
        "current batch:     {} of {}",
        record.current_batch,
        record.batches.len()
    )?;
    writeln!(
        out,
        "BATCH  RELEASED  TARGETED  UPDATED  SUCCEEDED  FAILED  PENDING  REQUIRED"
    )?;
    for (index, batch) in record.batches.iter().enumerate() {
        writeln!(
            out,
            "{index:<5}  {:<8}  {:>8}  {:>7}  {:>9}  {:>6}  {:>7}  {:>8}",
            if batch.released { "yes" } else { "no" },
            batch.targeted,
            batch.updated,
            batch.succeeded,
            batch.failed,
            batch.pending,
            batch.required
        )?;
    }
    Ok(())
}
