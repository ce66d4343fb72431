//! `--device cpu|cuda:N`: where a worker trains. A GPU that was asked for
//! and is not there is an error, never a silent fall back to the CPU.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                let n = s
                    .strip_prefix("cuda:")
                    .or_else(|| s.strip_prefix("gpu:"))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        format!("invalid device `{s}`: use `cpu` or `cuda:N` (e.g. cuda:0)")
                    })?;
                Ok(DeviceSpec::Cuda(n))
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device {0}: this hps-worker was built without CUDA support; rebuild it with `cargo build --release -p hps-worker --features cuda`, or use --device cpu")]
    NoCudaSupport(DeviceSpec),
    #[error("--device {spec}: cannot open the GPU ({message}); check `nvidia-smi` and CUDA_VISIBLE_DEVICES (under deploy/local.sh each worker sees its GPU as cuda:0)")]
    Unavailable { spec: DeviceSpec, message: String },
}

impl DeviceSpec {
    /// Open the device. Never falls back to the CPU.
    pub fn open(self) -> Result<candle_core::Device, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => open_cuda(self, n),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(spec: DeviceSpec, n: usize) -> Result<candle_core::Device, DeviceError> {
    candle_core::Device::new_cuda(n).map_err(|e| DeviceError::Unavailable {
        spec,
        message: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(spec: DeviceSpec, _n: usize) -> Result<candle_core::Device, DeviceError> {
    Err(DeviceError::NoCudaSupport(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("cuda:N"));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
