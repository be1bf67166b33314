//! Fuzzes the Edge API request body path: the strict JSON check, then the message
//! envelope and each directive's content. No input may panic; whatever the strict
//! check accepts is valid JSON without duplicate keys.
#![no_main]

use flotta_core::strict_json;
use flotta_core::wire::{EnrolmentInfo, Heartbeat, Message, RegistrationInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if strict_json::check(data).is_err() {
        return;
    }
    serde_json::from_slice::<serde_json::Value>(data).expect("strictly valid JSON must parse");
    let Ok(message) = strict_json::from_slice::<Message>(data) else {
        return;
    };
    let _ = message.content_as::<Heartbeat>();
    let _ = message.content_as::<EnrolmentInfo>();
    let _ = message.content_as::<RegistrationInfo>();
    let text = serde_json::to_vec(&message).expect("a message serializes");
    let again: Message = serde_json::from_slice(&text).expect("a serialized message parses");
    assert_eq!(again.directive, message.directive);
});
