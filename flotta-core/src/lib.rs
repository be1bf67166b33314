#![doc = include_str!("../README.md")]

pub mod crd;
pub mod manifest;
pub mod model;
pub mod reconcile;
pub mod selector;
pub mod validation;
pub mod wire;
