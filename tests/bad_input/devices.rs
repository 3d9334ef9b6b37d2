//! Devices: GPU backends that are missing say why; GPU ops reject `f64` tables and arguments on
//! another device. What is there depends on the machine: the GPU cases return early without one.

use ultramem::*;

use crate::cpu;

#[test]
fn cuda_is_there_or_says_why_not() {
    match Device::cuda(0) {
        Ok(d) => assert_eq!(d.backend(), Backend::Cuda),
        Err(e) if cfg!(feature = "cuda") => {
            assert!(
                matches!(
                    e,
                    Error::BackendUnavailable {
                        backend: Backend::Cuda,
                        ..
                    }
                ),
                "{e}"
            )
        }
        Err(e) => assert!(
            matches!(
                e,
                Error::BackendNotCompiled {
                    backend: Backend::Cuda,
                    feature: "cuda"
                }
            ),
            "{e}"
        ),
    }
}

#[test]
fn wgpu_is_there_or_says_why_not() {
    match Device::wgpu() {
        Ok(d) => assert_eq!(d.backend(), Backend::Wgpu),
        Err(e) => assert!(
            matches!(
                e,
                Error::BackendNotCompiled {
                    backend: Backend::Wgpu,
                    ..
                } | Error::BackendUnavailable {
                    backend: Backend::Wgpu,
                    ..
                }
            ),
            "{e}"
        ),
    }
}

#[test]
fn best_device_reports_every_better_backend_it_skipped() {
    let (best, skipped) = Device::best_with_report();
    // Every backend better than the one chosen was skipped with a reason.
    let rank = |b: Backend| match b {
        Backend::Cuda => 0,
        Backend::Wgpu => 1,
        _ => 2,
    };
    assert_eq!(skipped.len(), rank(best.backend()));
}

/// A GPU device, if this machine has one.
fn gpu() -> Option<Device> {
    Device::wgpu().or_else(|_| Device::cuda(0)).ok()
}

/// Valid `weighted_gather` inputs on a GPU: T = 1, M = 1, Cn = 1, N = 2, Dv = 2, f32 table.
struct Valid {
    rows: Tensor<u32>,
    weights: Tensor<f32>,
    table: Tensor<f32>,
}

fn valid(dev: &Device) -> Valid {
    Valid {
        rows: Tensor::from_vec(dev, &[1, 1], vec![0u32]).unwrap(),
        weights: Tensor::from_vec(dev, &[1, 1, 1], vec![1.0f32]).unwrap(),
        table: Tensor::from_vec(dev, &[2, 2], vec![1.0f32; 4]).unwrap(),
    }
}

impl Valid {
    fn args(&self) -> WeightedGatherArgs<'_, f32> {
        WeightedGatherArgs {
            rows: &self.rows,
            weights: &self.weights,
            table: &self.table,
        }
    }
}

#[test]
fn the_valid_base_is_accepted_on_a_gpu() {
    let Some(dev) = gpu() else {
        return;
    };
    let base = valid(&dev);
    assert_eq!(weighted_gather(&base.args()).unwrap().shape(), &[1, 2]);
}

#[test]
fn gpu_ops_reject_f64_tables() {
    let Some(dev) = gpu() else {
        return;
    };
    let base = valid(&dev);
    // The table's element type is a type parameter of the arguments, so this case cannot be a
    // struct update of the f32 base: it lists the base's other fields.
    let table = Tensor::from_vec(&dev, &[2, 2], vec![1.0f64; 4]).unwrap();
    let e = weighted_gather(&WeightedGatherArgs {
        rows: &base.rows,
        weights: &base.weights,
        table: &table,
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedDType {
                dtype: DType::F64,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn gpu_ops_reject_arguments_on_another_device() {
    let Some(dev) = gpu() else {
        return;
    };
    let base = valid(&dev);
    let cpu_table = cpu(&[2, 2], vec![1.0f32; 4]);
    let e = weighted_gather(&WeightedGatherArgs {
        table: &cpu_table,
        ..base.args()
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::DeviceMismatch { arg: "table", .. }),
        "{e}"
    );
}
