//! Fuzzes the label selector parser: no input may panic, and every accepted
//! selector must read back from its canonical text.
#![no_main]

use flotta_core::selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = text.parse::<Selector>() {
        let canonical = selector.to_string();
        let reparsed: Selector = canonical.parse().unwrap_or_else(|e| {
            panic!("canonical form {canonical:?} of {text:?} does not parse: {e}")
        });
        assert_eq!(reparsed, selector, "{text:?} -> {canonical:?}");
        assert_eq!(reparsed.to_string(), canonical);
    }
});
