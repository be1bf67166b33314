//! The `ansible` directive: a device asks for the playbook executions it should
//! run. Answered as Flotta does, with the list as a JSON text in `content`
//! (`[{"name", "ansible_playbook_string", ...}]`); which executions a device is sent
//! is [`flotta_core::ansible::served_executions`]'s decision. Beyond Flotta, a device
//! with none is answered 200 with `[]` (Flotta answers 500).

use flotta_core::ansible::served_executions;
use flotta_core::enrolment::{Directive, Effect, Failure};
use flotta_core::model::{EdgeDevice, PlaybookExecution};
use flotta_core::pki::PeerIdentity;
use flotta_core::wire::Message;
use serde_json::Value;

use super::{ApiError, ApiResult, Authorised, device_record, get_object, posted_reply};
use crate::edge::EdgeState;
use crate::store::ResourceKind;

pub(super) async fn serve(state: &EdgeState, who: &Authorised, envelope: &Message) -> ApiResult {
    let device_id = who.device_id.as_str();
    let PeerIdentity::Device { namespace, .. } = &who.identity else {
        return Err(ApiError::failed(
            Failure::Internal,
            "an ansible request was authorised without a device certificate",
        ));
    };
    let stored = get_object(state, ResourceKind::EdgeDevice, namespace, device_id).await?;
    let decision = who.answer(state, Directive::Ansible, device_record(stored.as_ref()))?;
    let Some(stored) = stored.filter(|_| decision.effect == Effect::ServePlaybooks) else {
        return Ok(posted_reply(decision.status, envelope, Value::Null));
    };
    let device: EdgeDevice = stored
        .to_resource()
        .map_err(|e| ApiError::store("read device", &e))?;
    let executions: Vec<PlaybookExecution> = if device.metadata.deletion_timestamp.is_none() {
        crate::playbooks::execution_of_device(state.store().as_ref(), namespace, &device)
            .await
            .map_err(|e| ApiError::store("read playbook execution", &e))?
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let served = served_executions(device_id, device.metadata.labels.as_ref(), &executions);
    let text = serde_json::to_string(&served)
        .map_err(|e| ApiError::failed(Failure::Internal, format!("playbook executions: {e}")))?;
    Ok(posted_reply(decision.status, envelope, Value::String(text)))
}
