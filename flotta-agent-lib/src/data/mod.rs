//! Data upload: files workloads write under their `data.egress` paths go to the
//! S3-compatible bucket of the device's `storage.s3` (see `docs/observability.md`).
//!
//! The rooms, from the leaves up:
//! - [`plan`]: what a configuration asks ([`DataPlan`]), or why it cannot be done;
//! - [`s3`]: the signed S3 requests (`PutObject`, multipart upload);
//! - [`sync`]: one workload's pass over its files, resumable from its state file.
//!
//! The agent composes them in its data loop: every period, each workload's export
//! directory (from [`WorkloadRuntime::export_dir`]) is synced, and the time of the
//! last complete pass is the workload's `last_data_upload` in the heartbeat.
//!
//! [`WorkloadRuntime::export_dir`]: crate::runtime::WorkloadRuntime::export_dir

pub mod plan;
pub mod s3;
pub mod sync;

pub use plan::{BucketPlan, DataPlan, EgressPath, WorkloadData};
pub use s3::{S3Client, S3Error};
pub use sync::{PassReport, UploadState, WorkloadUpload};
