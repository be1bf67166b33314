//! Operator controls of rollouts, for workloads and device sets: status, history,
//! pause, resume, approval of the next batch and undo. What each control means is
//! decided in [`flotta_core::reconcile::revision`]; these calls only write the
//! annotations and spec it reads.
//!
//! The `*_of::<T>` calls take the kind as a type parameter ([`EdgeWorkload`] or
//! [`EdgeDeviceSet`](flotta_core::model::EdgeDeviceSet)); the calls without it act
//! on workloads.

use flotta_core::model::EdgeWorkload;
use flotta_core::reconcile::{
    PAUSED_ANNOTATION, RolloutRecord, RolloutSubject, WorkloadRevision, approve_next_batch,
};
use serde_json::{Value, json};

use crate::error::{ClientError, ClientResult};
use crate::management::{ApiObject, ManagementClient};

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
        self.rollout_status_of::<EdgeWorkload>(namespace, name)
            .await
    }

    /// The rollout record of a workload or device set `T` (`status.rollout`);
    /// `None` before the server has recorded one.
    pub async fn rollout_status_of<T: ApiObject + RolloutSubject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Option<RolloutRecord<T::Revision>>> {
        let object: T = self.get(namespace, name).await?;
        Ok(RolloutRecord::of(&object))
    }

    /// The revisions the server keeps of a workload, oldest first.
    pub async fn rollout_history(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Vec<WorkloadRevision>> {
        self.rollout_history_of::<EdgeWorkload>(namespace, name)
            .await
    }

    /// The revisions the server keeps of a workload or device set, oldest first.
    pub async fn rollout_history_of<T: ApiObject + RolloutSubject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Vec<T::Revision>> {
        Ok(self
            .rollout_status_of::<T>(namespace, name)
            .await?
            .map(|record| record.revisions)
            .unwrap_or_default())
    }

    /// Pauses a workload's rollout: nothing more is given or released until
    /// [`resume_rollout`](Self::resume_rollout).
    pub async fn pause_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        self.pause_rollout_of(namespace, name).await
    }

    /// Pauses the rollout of a workload or device set.
    pub async fn pause_rollout_of<T: ApiObject + RolloutSubject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<T> {
        let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}});
        self.patch(namespace, name, &patch).await
    }

    /// Resumes a rollout paused by [`pause_rollout`](Self::pause_rollout).
    pub async fn resume_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        self.resume_rollout_of(namespace, name).await
    }

    /// Resumes the paused rollout of a workload or device set.
    pub async fn resume_rollout_of<T: ApiObject + RolloutSubject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<T> {
        let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: Value::Null}}});
        self.patch(namespace, name, &patch).await
    }

    /// Approves the next batch of a rollout whose policy asks for `manualApproval`.
    /// Fails with [`ClientError::Rollout`] when no rollout is in progress.
    pub async fn approve_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        self.approve_rollout_of(namespace, name).await
    }

    /// Approves the next batch of a workload's or device set's rollout.
    pub async fn approve_rollout_of<T: ApiObject + RolloutSubject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<T> {
        let record = self.rollout_status_of::<T>(namespace, name).await?;
        let (key, value) = record
            .as_ref()
            .and_then(approve_next_batch)
            .ok_or_else(|| no_rollout(name, "no rollout in progress, nothing to approve"))?;
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.patch(namespace, name, &patch).await
    }

    /// Rolls a workload back to its previous revision: its spec becomes that
    /// revision's again (keeping today's targets and `rolloutPolicy`), which the
    /// server rolls out like any change (at once when the rollout being undone never
    /// completed). Fails with [`ClientError::Rollout`] when there is no previous
    /// revision, and with a conflict when the workload changed meanwhile.
    pub async fn undo_rollout(&self, namespace: &str, name: &str) -> ClientResult<EdgeWorkload> {
        self.undo_rollout_of(namespace, name).await
    }

    /// Rolls a workload or device set back to its previous revision
    /// ([`RolloutSubject::undo_to`]), itself rolled out like any change.
    pub async fn undo_rollout_of<T: ApiObject + RolloutSubject>(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<T> {
        let object: T = self.get(namespace, name).await?;
        let record = RolloutRecord::of(&object)
            .ok_or_else(|| no_rollout(name, "the server has recorded no revision yet"))?;
        let target = record
            .undo_target()
            .ok_or_else(|| no_rollout(name, "there is no previous revision to go back to"))?;
        self.replace(namespace, &object.undo_to(target)).await
    }
}
