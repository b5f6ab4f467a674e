//! Recordings as the record keeps them (issue 13): one [`Recording`] per
//! started recording of a consultation, one [`RecordingFile`] per sealed
//! track segment, their states, and the retention rule. The files'
//! format is `tuxa_recording::seal`'s; the rows are `tuxa_store::recordings`'.
//!
//! A consultation's id is its room's id, so a recording names the room by
//! its consultation.

use std::fmt;

use serde::{Deserialize, Serialize};
use tuxa_protocol::{ConsultationKind, MediaKind, ParticipantId, Role, TrackSource};

use crate::ids::StaffId;
use crate::time::UnixTime;

crate::ids::id_type!(
    /// A row of `recordings`.
    RecordingId
);
crate::ids::id_type!(
    /// A row of `recording_files`.
    RecordingFileId
);

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[cfg(feature = "sqlite")]
        crate::text_enum_sql!($name);
    };
}

text_enum!(
    /// Where a recording is.
    RecordingState {
        /// Being written now.
        Recording = "recording",
        /// Stopped; every file finished.
        Complete = "complete",
        /// Stopped by a crash or a failure: some file lacks its end
        /// marker, readable up to its last chunk.
        Incomplete = "incomplete",
        /// Nothing usable was written.
        Failed = "failed",
    }
);

text_enum!(
    /// Where one file is.
    FileState {
        /// Being written now (a row still `open` at start: the server died).
        Open = "open",
        /// Finished: end marker written, size and SHA-256 final.
        Complete = "complete",
        /// Without end marker (crash, disk full); readable to its last chunk.
        Incomplete = "incomplete",
        /// Deleted after its retention period; the row stays.
        Purged = "purged",
    }
);

text_enum!(
    /// Why a recording stopped.
    StopReason {
        /// Someone allowed to stopped it.
        Stopped = "stopped",
        /// A patient withdrew consent.
        ConsentWithdrawn = "consent_withdrawn",
        /// The consultation ended.
        RoomEnded = "room_ended",
        /// Writing failed (e.g. a full disk).
        WriteFailed = "write_failed",
        /// The server stopped or died during it (found at the next start).
        ServerRestart = "server_restart",
        /// No recording key is configured or it does not load.
        KeysUnavailable = "keys_unavailable",
    }
);

text_enum!(
    /// The codec of a recorded track (no transcoding: as published).
    Codec {
        Opus = "opus",
        Vp8 = "vp8",
        Vp9 = "vp9",
        H264 = "h264",
        Av1 = "av1",
    }
);

/// A track source as stored (the wire's names, `docs/protocol.md`).
pub fn source_as_str(s: TrackSource) -> &'static str {
    match s {
        TrackSource::Camera => "camera",
        TrackSource::Microphone => "microphone",
        TrackSource::Screen => "screen",
        TrackSource::SecondCamera => "second_camera",
    }
}

/// The inverse of [`source_as_str`].
pub fn parse_source(s: &str) -> Option<TrackSource> {
    [
        TrackSource::Camera,
        TrackSource::Microphone,
        TrackSource::Screen,
        TrackSource::SecondCamera,
    ]
    .into_iter()
    .find(|v| source_as_str(*v) == s)
}

/// A media kind as stored.
pub fn kind_as_str(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// The inverse of [`kind_as_str`].
pub fn parse_kind(s: &str) -> Option<MediaKind> {
    match s {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    }
}

/// A file's path relative to `data/recordings/`: plain names separated by
/// `/`, never absolute, never `..` or `.`, so no row can point outside
/// the recordings' folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RecordingPath(String);

impl RecordingPath {
    pub fn parse(s: &str) -> Option<RecordingPath> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            });
        ok.then(|| RecordingPath(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordingPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::ToSql for RecordingPath {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.0.as_str()))
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::FromSql for RecordingPath {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        RecordingPath::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("bad recording path {s:?}").into())
        })
    }
}

/// Who started a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartedBy {
    pub participant: ParticipantId,
    pub name: String,
    /// Their staff account, when they signed in as staff.
    pub staff: Option<StaffId>,
}

/// A recording as started (its row's first values).
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// The consultation (and room) recorded.
    pub consultation: String,
    pub started_by: StartedBy,
    pub started_at: UnixTime,
}

/// A row of `recordings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recording {
    pub id: RecordingId,
    pub consultation: String,
    pub started_by: StartedBy,
    pub started_at: UnixTime,
    pub ended_at: Option<UnixTime>,
    pub state: RecordingState,
    pub stop_reason: Option<StopReason>,
}

/// One file as opened by the recorder (its row's first values).
#[derive(Debug, Clone)]
pub struct NewRecordingFile {
    pub recording: RecordingId,
    pub participant: ParticipantId,
    pub role: Role,
    pub display_name: String,
    pub facility: Option<String>,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub codec: Codec,
    /// From 0; a new segment starts when a track's resolution changes.
    pub segment: u32,
    pub path: RecordingPath,
    /// The track's start on the room's clock (ms since the recording started).
    pub offset_ms: i64,
    pub started_at: UnixTime,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The master key the file is sealed under (`tuxa_recording::keys::KeyId`).
    pub key_id: u32,
}

/// What a finished (or recovered) file's row is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// `Complete` or `Incomplete`.
    pub state: FileState,
    pub duration_ms: Option<i64>,
    pub frames: Option<i64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub size: u64,
    /// SHA-256 of the file as stored, lowercase hex.
    pub sha256: String,
}

/// A row of `recording_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingFile {
    pub id: RecordingFileId,
    pub recording: RecordingId,
    pub consultation: String,
    pub participant: ParticipantId,
    pub role: Role,
    pub display_name: String,
    pub facility: Option<String>,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub codec: Codec,
    pub segment: u32,
    pub path: RecordingPath,
    pub offset_ms: i64,
    pub started_at: UnixTime,
    pub duration_ms: Option<i64>,
    pub frames: Option<i64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub key_id: u32,
    pub state: FileState,
}

/// How long a recording is kept, from its end: whole years on the
/// calendar (Vietnam time) or whole days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Years(u32),
    Days(u32),
}

impl Period {
    /// When something that ended at `from` is past this period.
    pub fn after(self, from: UnixTime) -> UnixTime {
        use jiff::{Span, Timestamp, tz::TimeZone};
        let Ok(start) = Timestamp::from_second(from.secs()) else {
            return UnixTime(i64::MAX);
        };
        let zoned = start.to_zoned(TimeZone::fixed(jiff::tz::Offset::constant(7)));
        let span = match self {
            Period::Years(n) => Span::new().try_years(i64::from(n)),
            Period::Days(n) => Span::new().try_days(i64::from(n)),
        };
        span.and_then(|s| zoned.checked_add(s))
            .map_or(UnixTime(i64::MAX), |z| UnixTime(z.timestamp().as_second()))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Years(n) => write!(f, "{n}y"),
            Period::Days(n) => write!(f, "{n}d"),
        }
    }
}

/// Circular 49/2017 (Art. 4): at least ten years.
pub const DEFAULT_RETENTION: Period = Period::Years(10);

/// The retention policy: a period per consultation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub visit: Period,
    pub conference: Period,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            visit: DEFAULT_RETENTION,
            conference: DEFAULT_RETENTION,
        }
    }
}

/// Why a retention text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0}: expected kind=period pairs like visit=10y,conference=10y (kinds: visit, conference; periods: whole years `y` or days `d`, at least 1)"
)]
pub struct RetentionError(pub String);

impl Retention {
    /// Parses `visit=10y,conference=3650d`; a kind not named keeps the
    /// default (ten years).
    pub fn parse(s: &str) -> Result<Retention, RetentionError> {
        let mut r = Retention::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || RetentionError(format!("{item:?}"));
            let (kind, period) = item.split_once('=').ok_or_else(bad)?;
            let period = period.trim();
            let count = |n: &str| n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(bad);
            let period = if let Some(n) = period.strip_suffix('y') {
                Period::Years(count(n)?)
            } else if let Some(n) = period.strip_suffix('d') {
                Period::Days(count(n)?)
            } else {
                return Err(bad());
            };
            match ConsultationKind::parse(kind.trim()) {
                Some(ConsultationKind::Visit) => r.visit = period,
                Some(ConsultationKind::Conference) => r.conference = period,
                None => return Err(bad()),
            }
        }
        Ok(r)
    }

    pub fn period(&self, kind: ConsultationKind) -> Period {
        match kind {
            ConsultationKind::Visit => self.visit,
            ConsultationKind::Conference => self.conference,
        }
    }

    /// Whether a recording of a `kind` consultation that ended at
    /// `ended_at` may be deleted at `now`.
    pub fn expired(&self, kind: ConsultationKind, ended_at: UnixTime, now: UnixTime) -> bool {
        now >= self.period(kind).after(ended_at)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "visit={},conference={}", self.visit, self.conference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in RecordingState::ALL {
            assert_eq!(RecordingState::parse(s.as_str()), Some(*s));
        }
        for s in FileState::ALL {
            assert_eq!(FileState::parse(s.as_str()), Some(*s));
        }
        for s in StopReason::ALL {
            assert_eq!(StopReason::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            parse_source("second_camera"),
            Some(TrackSource::SecondCamera)
        );
        assert_eq!(parse_source("camera2"), None);
        assert_eq!(FileState::parse("OPEN"), None);
    }

    #[test]
    fn paths_stay_inside_the_recordings_folder() {
        assert!(RecordingPath::parse("abcdefghijklmnop/1/p3-camera-0.webm.sealed").is_some());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a b",
        ] {
            assert!(RecordingPath::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn retention_parses_and_counts_calendar_years() {
        assert_eq!(Retention::parse("").unwrap(), Retention::default());
        let r = Retention::parse("visit=5y, conference=30d").unwrap();
        assert_eq!(r.visit, Period::Years(5));
        assert_eq!(r.conference, Period::Days(30));
        assert_eq!(Retention::parse(&r.to_string()).unwrap(), r);
        for bad in [
            "visit",
            "visit=0y",
            "visit=10",
            "lecture=1y",
            "visit=1w",
            "visit=-1y",
            "visit=10ý",
            "visit=ý",
            "visit=y",
            "=",
        ] {
            assert!(Retention::parse(bad).is_err(), "{bad:?}");
        }
        // 29/02/2024 07:00 in Vietnam + 10 years: 01/03/2034 is after it, the
        // day before is not.
        let ended = UnixTime(1_709_164_800);
        let ten = DEFAULT_RETENTION.after(ended);
        assert!(ten.secs() - ended.secs() >= 10 * 365 * 86_400 + 2 * 86_400);
        let d = Retention::default();
        assert!(!d.expired(ConsultationKind::Visit, ended, UnixTime(ten.secs() - 1)));
        assert!(d.expired(ConsultationKind::Visit, ended, ten));
    }
}
