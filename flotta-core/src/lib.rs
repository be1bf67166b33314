#![doc = include_str!("../README.md")]

pub mod crd;
pub mod enrolment;
pub mod manifest;
pub mod model;
pub mod pki;
pub mod reconcile;
pub mod selector;
pub mod strict_json;
pub mod validation;
pub mod wire;
