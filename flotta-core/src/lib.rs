#![doc = include_str!("../README.md")]

pub mod crd;
pub mod manifest;
pub mod model;
pub mod validation;
pub mod wire;
