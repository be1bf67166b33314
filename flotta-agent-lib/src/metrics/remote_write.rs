//! Prometheus remote-write 1.0: the `prompb` messages the receiver decodes
//! (`WriteRequest`, `TimeSeries`, `Label`, `Sample`, with Prometheus' field numbers),
//! derived by hand with prost attributes so no `protoc` runs at build time, and the
//! snappy block compression the protocol asks for.
//!
//! ```
//! use flotta_agent_lib::metrics::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
//!
//! let request = WriteRequest {
//!     timeseries: vec![TimeSeries {
//!         labels: vec![Label::new("__name__", "node_load1"), Label::new("device_id", "cam-1")],
//!         samples: vec![Sample { value: 0.5, timestamp: 1_700_000_000_000 }],
//!     }],
//! };
//! let body = remote_write::encode_body(&request);
//! assert_eq!(remote_write::decode_body(&body).unwrap(), request);
//! ```

use prost::Message as _;

/// `Content-Type` of a remote-write request.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Encoding` of a remote-write request (snappy block format, not framed).
pub const CONTENT_ENCODING: &str = "snappy";
/// `X-Prometheus-Remote-Write-Version` of remote-write 1.0.
pub const VERSION: &str = "0.1.0";
/// The name of the header carrying [`VERSION`].
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";

/// `prometheus.WriteRequest`: the series of one push (field 1). Metadata (field 3)
/// is not sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one label set and its samples, oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Label {
    /// A label.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

impl WriteRequest {
    /// How many samples the request carries.
    pub fn sample_count(&self) -> usize {
        self.timeseries.iter().map(|s| s.samples.len()).sum()
    }

    /// The protobuf encoding, uncompressed.
    pub fn encode_proto(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes the protobuf encoding.
    pub fn decode_proto(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Self::decode(bytes)
    }
}

/// The body of a push: the protobuf encoding of `request`, snappy-compressed in the
/// block format (remote-write does not use snappy's framing format).
pub fn encode_body(request: &WriteRequest) -> Vec<u8> {
    compress(&request.encode_proto())
}

/// The request in a push body (the inverse of [`encode_body`]).
pub fn decode_body(body: &[u8]) -> Result<WriteRequest, BodyError> {
    let proto = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(BodyError::Snappy)?;
    WriteRequest::decode_proto(&proto).map_err(BodyError::Protobuf)
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    // Compressing a slice into a vector sized by `max_compress_len` cannot fail
    // (the only error is an input over 4 GiB, which a batch never is); fall back to
    // the empty body a receiver refuses rather than panic.
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .unwrap_or_default()
}

/// Why a push body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Not a snappy block.
    #[error("the body is not snappy block-compressed")]
    Snappy(#[source] snap::Error),
    /// Not a `WriteRequest`.
    #[error("the body is not a remote-write WriteRequest")]
    Protobuf(#[source] prost::DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf field as the wire has it: (field number, wire type, payload).
    /// Written here from the encoding rules, independently of prost, to check the
    /// field numbers against Prometheus' `prompb/types.proto` and `remote.proto`.
    fn fields(mut bytes: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
        fn varint(bytes: &mut &[u8]) -> u64 {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let (first, rest) = bytes.split_first().expect("truncated varint");
                *bytes = rest;
                value |= u64::from(first & 0x7f) << shift;
                if first & 0x80 == 0 {
                    break;
                }
            }
            value
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            let (number, wire_type) = (key >> 3, (key & 7) as u8);
            let payload = match wire_type {
                0 => {
                    let start = bytes;
                    varint(&mut bytes);
                    start[..start.len() - bytes.len()].to_vec()
                }
                1 => {
                    let (v, rest) = bytes.split_at(8);
                    bytes = rest;
                    v.to_vec()
                }
                2 => {
                    let len = usize::try_from(varint(&mut bytes)).expect("length");
                    let (v, rest) = bytes.split_at(len);
                    bytes = rest;
                    v.to_vec()
                }
                other => panic!("unexpected wire type {other}"),
            };
            out.push((number, wire_type, payload));
        }
        out
    }

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label::new("__name__", "node_load1"),
                        Label::new("device_id", "cam-1"),
                    ],
                    samples: vec![
                        Sample {
                            value: 0.25,
                            timestamp: 1_700_000_000_000,
                        },
                        Sample {
                            value: 1.5,
                            timestamp: 1_700_000_060_000,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![Label::new("__name__", "up")],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: -5,
                    }],
                },
            ],
        }
    }

    #[test]
    fn the_encoding_uses_prompb_field_numbers() {
        let request = request();
        let bytes = request.encode_proto();
        let top = fields(&bytes);
        // WriteRequest.timeseries = 1, length-delimited, once per series.
        assert_eq!(top.len(), 2);
        assert!(top.iter().all(|(n, t, _)| (*n, *t) == (1, 2)));
        let series = fields(&top[0].2);
        let numbers: Vec<(u64, u8)> = series.iter().map(|(n, t, _)| (*n, *t)).collect();
        // TimeSeries.labels = 1, TimeSeries.samples = 2.
        assert_eq!(numbers, vec![(1, 2), (1, 2), (2, 2), (2, 2)]);
        // Label.name = 1, Label.value = 2, both strings.
        let label = fields(&series[1].2);
        assert_eq!(label[0], (1, 2, b"device_id".to_vec()));
        assert_eq!(label[1], (2, 2, b"cam-1".to_vec()));
        // Sample.value = 1 (double, fixed 64), Sample.timestamp = 2 (int64 varint).
        let sample = fields(&series[3].2);
        assert_eq!(sample[0], (1, 1, 1.5f64.to_le_bytes().to_vec()));
        assert_eq!((sample[1].0, sample[1].1), (2, 0));
        assert_eq!(
            WriteRequest::decode_proto(&bytes).expect("decodes"),
            request,
            "round trip"
        );
        // A negative int64 is a ten-byte varint, as protobuf's int64 requires.
        let up = fields(&top[1].2);
        let negative = fields(&up[1].2);
        assert_eq!((negative[1].0, negative[1].2.len()), (2, 10));
    }

    #[test]
    fn the_body_is_a_snappy_block_not_a_snappy_frame() {
        let request = request();
        let proto = request.encode_proto();
        let body = encode_body(&request);
        // The block format starts with the uncompressed length as a varint; the
        // framing format would start with the stream identifier chunk 0xff.
        assert_ne!(body.first(), Some(&0xff));
        let mut expected_len = Vec::new();
        let mut n = proto.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                expected_len.push(byte);
                break;
            }
            expected_len.push(byte | 0x80);
        }
        assert!(body.starts_with(&expected_len));
        assert_eq!(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy block"),
            proto
        );
        assert_eq!(decode_body(&body).expect("body"), request);
        assert!(matches!(
            decode_body(b"\xff\x06\x00\x00sNaPpY"),
            Err(BodyError::Snappy(_))
        ));
    }
}
