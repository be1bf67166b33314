//! The data loop: follows the [`DataPlan`] of the configuration in force and,
//! every period, uploads each workload's new and changed files from its export
//! directory to the bucket. A workload's `last_data_upload` (in the heartbeat) is
//! the start of its last pass that completed. With no `data.egress` in use
//! nothing runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use flotta_core::wire::DeviceConfigurationMessage;

use super::Agent;
use super::status::{DataStatus, lock};
use crate::data::{DataPlan, S3Client, WorkloadUpload};

impl Agent {
    /// The reasons the data upload `message` asks cannot be carried out here: the
    /// configuration's own problems, a runtime without export directories, no
    /// directory for the upload state.
    pub(super) fn unuploadable_data(&self, message: &DeviceConfigurationMessage) -> Vec<String> {
        let plan = match DataPlan::from_message(message) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Vec::new(),
            Err(problems) => return problems,
        };
        let workloads: Vec<&str> = plan.workloads.iter().map(|w| w.workload.as_str()).collect();
        let mut refused = Vec::new();
        if !self.runtime.exports_data() {
            refused.push(format!(
                "data.egress of workloads {}: this agent's workload runtime has no export directory to upload from",
                workloads.join(", ")
            ));
        }
        if self.data_dir.is_none() {
            refused.push(format!(
                "data.egress of workloads {}: the agent has no state directory to record its uploads",
                workloads.join(", ")
            ));
        }
        if let Err(error) = S3Client::new(&plan.bucket) {
            refused.push(error.to_string());
        }
        refused
    }

    /// Makes the data loop follow the configuration now in force.
    pub(super) fn follow_data(&self, message: &DeviceConfigurationMessage) {
        let plan = DataPlan::from_message(message).ok().flatten().map(Arc::new);
        self.data_plan.send_if_modified(|current| {
            if current.as_deref() == plan.as_deref() {
                return false;
            }
            tracing::info!(
                workloads = plan.as_ref().map_or(0, |p| p.workloads.len()),
                "data upload plan changed"
            );
            *current = plan;
            true
        });
    }

    /// Runs for as long as the agent runs; restarts with each new plan.
    pub(super) async fn data_loop(&self) {
        let mut plans = self.data_plan.subscribe();
        loop {
            let plan = plans.borrow_and_update().clone();
            match plan {
                None => self.shared.update(|s| s.data = None),
                Some(plan) => {
                    self.shared
                        .update(|s| s.data = Some(s.data.take().unwrap_or_default()));
                    tokio::select! {
                        () = self.upload_every_period(&plan) => {}
                        changed = plans.changed() => {
                            if changed.is_ok() {
                                continue;
                            }
                        }
                    }
                }
            }
            if plans.changed().await.is_err() {
                // The agent holds the sender for its whole life: not reached.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn upload_every_period(&self, plan: &DataPlan) {
        let (Some(dir), Ok(client)) = (self.data_dir.clone(), S3Client::new(&plan.bucket)) else {
            // Refused before the version was applied: not reached.
            return;
        };
        let mut uploads: BTreeMap<String, WorkloadUpload> = BTreeMap::new();
        let mut failing = false;
        loop {
            let mut failure = None;
            for workload in &plan.workloads {
                let Some(export) = self.runtime.export_dir(&workload.workload) else {
                    // Not running (yet): nothing to upload from.
                    continue;
                };
                let upload = uploads.entry(workload.workload.clone()).or_insert_with(|| {
                    WorkloadUpload::open(dir.join(format!("{}.json", workload.workload)))
                });
                let started = self.clock.now();
                match upload
                    .sync(
                        &client,
                        &self.device_id,
                        &export,
                        &workload.paths,
                        SystemTime::now(),
                    )
                    .await
                {
                    Ok(report) => {
                        if report.unsettled == 0 {
                            lock(&self.last_data_upload).insert(workload.workload.clone(), started);
                        }
                        self.shared.update(|s| {
                            if let Some(data) = s.data.as_mut() {
                                data.uploaded_files += report.files;
                                data.uploaded_parts += report.parts;
                                data.uploaded_bytes += report.bytes;
                            }
                        });
                    }
                    Err(reason) => {
                        failure = Some(format!("workload {}: {reason}", workload.workload));
                        // The others are tried; the failed one again next period.
                    }
                }
            }
            match failure {
                None => {
                    if failing {
                        self.shared.report(
                            "DataUploadResumed",
                            format!("uploads to bucket {} succeed again", plan.bucket.name),
                            false,
                        );
                    }
                    failing = false;
                    self.shared.update(|s| {
                        if let Some(data) = s.data.as_mut() {
                            data.last_error = None;
                        }
                    });
                }
                Some(reason) => {
                    if !failing {
                        tracing::warn!(%reason, "data upload failed");
                        self.shared.report(
                            "DataUploadFailed",
                            format!(
                                "{reason}; retried every {:?}, resuming where it stopped",
                                self.timing.data_sync_period
                            ),
                            true,
                        );
                    }
                    failing = true;
                    self.shared.update(|s| {
                        s.data.get_or_insert_with(DataStatus::default).last_error = Some(reason);
                    });
                }
            }
            self.clock.sleep(self.timing.data_sync_period).await;
        }
    }
}
