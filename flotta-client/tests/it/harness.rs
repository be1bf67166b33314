//! What the client tests share beyond `flotta_testing::TestServer`.

/// An EdgeDevice with labels.
pub fn device(name: &str, labels: &[(&str, &str)]) -> flotta_core::model::EdgeDevice {
    let mut device = flotta_core::model::EdgeDevice::new(name, Default::default());
    device.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    device
}
