//! Operator controls of workload rollouts: status, history, pause, resume, approval
//! of the next batch and undo. What each control means is decided in
//! [`flotta_core::reconcile::revision`]; these calls only write the annotations and
//! spec it reads.

use flotta_core::model::EdgeWorkload;
use flotta_core::reconcile::{
    PAUSED_ANNOTATION, RolloutRecord, WorkloadRevision, approve_next_batch,
};
use serde_json::{Value, json};

use crate::error::{ClientError, ClientResult};
use crate::management::ManagementClient;

fn no_rollout(name: &str, message: &str) -> ClientError {
    ClientError::Rollout {
        workload: name.to_owned(),
        message: message.to_owned(),
    }
}

impl ManagementClient {
    /// The rollout record of a workload (`status.rollout`); `None` before the server
    /// has recorded one.
    pub async fn rollout_status(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Option<RolloutRecord>> {
        let workload: EdgeWorkload = self.get(namespace, name).await?;
        Ok(RolloutRecord::of(&workload))
    }

    /// The revisions the server keeps of a workload, oldest first.
    pub async fn rollout_history(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Vec<WorkloadRevision>> {
        Ok(self
            .rollout_status(namespace, name)
            .await?
            .map(|record| record.revisions)
            .unwrap_or_default())
    }

    /// Pauses a workload's rollout: nothing more is given or released until
    /// [`resume_rollout`](Self::resume_rollout).
    pub async fn pause_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}});
        self.patch(namespace, name, &patch).await
    }

    /// Resumes a rollout paused by [`pause_rollout`](Self::pause_rollout).
    pub async fn resume_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: Value::Null}}});
        self.patch(namespace, name, &patch).await
    }

    /// Approves the next batch of a rollout whose policy asks for `manualApproval`.
    /// Fails with [`ClientError::Rollout`] when no rollout is in progress.
    pub async fn approve_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        let record = self.rollout_status(namespace, name).await?;
        let (key, value) = record
            .as_ref()
            .and_then(approve_next_batch)
            .ok_or_else(|| no_rollout(name, "no rollout in progress, nothing to approve"))?;
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.patch(namespace, name, &patch).await
    }

    /// Rolls a workload back to its previous revision: its spec becomes that
    /// revision's again (keeping today's targets and `rolloutPolicy`), which the server rolls out like any change (at once when
    /// the rollout being undone never completed). Fails with
    /// [`ClientError::Rollout`] when there is no previous revision, and with a
    /// conflict when the workload changed meanwhile.
    pub async fn undo_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        let mut workload: EdgeWorkload = self.get(namespace, name).await?;
        let record = RolloutRecord::of(&workload)
            .ok_or_else(|| no_rollout(name, "the server has recorded no revision yet"))?;
        let target = record
            .undo_target()
            .ok_or_else(|| no_rollout(name, "there is no previous revision to go back to"))?;
        // What devices run comes back; where and how it rolls out stay as they are.
        let mut spec = target.spec.clone();
        spec.rollout_policy = workload.spec.rollout_policy.take();
        spec.device_selector = workload.spec.device_selector.take();
        spec.device = workload.spec.device.take();
        workload.spec = spec;
        self.replace(namespace, &workload).await
    }
}
