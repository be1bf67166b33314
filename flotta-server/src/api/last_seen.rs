//! Joins the last-seen table onto `EdgeDevice` objects served by the management API.
//!
//! Heartbeats write the server-stamped time to the store's last-seen table instead of
//! the device row, so the row never carries a current `status.lastSeen`. The API sets
//! it from the table before selecting and returning a device. A stored time always
//! replaces whatever `status.lastSeen` the row holds, even a later one: the table is
//! stamped by this server's clock on receipt, while the row's value may have been
//! written by any status client. A device with no stored time keeps the row's value.

use std::collections::HashMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::store::{LastSeen, ResourceKind, StoredObject};

/// Last-seen times of one list request, keyed by `(namespace, device)`.
pub(super) type LastSeenIndex = HashMap<(String, String), OffsetDateTime>;

/// Indexes the rows of one `last_seen_all` call.
pub(super) fn index_last_seen(rows: Vec<LastSeen>) -> LastSeenIndex {
    rows.into_iter()
        .map(|row| ((row.namespace, row.device), row.seen_at))
        .collect()
}

/// Sets `status.lastSeen` of an `EdgeDevice` to `seen_at` (RFC 3339, microseconds as
/// stored). Other kinds, and devices without a stored time, are left unchanged.
pub(super) fn overlay_last_seen(object: &mut StoredObject, seen_at: Option<OffsetDateTime>) {
    let Some(seen_at) = seen_at else {
        return;
    };
    if object.kind != ResourceKind::EdgeDevice {
        return;
    }
    let Some(body) = object.body.as_object_mut() else {
        return;
    };
    let status = body
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    if let Some(status) = status.as_object_mut() {
        status.insert(
            "lastSeen".into(),
            Value::String(flotta_core::timestamp::rfc3339(seen_at)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn stored(kind: ResourceKind, body: Value) -> StoredObject {
        StoredObject {
            kind,
            namespace: "ns".into(),
            name: "dev".into(),
            uid: "uid".into(),
            resource_version: 1,
            generation: 1,
            labels: Default::default(),
            creation_timestamp: datetime!(2026-01-01 00:00 UTC),
            deletion_timestamp: None,
            body,
        }
    }

    #[test]
    fn stored_time_replaces_a_later_row_value() {
        let mut device = stored(
            ResourceKind::EdgeDevice,
            json!({"status": {"phase": "up", "lastSeen": "2030-01-01T00:00:00Z"}}),
        );
        overlay_last_seen(&mut device, Some(datetime!(2026-03-04 05:06:07.123456 UTC)));
        assert_eq!(
            device.body["status"],
            json!({"phase": "up", "lastSeen": "2026-03-04T05:06:07.123456Z"})
        );
    }

    #[test]
    fn missing_status_is_created() {
        let mut device = stored(ResourceKind::EdgeDevice, json!({"spec": {}}));
        overlay_last_seen(&mut device, Some(datetime!(2026-03-04 05:06:07 UTC)));
        assert_eq!(device.body["status"]["lastSeen"], "2026-03-04T05:06:07Z");
    }

    #[test]
    fn no_stored_time_and_other_kinds_are_untouched() {
        let body = json!({"status": {"lastSeen": "2025-01-01T00:00:00Z"}});
        let mut device = stored(ResourceKind::EdgeDevice, body.clone());
        overlay_last_seen(&mut device, None);
        assert_eq!(device.body, body);
        let mut set = stored(ResourceKind::EdgeDeviceSet, json!({"spec": {}}));
        overlay_last_seen(&mut set, Some(datetime!(2026-03-04 05:06:07 UTC)));
        assert_eq!(set.body, json!({"spec": {}}));
    }

    #[test]
    fn index_joins_by_namespace_and_name() {
        let at = datetime!(2026-03-04 05:06:07 UTC);
        let index = index_last_seen(vec![LastSeen {
            namespace: "a".into(),
            device: "dev".into(),
            seen_at: at,
        }]);
        assert_eq!(index.get(&("a".into(), "dev".into())), Some(&at));
        assert_eq!(index.get(&("b".into(), "dev".into())), None);
    }
}
