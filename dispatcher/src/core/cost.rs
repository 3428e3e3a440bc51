//! What a conference carries and what it needs from its server. The price of a
//! participant is `protocol::CostModel`, the model the media servers count with too.

use protocol::{Capabilities, MediaKind, Mode};

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
/// `composite`; a composite conference needs the compositor, whatever its first member
/// brings.
pub fn needs(mode: Mode, media: Media) -> Capabilities {
    Capabilities {
        audio: true,
        video: media.video() || mode == Mode::Composite,
        reflect: mode == Mode::Reflect,
        mix: mode.mixes(),
        composite: mode == Mode::Composite,
    }
}
