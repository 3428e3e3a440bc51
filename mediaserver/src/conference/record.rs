//! Starting and stopping a conference's recording (issue 14): a moderator's `record on|off`
//! line or the admin API (a `record` line on the registry link). Every member is told with
//! `recording on|off BY`; the dispatcher gets a `recording` line at the start and at the
//! end (its list, dashboard and usage log).
//!
//! What is recorded follows the room: a mix or composite room's own mix, a reflect room's
//! mix made for the recording alone; the composite where the room carries video (a reflect
//! or mix room's made for the recording alone), else audio alone into Ogg.

use std::sync::atomic::Ordering;

use protocol::{Actor, ErrorCode, Mode, MsMsg, ServerMsg};

use super::moderate::must_moderate;
use super::rooms::Room;
use super::{Conferences, Membership, Refusal};
use crate::path::PathCmd;
use crate::recording::Recording;

fn refusal(code: ErrorCode, text: impl Into<String>) -> Refusal {
    Refusal::Reply(ServerMsg::reject(code, text.into()))
}

impl Conferences {
    /// `record on|off` (moderators).
    pub(crate) fn record(&self, m: &Membership, on: bool) -> Result<(), Refusal> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&m.conference) else {
            return Ok(());
        };
        must_moderate(room, m, "record")?;
        self.set_recording(&m.conference, room, on, Actor::Participant(m.participant))
    }

    /// An operator's `record` (admin API).
    pub(crate) fn operator_record(&self, conference: &str, on: bool, operator: &str) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(conference) else {
            tracing::warn!(
                conference,
                operator,
                "operator record: no such conference here"
            );
            return;
        };
        if let Err(e) = self.set_recording(conference, room, on, Actor::Operator) {
            tracing::warn!(conference, operator, refusal = ?e.line(), "operator record refused");
        }
    }

    /// Starts or stops; doing what is already done changes nothing.
    fn set_recording(
        &self,
        conference: &str,
        room: &mut Room,
        on: bool,
        by: Actor,
    ) -> Result<(), Refusal> {
        if on == room.recording.is_some() {
            return Ok(());
        }
        if !on {
            self.end_recording(conference, room);
            room.broadcast(&ServerMsg::Recording { on, by }, None);
            return Ok(());
        }
        let Some(dir) = &self.settings.recordings else {
            return Err(refusal(
                ErrorCode::WrongState,
                "record: this media server has no recordings directory (--recordings)",
            ));
        };
        let Some(tap) = room.tap.clone() else {
            return Err(refusal(
                ErrorCode::Internal,
                "record: the room has no media path",
            ));
        };
        // Video when the room composites or carries video and this server composites.
        let video = self
            .compositor
            .as_ref()
            .filter(|_| room.mode() == Mode::Composite || room.members().values().any(|m| m.video));
        let size = video.map(|_| (crate::composite::WIDTH, crate::composite::HEIGHT));
        let rec =
            Recording::start(dir, conference, size, self.recording_stats.clone()).map_err(|e| {
                tracing::warn!(conference, error = %e, "recording not started");
                refusal(ErrorCode::Internal, format!("record: {e}"))
            })?;
        let stats = self.recording_stats.clone();
        let (link, own) = match (video, &room.composite) {
            // The room's own compositor sends its frames to the recording.
            (Some(_), Some(c)) => {
                c.set_recording(Some((rec.input(), stats.clone())));
                (None, None)
            }
            (Some(service), None) => {
                let (link, control) = service.open_for_recording();
                control.set_recording(Some((rec.input(), stats.clone())));
                (Some(link), Some(control))
            }
            (None, _) => (None, None),
        };
        let cmd = PathCmd::Start {
            to: rec.input(),
            stats,
            video: link,
        };
        if tap.try_send(cmd).is_err() {
            if let Some(c) = &room.composite {
                c.set_recording(None);
            }
            rec.stop();
            return Err(refusal(ErrorCode::Retry, "record: the media path is busy"));
        }
        for (&id, m) in room.members() {
            rec.send(crate::recording::RecMsg::Joined {
                at: std::time::Instant::now(),
                participant: id,
                name: m.name.clone(),
            });
        }
        for p in room.speaking().collect::<Vec<_>>() {
            rec.send(crate::recording::RecMsg::Speaking {
                at: std::time::Instant::now(),
                participant: p,
                on: true,
            });
        }
        let file = rec.file.display().to_string();
        tracing::info!(conference, %file, %by, "recording started");
        self.notify(MsMsg::Recording {
            conference: conference.to_owned(),
            on: true,
            file,
            seconds: 0.0,
        });
        room.recording = Some(rec);
        room.recording_composite = own;
        self.stats.moderations.fetch_add(1, Ordering::Relaxed);
        room.broadcast(&ServerMsg::Recording { on, by }, None);
        Ok(())
    }

    /// Ends the room's recording, if one runs (a stop, or the room's end).
    pub(super) fn end_recording(&self, conference: &str, room: &mut Room) {
        let Some(rec) = room.recording.take() else {
            return;
        };
        if let Some(tap) = &room.tap {
            // A full switch means the path is gone or stuck: dropping the recording's
            // senders ends it all the same.
            let _ = tap.try_send(PathCmd::Stop);
        }
        if let Some(c) = &room.composite {
            c.set_recording(None);
        }
        // Its own composite stops now; the tap's link closes it at the service.
        if let Some(c) = room.recording_composite.take() {
            c.set_recording(None);
        }
        let file = rec.file.display().to_string();
        let seconds = rec.stop().as_secs_f64();
        tracing::info!(conference, %file, seconds, "recording stopped");
        self.notify(MsMsg::Recording {
            conference: conference.to_owned(),
            on: false,
            file,
            seconds,
        });
    }
}
