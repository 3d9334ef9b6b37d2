//! The kernel registry: one [`KernelId`] per stem paired across `kernels/` and `shaders/`, with
//! both sources embedded, each entry's parameter size and pointer count, and each WGSL entry's
//! bindings and workgroup size. Generated and checked by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/registry.rs"));
