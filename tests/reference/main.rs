//! The CPU reference, checked by hand-computed cases, finite differences and properties.
//!
//! One test binary (link time matters on two cores); the modules are one concern each.

mod common;
mod cost_model;
mod gradients;
mod hand_computed;
mod layer;
mod properties;
