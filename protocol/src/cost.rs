//! Capacity units: what one participant costs a media server, by the conference's mode and
//! media. Media servers register a total in these units and report what is unused; the
//! dispatcher charges the same units between reports. Both read this one model (`[cost]` in
//! their TOML), so the two books agree.

use crate::Mode;
use serde::{Deserialize, Serialize};

/// The cost model (`[cost]` in the dispatcher's and the media servers' config). A forwarded
/// audio participant is the unit; mixing decodes and encodes, and video multiplies the
/// bytes, so those cost more. The defaults are rough ratios from the benches; operators tune
/// them to their hardware.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CostModel {
    /// A participant of a forwarded (reflect) audio conference.
    pub audio_forward: u32,
    /// A participant of a forwarded conference with video.
    pub video_forward: u32,
    /// A participant of a mixed audio conference.
    pub mix: u32,
    /// A participant of a mixed conference with video (composited).
    pub composite: u32,
    /// A running recording, on top of its conference's participants: its recorder
    /// thread's Opus encoding and muxing, about 0.45% of a core (`cargo bench -p codecs
    /// --bench record`), where a unit is about 0.1% (a forwarded audio participant).
    pub recording: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            audio_forward: 1,
            video_forward: 3,
            mix: 2,
            composite: 4,
            recording: 5,
        }
    }
}

impl CostModel {
    /// Units one participant of a conference of `mode`, with or without video, costs.
    pub fn per_participant(&self, mode: Mode, video: bool) -> u32 {
        match (mode, video) {
            (Mode::Reflect, false) => self.audio_forward,
            (Mode::Reflect, true) => self.video_forward,
            (Mode::Mix, false) => self.mix,
            (Mode::Mix | Mode::Composite, true) => self.composite,
            // A composite conference without video is a mix.
            (Mode::Composite, false) => self.mix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_and_media_has_its_own_price() {
        let c = CostModel {
            audio_forward: 10,
            video_forward: 20,
            mix: 30,
            composite: 40,
            recording: 50,
        };
        assert_eq!(c.per_participant(Mode::Reflect, false), 10);
        assert_eq!(c.per_participant(Mode::Reflect, true), 20);
        assert_eq!(c.per_participant(Mode::Mix, false), 30);
        assert_eq!(c.per_participant(Mode::Mix, true), 40);
        assert_eq!(c.per_participant(Mode::Composite, true), 40);
        assert_eq!(
            c.per_participant(Mode::Composite, false),
            30,
            "no video: a mix"
        );
    }

    #[test]
    fn defaults_fill_what_the_table_leaves_out() {
        #[derive(Deserialize)]
        struct File {
            cost: CostModel,
        }
        let f: File = toml::from_str("[cost]\nmix = 5\n").unwrap();
        assert_eq!(
            f.cost,
            CostModel {
                mix: 5,
                ..CostModel::default()
            }
        );
        assert_eq!(
            (
                f.cost.audio_forward,
                f.cost.video_forward,
                f.cost.composite,
                f.cost.recording
            ),
            (1, 3, 4, 5)
        );
        assert!(toml::from_str::<File>("[cost]\nmixx = 5\n").is_err());
    }
}
