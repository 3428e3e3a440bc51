//! Capacity units: what one participant costs a media server, by the conference's mode and
//! media. Media servers register a total in these units and report what is unused; the
//! dispatcher charges the same units between reports. Both read this one model (`[cost]` in
//! their TOML), so the two books agree.

use crate::Mode;
use serde::{Deserialize, Serialize};

/// Capacity units one core carries: a unit is a forwarded audio participant, and a core
/// forwards about 462k packets a second, about 1,000 such participants in rooms of ten
/// (`docs/benchmarks.md`, the fan-out table). A media server's default capacity is this
/// times its cores.
pub const UNITS_PER_CORE: u32 = 1000;

/// The cost model (`[cost]` in the dispatcher's and the media servers' config). A forwarded
/// audio participant is the unit, about 0.1% of a core ([`UNITS_PER_CORE`]); mixing decodes
/// and encodes, video multiplies the bytes, and compositing decodes every picture, so
/// those cost more. Operators tune them to their hardware.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CostModel {
    /// A participant of a forwarded (reflect) audio conference.
    pub audio_forward: u32,
    /// A participant of a forwarded conference with video.
    pub video_forward: u32,
    /// A participant of a mixed audio conference.
    pub mix: u32,
    /// A participant of a mixed conference with video, which forwards the video (hybrid).
    pub mix_video: u32,
    /// A participant of a composite conference with video: its picture decoded, scaled
    /// and drawn 30 times a second, and its share of the encode. Measured: a 2x2 grid of
    /// 640x360 senders takes 5.4 ms a frame, 16% of a core at 30 fps, so 40 units each
    /// (`cargo bench -p transcoder --bench composite`).
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
            mix_video: 4,
            composite: 40,
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
            (Mode::Mix, true) => self.mix_video,
            (Mode::Composite, true) => self.composite,
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
            mix_video: 35,
            composite: 40,
            recording: 50,
        };
        assert_eq!(c.per_participant(Mode::Reflect, false), 10);
        assert_eq!(c.per_participant(Mode::Reflect, true), 20);
        assert_eq!(c.per_participant(Mode::Mix, false), 30);
        assert_eq!(
            c.per_participant(Mode::Mix, true),
            35,
            "hybrid: video forwarded"
        );
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
            (1, 3, 40, 5)
        );
        assert_eq!(f.cost.mix_video, 4);
        assert!(toml::from_str::<File>("[cost]\nmixx = 5\n").is_err());
    }
}
