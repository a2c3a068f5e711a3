//! `--device` and `--precision`: one flag group, flattened into train, eval,
//! predict and serve, and read from a `berth train --config` file too.

use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer};

use super::open_device;
use crate::device::{Device, DeviceChoice};
use crate::error::Result;
use crate::tensor::Precision;

/// Unset values take the defaults (auto, fp32) when the group is used, so a
/// flag can override a config file that sets them.
#[derive(Args, Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DeviceArgs {
    /// auto, cpu, cuda or sim (default auto: CUDA when a GPU is there, else
    /// the CPU; sim runs the CUDA kernels on the simulated device, for testing).
    #[arg(long, value_enum, ignore_case = true)]
    #[serde(default, deserialize_with = "device_value")]
    pub device: Option<DeviceChoice>,
    /// fp32, bf16 or int8 (default fp32). bf16 needs a device: BF16
    /// activations and GEMM operands; training keeps F32 master weights and
    /// moments. int8 is CPU inference: the encoder's linear layers in dynamic
    /// INT8 (weights per channel, activations per token).
    #[arg(long, value_enum, ignore_case = true)]
    #[serde(default, deserialize_with = "precision_value")]
    pub precision: Option<Precision>,
}

impl DeviceArgs {
    /// The device asked for (default auto).
    pub fn choice(&self) -> DeviceChoice {
        self.device.unwrap_or(DeviceChoice::Auto)
    }

    /// The precision asked for (default fp32).
    pub fn precision(&self) -> Precision {
        self.precision.unwrap_or(Precision::Fp32)
    }

    /// Each value from self, else from `fallback` (flags over a file's values).
    pub fn or(&self, fallback: &DeviceArgs) -> DeviceArgs {
        DeviceArgs { device: self.device.or(fallback.device), precision: self.precision.or(fallback.precision) }
    }

    /// Opens the device (None: the CPU); BF16 without one is an error naming the flags.
    pub fn open(&self) -> Result<(Option<Device>, Precision)> {
        open_device(self.choice(), self.precision())
    }
}

/// A value of a clap value enum in a config file, case-insensitive as the flag is.
fn value_enum<'de, D: Deserializer<'de>, T: ValueEnum>(d: D, flag: &str) -> std::result::Result<Option<T>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
    T::from_str(&text, true).map(Some).map_err(|_| {
        let names: Vec<String> =
            T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|p| p.get_name().to_string()).collect();
        serde::de::Error::custom(format!("unknown {flag} `{text}` ({})", names.join(", ")))
    })
}

fn device_value<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<DeviceChoice>, D::Error> {
    value_enum(d, "--device")
}

fn precision_value<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Precision>, D::Error> {
    value_enum(d, "--precision")
}
