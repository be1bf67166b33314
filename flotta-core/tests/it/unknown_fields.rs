//! Property: unknown members added anywhere our own types sit survive a parse and
//! serialize round trip unchanged.

use flotta_core::model::EdgeDevice;
use proptest::prelude::*;
use serde_json::{Value, json};

fn device() -> Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "dev-1"},
        "spec": {
            "heartbeat": {"periodSeconds": 5, "hardwareProfile": {"include": true}},
            "osInformation": {"commitID": "abc"},
            "mounts": [{"device": "/dev/sdb1", "folder": "/data"}]
        },
        "status": {"hardware": {"disks": [], "gpus": [], "interfaces": [{"flags": ["up"]}]}}
    })
}

/// JSON pointers of objects built from our own types (not k8s-openapi ones).
const OUR_OBJECTS: &[&str] = &[
    "",
    "/spec",
    "/spec/heartbeat",
    "/spec/heartbeat/hardwareProfile",
    "/spec/osInformation",
    "/spec/mounts/0",
    "/status",
    "/status/hardware",
    "/status/hardware/interfaces/0",
];

fn unknown_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9 ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn unknown_members_survive_a_round_trip(
        at in 0..OUR_OBJECTS.len(),
        key in "x[A-Za-z_]{1,10}",
        value in unknown_value(),
    ) {
        let mut input = device();
        let target = input
            .pointer_mut(OUR_OBJECTS[at])
            .and_then(Value::as_object_mut)
            .expect("fixture has the object");
        target.insert(key, value);
        let parsed: EdgeDevice = serde_json::from_value(input.clone()).expect("parses");
        let output = serde_json::to_value(&parsed).expect("serializes");
        prop_assert_eq!(output, input);
    }
}
