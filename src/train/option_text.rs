//! Enumerated training options as typed values that are saved (in a
//! checkpoint's `trainer_state.json`) and printed as the text a user writes:
//! `weighted:2`, `first`, `cosine`. Each is parsed once, when the flags and
//! the TOML file resolve into a `TrainConfig`.

use serde::{Deserialize, Deserializer, Serializer};

use crate::data::align::Alignment;
use crate::data::sampler::SamplerKind;
use crate::error::{Error, Result};
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
        let e = HeadBiasInit::from_text("priors").unwrap_err().to_string();
        assert!(e.contains("--head-bias-init `priors`") && e.contains("zero or prior"), "{e}");
        let e = Alignment::from_text("middle").unwrap_err().to_string();
        assert!(e.contains("--alignment `middle`"), "{e}");
    }
}
