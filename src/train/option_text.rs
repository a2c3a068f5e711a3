//! Enumerated training options as typed values that are saved (in a
//! checkpoint's `trainer_state.json`) and printed as the text a user writes:
//! `weighted:2`, `first`, `cosine`. Each is parsed once, when the flags and
//! the TOML file resolve into a `TrainConfig`.

use serde::{Deserialize, Deserializer, Serializer};

use super::class_weights::ClassWeightSpec;
use super::freeze::FreezeSpec;
use crate::data::align::Alignment;
use crate::data::sampler::SamplerKind;
use crate::error::{Error, Result};
use crate::model::{LossName, parse_focal_alpha};
use crate::optim::ScheduleKind;

/// `--head-bias-init`: how a new head's bias starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadBiasInit {
    /// Zero, as transformers initialises it.
    #[default]
    Zero,
    /// Each label's training prior (src/train/head_prior.rs).
    Prior,
}

/// An option's typed value and the text that names it.
pub trait OptionText: Sized {
    /// The value `text` names, or an error naming the flag and the choices.
    fn from_text(text: &str) -> Result<Self>;
    fn text(&self) -> String;
}

impl OptionText for HeadBiasInit {
    fn from_text(text: &str) -> Result<Self> {
        match text {
            "zero" => Ok(HeadBiasInit::Zero),
            "prior" => Ok(HeadBiasInit::Prior),
            other => Err(Error::InvalidArgument(format!("--head-bias-init `{other}`: use zero or prior"))),
        }
    }
    fn text(&self) -> String {
        match self {
            HeadBiasInit::Zero => "zero".into(),
            HeadBiasInit::Prior => "prior".into(),
        }
    }
}

impl OptionText for Alignment {
    fn from_text(text: &str) -> Result<Self> {
        match text {
            "first" => Ok(Alignment::First),
            "all" => Ok(Alignment::All),
            other => Err(Error::InvalidArgument(format!("--alignment `{other}`: use first or all"))),
        }
    }
    fn text(&self) -> String {
        self.name().into()
    }
}

impl OptionText for ScheduleKind {
    fn from_text(text: &str) -> Result<Self> {
        ScheduleKind::parse(text)
    }
    fn text(&self) -> String {
        match self {
            ScheduleKind::Linear => "linear".into(),
            ScheduleKind::Cosine => "cosine".into(),
            ScheduleKind::Constant => "constant".into(),
        }
    }
}

impl OptionText for SamplerKind {
    fn from_text(text: &str) -> Result<Self> {
        SamplerKind::parse(text)
    }
    fn text(&self) -> String {
        self.name()
    }
}

impl OptionText for LossName {
    fn from_text(text: &str) -> Result<Self> {
        LossName::parse(text)
    }
    fn text(&self) -> String {
        self.name().into()
    }
}

/// `--focal-alpha`: one value, or one per class.
#[derive(Clone, Debug, PartialEq)]
pub struct FocalAlpha(pub Vec<f64>);

impl OptionText for FocalAlpha {
    fn from_text(text: &str) -> Result<Self> {
        parse_focal_alpha(text).map(FocalAlpha)
    }
    /// Rust prints the shortest text that reads back as the same f64.
    fn text(&self) -> String {
        self.0.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
    }
}

impl OptionText for ClassWeightSpec {
    fn from_text(text: &str) -> Result<Self> {
        ClassWeightSpec::parse(text)
    }
    fn text(&self) -> String {
        ClassWeightSpec::text(self)
    }
}

impl OptionText for FreezeSpec {
    fn from_text(text: &str) -> Result<Self> {
        FreezeSpec::parse(text)
    }
    fn text(&self) -> String {
        FreezeSpec::text(self)
    }
}

/// `#[serde(with = "as_text")]`: a typed option stored as its text.
pub mod as_text {
    use super::*;

    pub fn serialize<T: OptionText, S: Serializer>(value: &T, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.text())
    }

    pub fn deserialize<'de, T: OptionText, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<T, D::Error> {
        let text = String::deserialize(deserializer)?;
        T::from_text(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(default, with = "opt_text")]`: an optional typed option, stored
/// as its text or null.
pub mod opt_text {
    use super::*;

    pub fn serialize<T: OptionText, S: Serializer>(value: &Option<T>, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match value {
            Some(v) => serializer.serialize_some(&v.text()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: OptionText, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Option<T>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => T::from_text(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: OptionText + PartialEq + std::fmt::Debug>(text: &str) {
        let value = T::from_text(text).unwrap();
        assert_eq!(T::from_text(&value.text()).unwrap(), value, "{text}");
    }

    #[test]
    fn r16_typed_options_round_trip_through_their_text_and_name_the_flag_when_wrong() {
        for text in ["zero", "prior"] {
            round_trip::<HeadBiasInit>(text);
        }
        for text in ["first", "all"] {
            round_trip::<Alignment>(text);
        }
        for text in ["linear", "cosine", "constant"] {
            round_trip::<ScheduleKind>(text);
        }
        for text in ["random", "weighted", "weighted:2.5", "oversample:3", "undersample:1.5"] {
            round_trip::<SamplerKind>(text);
        }
        assert_eq!(SamplerKind::from_text("oversample:3").unwrap().text(), "weighted:3");
        for text in ["ce", "focal"] {
            round_trip::<LossName>(text);
        }
        assert_eq!(LossName::from_text("cross-entropy").unwrap().text(), "ce");
        for text in ["0.25", "0.1,0.3,0.6", "1e-7,2"] {
            round_trip::<FocalAlpha>(text);
        }
        for text in ["inverse", "sqrt-inverse", "effective", "effective:0.99", "weights/classes.txt"] {
            round_trip::<ClassWeightSpec>(text);
        }
        assert_eq!(ClassWeightSpec::from_text("effective:0.9999").unwrap().text(), "effective");
        for text in ["embeddings", "encoder", "layers:3", "embeddings,layers:0-3"] {
            round_trip::<FreezeSpec>(text);
            assert_eq!(FreezeSpec::from_text(text).unwrap().text(), text);
        }
        let e = LossName::from_text("hinge").unwrap_err().to_string();
        assert!(e.contains("--loss `hinge`"), "{e}");
        let e = FocalAlpha::from_text("0.2,x").unwrap_err().to_string();
        assert!(e.contains("--focal-alpha `0.2,x`") && e.contains("`x`"), "{e}");
        let e = FreezeSpec::from_text("layers:4-2").unwrap_err().to_string();
        assert!(e.contains("--freeze `layers:4-2`"), "{e}");
        let e = HeadBiasInit::from_text("priors").unwrap_err().to_string();
        assert!(e.contains("--head-bias-init `priors`") && e.contains("zero or prior"), "{e}");
        let e = Alignment::from_text("middle").unwrap_err().to_string();
        assert!(e.contains("--alignment `middle`"), "{e}");
    }
}
