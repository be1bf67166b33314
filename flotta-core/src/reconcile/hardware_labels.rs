//! Labels derived from the hardware a device reports, as Flotta's operator sets
//! them: `device.hostname`, `device.cpu-architecture`, `device.cpu-model`,
//! `device.system-manufacturer`, `device.system-product`, `device.system-serial`.
//!
//! The server keeps these keys in step with the device's latest hardware report and
//! touches no other label, so a label an operator set under another key stays. An
//! operator who sets one of these keys by hand sees it replaced at the next report
//! that carries that value.
//!
//! ```
//! use std::collections::BTreeMap;
//! use flotta_core::model::Hardware;
//! use flotta_core::reconcile::relabel_from_hardware;
//!
//! let hardware: Hardware = serde_json::from_value(serde_json::json!({
//!     "hostname": "Cam-01.Lab", "disks": [], "gpus": [], "interfaces": [],
//!     "cpu": {"architecture": "x86_64", "modelName": "Intel(R) Core(TM) i7", "flags": []},
//! }))?;
//! let labels = BTreeMap::from([("site".to_owned(), "lab".to_owned())]);
//! let labels = relabel_from_hardware(&labels, &hardware).expect("changed");
//! assert_eq!(labels["device.hostname"], "cam-01.lab");
//! assert_eq!(labels["device.cpu-architecture"], "x86_64");
//! assert_eq!(labels["device.cpu-model"], "intelrcoretmi7");
//! assert_eq!(labels["site"], "lab");
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;

use crate::model::Hardware;

/// Label with the device's host name.
pub const HOSTNAME_LABEL: &str = "device.hostname";
/// Label with the processor architecture (`x86_64`, `aarch64`, ...).
pub const CPU_ARCHITECTURE_LABEL: &str = "device.cpu-architecture";
/// Label with the processor model.
pub const CPU_MODEL_LABEL: &str = "device.cpu-model";
/// Label with the machine's manufacturer.
pub const SYSTEM_MANUFACTURER_LABEL: &str = "device.system-manufacturer";
/// Label with the machine's product name.
pub const SYSTEM_PRODUCT_LABEL: &str = "device.system-product";
/// Label with the machine's serial number.
pub const SYSTEM_SERIAL_LABEL: &str = "device.system-serial";

/// Every label key derived from hardware: the keys [`relabel_from_hardware`] owns.
pub const HARDWARE_LABEL_KEYS: [&str; 6] = [
    HOSTNAME_LABEL,
    CPU_ARCHITECTURE_LABEL,
    CPU_MODEL_LABEL,
    SYSTEM_MANUFACTURER_LABEL,
    SYSTEM_PRODUCT_LABEL,
    SYSTEM_SERIAL_LABEL,
];

/// Longest label value Kubernetes accepts.
const MAX_VALUE_LEN: usize = 63;

/// `text` as a label value: lower case, cut to the span from its first to its last
/// ASCII letter or digit, with every character other than letters, digits, `-`,
/// `_` and `.` removed, at most 63 characters and again ending on a letter or digit.
/// `None` when nothing of it is a letter or digit.
pub fn label_value(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let legal = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let start = lower.find(legal)?;
    let end = lower.rfind(legal)?;
    let mut value: String = lower
        .get(start..=end)?
        .chars()
        .filter(|&c| legal(c) || matches!(c, '-' | '_' | '.'))
        .take(MAX_VALUE_LEN)
        .collect();
    while value.ends_with(|c: char| !legal(c)) {
        value.pop();
    }
    Some(value)
}

/// The hardware labels `hardware` yields, by key; a field that is absent or has no
/// letter or digit yields none.
pub fn hardware_labels(hardware: &Hardware) -> BTreeMap<&'static str, String> {
    let cpu = hardware.cpu.as_ref();
    let vendor = hardware.system_vendor.as_ref();
    let sources = [
        (HOSTNAME_LABEL, hardware.hostname.as_deref()),
        (
            CPU_ARCHITECTURE_LABEL,
            cpu.and_then(|c| c.architecture.as_deref()),
        ),
        (CPU_MODEL_LABEL, cpu.and_then(|c| c.model_name.as_deref())),
        (
            SYSTEM_MANUFACTURER_LABEL,
            vendor.and_then(|v| v.manufacturer.as_deref()),
        ),
        (
            SYSTEM_PRODUCT_LABEL,
            vendor.and_then(|v| v.product_name.as_deref()),
        ),
        (
            SYSTEM_SERIAL_LABEL,
            vendor.and_then(|v| v.serial_number.as_deref()),
        ),
    ];
    sources
        .into_iter()
        .filter_map(|(key, text)| Some((key, label_value(text?)?)))
        .collect()
}

/// The device's labels after a hardware report: the [`HARDWARE_LABEL_KEYS`] set to
/// what `hardware` yields (and removed where it yields nothing), every other label
/// kept. `None` when nothing changes, so the caller writes nothing.
pub fn relabel_from_hardware(
    labels: &BTreeMap<String, String>,
    hardware: &Hardware,
) -> Option<BTreeMap<String, String>> {
    let derived = hardware_labels(hardware);
    let mut updated = labels.clone();
    for key in HARDWARE_LABEL_KEYS {
        match derived.get(key) {
            Some(value) => {
                updated.insert(key.to_owned(), value.clone());
            }
            None => {
                updated.remove(key);
            }
        }
    }
    (updated != *labels).then_some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation;

    fn hardware(value: serde_json::Value) -> Hardware {
        let mut base = serde_json::json!({"disks": [], "gpus": [], "interfaces": []});
        if let (Some(base), Some(extra)) = (base.as_object_mut(), value.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("hardware")
    }

    #[test]
    fn values_are_lowercased_trimmed_and_stripped() {
        assert_eq!(label_value("x86_64").as_deref(), Some("x86_64"));
        assert_eq!(
            label_value("  Dell Inc.  ").as_deref(),
            Some("dellinc"),
            "spaces go, the trailing dot is outside the span"
        );
        assert_eq!(
            label_value("(R) Xeon(TM) E5-2680 v4 @ 2.40GHz").as_deref(),
            Some("rxeontme5-2680v42.40ghz")
        );
        assert_eq!(label_value("--..__"), None);
        assert_eq!(label_value(""), None);
        assert_eq!(label_value("Ünïcode-Box").as_deref(), Some("ncode-box"));
        let long = label_value(&format!("{}-{}", "a".repeat(62), "b".repeat(10))).expect("value");
        assert_eq!(long.len(), 62, "cut at 63 then back to a letter: {long}");
    }

    #[test]
    fn every_derived_value_is_a_valid_label() {
        let hardware = hardware(serde_json::json!({
            "hostname": "Edge_Box-07.example.COM",
            "cpu": {"architecture": "aarch64", "modelName": "Cortex-A72 (ARMv8)", "flags": []},
            "systemVendor": {"manufacturer": "Raspberry Pi Foundation",
                "productName": "Raspberry Pi 4 Model B Rev 1.4", "serialNumber": "10000000abcdef01"},
        }));
        let labels = hardware_labels(&hardware);
        assert_eq!(labels.len(), 6);
        for (key, value) in &labels {
            validation::label_key(key).expect("key");
            validation::label_value(value).expect("value");
        }
        assert_eq!(labels[SYSTEM_PRODUCT_LABEL], "raspberrypi4modelbrev1.4");
    }

    #[test]
    fn other_labels_stay_and_stale_hardware_labels_go() {
        let labels = BTreeMap::from([
            ("site".to_owned(), "lab".to_owned()),
            (SYSTEM_SERIAL_LABEL.to_owned(), "old".to_owned()),
        ]);
        let report = hardware(serde_json::json!({"hostname": "cam"}));
        let updated = relabel_from_hardware(&labels, &report).expect("changed");
        assert_eq!(
            updated,
            BTreeMap::from([
                ("site".to_owned(), "lab".to_owned()),
                (HOSTNAME_LABEL.to_owned(), "cam".to_owned()),
            ])
        );
        assert_eq!(relabel_from_hardware(&updated, &report), None);
    }
}
