//! `PATCH` with `Content-Type: application/apply-patch+yaml` on an object's path:
//! Kubernetes' server-side apply (`kubectl apply --server-side`). The field
//! ownership rules are [`crate::api::apply`]'s; this module reads the request,
//! creates the object when it does not exist (which takes RBAC's `create` as well
//! as `patch`), and answers a conflict with 409 naming every field and its owner.

use axum::http::StatusCode;
use flotta_core::rbac::{RequestAttributes, ResourceAttributes};
use serde_json::Value;

use super::{
    ApiResult, PATCH_ATTEMPTS, WriteParams, after_write, dry_run_response, fetch_optional,
    object_response, strip_server_fields,
};
use crate::api::ApiState;
use crate::api::apply::{self, Conflict, Writer};
use crate::api::auth::{Caller, rbac_decision};
use crate::api::object::{Target, admit, expected_resource_version};
use crate::api::status::{ApiError, StatusCause};
use crate::store::{DryRunWrite, ResourceKind, StoreError};

/// Applies `config` to the object `kind` `namespace`/`name` for the request's
/// field manager.
pub(super) async fn server_side_apply(
    state: &ApiState,
    caller: Option<&Caller>,
    target: &Target<'_>,
    params: &WriteParams,
    mut config: Value,
) -> ApiResult {
    let Target {
        kind,
        namespace,
        name,
    } = *target;
    let name = name.unwrap_or_default();
    let Some(manager) = params.field_manager.as_deref().filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "fieldManager is required for apply requests: name the tool that owns the \
             applied fields (kubectl apply --server-side sends `kubectl`)",
        ));
    };
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "an apply configuration must be a YAML or JSON object",
        ));
    }
    match config.pointer("/metadata/name") {
        Some(Value::String(given)) if given == name => {}
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                kind,
                name,
                vec![StatusCause::required("metadata.name")],
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                kind,
                name,
                vec![StatusCause::invalid(
                    "metadata.name",
                    format!("is {other}, the request is for {name:?}"),
                )],
            ));
        }
    }
    // A resource version in the configuration is a precondition, as in Kubernetes.
    let precondition = expected_resource_version(&config);
    strip_server_fields(&mut config);
    let now = flotta_core::timestamp::rfc3339_seconds(time::OffsetDateTime::now_utc());
    let writer = Writer {
        manager,
        api_version: kind.info().api_version(),
        now: &now,
    };
    let force = params.force.unwrap_or(false);
    let dry = params.is_dry_run()?;

    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = fetch_optional(state, kind, namespace, name).await?;
        let Some(current) = current else {
            if let Some(expected) = precondition {
                return Err(ApiError::from(StoreError::Conflict {
                    kind,
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    expected,
                    actual: 0,
                }));
            }
            may_create(state, caller, kind, namespace).await?;
            let mut object = apply::server_side_apply(None, &config, writer, force)
                .map_err(|conflicts| conflict(kind, name, conflicts))?;
            admit(target, &mut object)?;
            if dry {
                let write = DryRunWrite::Create(object);
                return dry_run_response(state, StatusCode::CREATED, kind, namespace, name, write)
                    .await;
            }
            match state.store.create(kind, namespace, name, object).await {
                Ok(created) => {
                    after_write(state, kind);
                    return Ok(object_response(StatusCode::CREATED, &created));
                }
                Err(StoreError::AlreadyExists { .. }) if attempt < PATCH_ATTEMPTS => continue,
                Err(error) => return Err(error.into()),
            }
        };
        if let Some(expected) = precondition
            && expected != current.resource_version
        {
            return Err(ApiError::from(StoreError::Conflict {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                expected,
                actual: current.resource_version,
            }));
        }
        let mut object = apply::server_side_apply(Some(&current.body), &config, writer, force)
            .map_err(|conflicts| conflict(kind, name, conflicts))?;
        admit(target, &mut object)?;
        if object == current.body {
            // Nothing to change: no write, no new resource version.
            return Ok(object_response(StatusCode::OK, &current));
        }
        let expected = current.resource_version;
        if dry {
            let write = DryRunWrite::Update(Some(expected), object);
            return dry_run_response(state, StatusCode::OK, kind, namespace, name, write).await;
        }
        match state
            .store
            .update(kind, namespace, name, Some(expected), object)
            .await
        {
            Ok(updated) => {
                after_write(state, kind);
                return Ok(object_response(StatusCode::OK, &updated));
            }
            Err(StoreError::Conflict { .. })
                if precondition.is_none() && attempt < PATCH_ATTEMPTS =>
            {
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// 409 naming every conflicting field and its owner, in the words kubectl prints
/// before its advice (`--force-conflicts`, or leave the field out).
fn conflict(kind: ResourceKind, name: &str, conflicts: Vec<Conflict>) -> ApiError {
    let count = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    ApiError {
        code: StatusCode::CONFLICT,
        reason: "Conflict",
        message: format!(
            "Apply failed with {count} conflict{}: {}",
            if count == 1 { "" } else { "s" },
            lines.join("\n")
        ),
        object: Some((kind, name.to_owned())),
        causes: conflicts
            .into_iter()
            .map(|c| StatusCause {
                reason: "FieldManagerConflict",
                message: format!("conflict with \"{}\"", c.manager),
                field: c.field,
            })
            .collect(),
    }
}

/// An apply that creates needs RBAC's `create` on the collection besides the
/// `patch` the middleware checked.
async fn may_create(
    state: &ApiState,
    caller: Option<&Caller>,
    kind: ResourceKind,
    namespace: &str,
) -> ApiResult<()> {
    let Some(caller) = caller else {
        return Ok(());
    };
    let info = kind.info();
    let request = RequestAttributes::Resource(ResourceAttributes {
        verb: "create".into(),
        api_group: info.group.into(),
        resource: info.plural.into(),
        namespace: namespace.into(),
        ..ResourceAttributes::default()
    });
    let decision = rbac_decision(state, caller, &request).await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(decision.reason))
    }
}
