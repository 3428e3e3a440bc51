//! Capacity units: what one participant costs a media server, by the conference's mode
//! and media. Servers register a total in these units and report what is unused; the
//! dispatcher charges the same units between reports, so the two books agree.

use protocol::{Capabilities, MediaKind, Mode};
use serde::Deserialize;

/// The cost model (`[cost]` in the dispatcher's and the media servers' config). A
/// forwarded audio participant is the unit; mixing decodes and encodes, and video
/// multiplies the bytes, so those cost more. The defaults are rough ratios from the
/// benches; operators tune them to their hardware.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
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
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            audio_forward: 1,
            video_forward: 3,
            mix: 2,
            composite: 4,
        }
    }
}

impl CostModel {
    /// Units one participant of a conference of `mode` and `media` costs.
    pub fn per_user(&self, mode: Mode, media: Media) -> u32 {
        match (mode, media) {
            (Mode::Reflect, Media::Audio) => self.audio_forward,
            (Mode::Reflect, Media::AudioVideo) => self.video_forward,
            (Mode::Mix, Media::Audio) => self.mix,
            (Mode::Mix, Media::AudioVideo) => self.composite,
        }
    }
}

/// The media a conference carries, from the first join's `media=` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Media {
    #[default]
    Audio,
    AudioVideo,
}

impl Media {
    /// From a join's `media=` list: video if the client asked for it.
    pub fn from_kinds(kinds: &[MediaKind]) -> Media {
        if kinds.contains(&MediaKind::Video) {
            Media::AudioVideo
        } else {
            Media::Audio
        }
    }

    pub fn video(self) -> bool {
        self == Media::AudioVideo
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Media::Audio => "audio",
            Media::AudioVideo => "audio,video",
        }
    }

    /// Parses [`Media::as_str`]'s output (the conference table's column).
    pub fn parse(s: &str) -> Media {
        if s.split(',').any(|m| m == "video") {
            Media::AudioVideo
        } else {
            Media::Audio
        }
    }
}

/// Capabilities a conference of `mode` and `media` needs from its server. A mixed
/// conference with video forwards the video (hybrid mode), so it needs `video`, not
/// `composite`.
pub fn needs(mode: Mode, media: Media) -> Capabilities {
    Capabilities {
        audio: true,
        video: media.video(),
        reflect: mode == Mode::Reflect,
        mix: mode == Mode::Mix,
        composite: false,
    }
}
