//! `flotta rollout status|pause|resume|approve|undo|history workload/NAME`.

use std::io::Write;

use flotta_core::reconcile::RolloutRecord;

use crate::commands::{client, kind_and_name};
use crate::kind::Kind;
use crate::{CliError, GlobalArgs, RolloutCommand, RolloutObject};

/// The workload's name, refusing other kinds with the reason.
fn workload_name(object: &RolloutObject) -> Result<String, CliError> {
    let (kind, name) = kind_and_name(&object.object, object.name.clone())?;
    match kind {
        Kind::Workload => Ok(name),
        Kind::Set => Err(CliError::Usage(format!(
            "set/{name}: device-set rollouts are not staged yet; only workloads (workload/NAME) have rollouts"
        ))),
        other => Err(CliError::Usage(format!(
            "{other:?}/{name}: only workloads (workload/NAME) have rollouts"
        ))),
    }
}

/// Runs a `rollout` subcommand.
pub async fn run(global: &GlobalArgs, command: RolloutCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let namespace = global.namespace.as_str();
    match command {
        RolloutCommand::Status(object) => {
            let name = workload_name(&object)?;
            let record = client(global)?.rollout_status(namespace, &name).await?;
            match record {
                Some(record) => write_status(&mut out, &name, &record)?,
                None => writeln!(out, "workload/{name}: no rollout recorded yet")?,
            }
        }
        RolloutCommand::History(object) => {
            let name = workload_name(&object)?;
            let client = client(global)?;
            let record = client.rollout_status(namespace, &name).await?;
            let record = record.unwrap_or_default();
            writeln!(out, "REVISION  GENERATION  STATE")?;
            for revision in &record.revisions {
                let state = if record.current_revision.as_deref() == Some(&revision.revision) {
                    "current"
                } else if record.previous_revision.as_deref() == Some(&revision.revision) {
                    "previous"
                } else {
                    ""
                };
                let generation = revision
                    .generation
                    .map_or_else(|| "-".to_owned(), |g| g.to_string());
                writeln!(out, "{}  {generation:>10}  {state}", revision.revision)?;
            }
        }
        RolloutCommand::Pause(object) => {
            let name = workload_name(&object)?;
            client(global)?.pause_rollout(namespace, &name).await?;
            writeln!(out, "workload/{name} rollout paused")?;
        }
        RolloutCommand::Resume(object) => {
            let name = workload_name(&object)?;
            client(global)?.resume_rollout(namespace, &name).await?;
            writeln!(out, "workload/{name} rollout resumed")?;
        }
        RolloutCommand::Approve(object) => {
            let name = workload_name(&object)?;
            let client = client(global)?;
            let before = client.rollout_status(namespace, &name).await?;
            client.approve_rollout(namespace, &name).await?;
            let batch = before.map_or(0, |r| r.released_batches);
            writeln!(out, "workload/{name} batch {batch} approved")?;
        }
        RolloutCommand::Undo(object) => {
            let name = workload_name(&object)?;
            let client = client(global)?;
            let before = client.rollout_status(namespace, &name).await?;
            client.undo_rollout(namespace, &name).await?;
            let target = before
                .as_ref()
                .and_then(RolloutRecord::undo_target)
                .map(|r| r.revision.clone())
                .unwrap_or_default();
            writeln!(out, "workload/{name} rolling back to revision {target}")?;
        }
    }
    Ok(())
}

fn write_status(out: &mut impl Write, name: &str, record: &RolloutRecord) -> std::io::Result<()> {
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
    writeln!(out, "workload/{name}")?;
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
