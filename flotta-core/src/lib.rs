#![doc = include_str!("../README.md")]

pub mod model;
pub mod reconcile;
pub mod selector;
pub mod wire;
