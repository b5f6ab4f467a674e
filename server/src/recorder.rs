//! The recorder: writes what the SFU's recording tap hands out
//! (`tuxa_sfu::Recorded`, see `sfu/src/record.rs`) to sealed files, on its
//! own thread, off the media task.
//!
//! The media task gives each event to [`RecorderTx::send`], which never
//! waits: the queue to the thread is bounded ([`QUEUE`]), and when it is full
//! the room whose event did not fit stops being recorded (the media task
//! turns the SFU's tap off for it), with a [`RecorderEvent::Failed`] out and a
//! warn line — never the call, never the forwarding. The media task asks the
//! recorder for nothing back.
//!
//! On the thread, each recorded track has a [`TrackMuxer`] (RTP → WebM) and,
//! once the muxer has written its head, a [`SealWriter`] on
//! `<data>/recordings/<consultation>/<recording>/<start ms>/<participant>-<source>-<mid>-<segment>.<ext>`.
//! Chunks are sealed and written at least every [`FLUSH_EVERY`] (and every
//! 64 KiB, the seal's chunk), so a crash loses at most that. A resolution
//! change ends the file and starts the next segment. A track's files are
//! finished (their head rewritten, size and SHA-256 into the store and the
//! audit chain, `tuxa_store::recordings::finish_file`) when the track ends,
//! when the room's recording stops, and when the server shuts down.
//!
//! A write error (a full disk, EIO) stops that room's recording: its files
//! are left as they are on disk — readable up to their last whole chunk —
//! and marked `incomplete` with the size and hash of what is there, and a
//! [`RecorderEvent::Failed`] goes out (the hub tells the chair).
//!
//! Rows: the room's recording row and who its participants are come from
//! the control plane through [`RecorderControl::describe`] (who started the
//! recording and the participants' roles are the hub's knowledge, not the
//! media plane's). A room recorded without a description still has its
//! files written (nothing is lost), without rows, and says so in the log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::time::{Duration, Instant};

use str0m::media::Mid;
use tokio::sync::mpsc;
use tuxa_protocol::{ParticipantId, Role, RoomId};
use tuxa_recording::keys::KeyRing;
use tuxa_recording::mux::{HEAD_LEN, RtpIn, TrackCodec, TrackMuxer};
use tuxa_recording::seal::{SealError, SealWriter, hash_all};
use tuxa_records::UnixTime;
use tuxa_records::recording::{
    Codec, FileOutcome, FileState, NewRecordingFile, RecordingFileId, RecordingId, RecordingPath,
};
use tuxa_sfu::{Recorded, RecordedTrack};

use crate::store::Store;

/// Events queued from the media task to the recorder thread. A six-party
/// room sends about 1 000 packets a second; this is some four seconds of
/// it, enough for a disk that stalls for a moment.
pub const QUEUE: usize = 4096;

/// Recorder events waiting for the server to take them.
pub const EVENT_QUEUE: usize = 64;

/// How long the thread rests after emptying its queue while media flows
/// (see `Thread::run`).
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// A track's sealed chunks are written at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What the recorder tells the rest of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderEvent {
    /// The room's recording stopped on a fault (a full queue, a write error,
    /// no recording keys). What was written stays readable.
    Failed { room: RoomId, reason: String },
}

/// Who a participant is, for their files' rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub role: Role,
    pub name: String,
    pub facility: Option<String>,
}

/// What goes to the recorder thread.
#[derive(Debug)]
enum Command {
    Media(Recorded),
    /// The room's recording row and its people (more may come as they join).
    Describe {
        room: RoomId,
        recording: Option<RecordingId>,
        people: Vec<(ParticipantId, Person)>,
    },
    /// The media task stopped the room's recording (the queue was full):
    /// finish what was written.
    Cut {
        room: RoomId,
    },
    /// The room's recording ended for good (not a pause): its description
    /// goes, so that the table does not grow with every room ever recorded.
    Forget {
        room: RoomId,
    },
}

/// What the recorder thread needs.
pub struct RecorderConfig {
    /// `data/recordings/` (`vault::recordings_dir`).
    pub dir: PathBuf,
    /// `None`: recording keys unavailable; a room asked to record fails at once.
    pub keys: Option<Arc<KeyRing>>,
    /// Where the files' rows go (`None`: files only, e.g. in tests).
    pub store: Option<Store>,
    /// To wait for the store from the recorder's thread.
    pub runtime: Option<tokio::runtime::Handle>,
    pub events: mpsc::Sender<RecorderEvent>,
    pub queue: usize,
}

/// Starts the recorder thread. The thread ends (finishing every open file)
/// when the [`RecorderTx`] and every [`RecorderControl`] are dropped.
pub fn spawn(
    cfg: RecorderConfig,
) -> std::io::Result<(RecorderTx, RecorderControl, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(cfg.queue.max(1));
    let events = cfg.events.clone();
    let mut thread = Thread {
        ctx: Ctx {
            dir: cfg.dir,
            keys: cfg.keys,
            store: cfg.store,
            runtime: cfg.runtime,
            events: cfg.events,
            described: HashMap::new(),
        },
        rooms: HashMap::new(),
    };
    let handle = std::thread::Builder::new()
        .name("tuxa-recorder".into())
        .spawn(move || thread.run(rx))?;
    Ok((
        RecorderTx {
            tx: tx.clone(),
            events,
            room_of: HashMap::new(),
            cut: HashSet::new(),
            owed: VecDeque::new(),
        },
        RecorderControl { tx },
        handle,
    ))
}

/// The media task's end of the queue.
pub struct RecorderTx {
    tx: SyncSender<Command>,
    events: mpsc::Sender<RecorderEvent>,
    /// Each recorded participant's room (from `Recorded::Track`), to know
    /// whose recording a packet that does not fit belongs to.
    room_of: HashMap<ParticipantId, RoomId>,
    /// Rooms cut for a full queue: their events are dropped until the SFU
    /// says `Started` again.
    cut: HashSet<RoomId>,
    /// A room's cut, to tell the thread once the queue has room.
    owed: VecDeque<Command>,
}

impl RecorderTx {
    /// Queues one event of the tap, without waiting. Returns a room whose
    /// recording must stop now (the queue was full): the caller turns the
    /// SFU's tap off for it (`Sfu::set_recording(.., false)`).
    pub fn send(&mut self, rec: Recorded) -> Option<RoomId> {
        self.retry();
        let room = match &rec {
            Recorded::Started { room, .. } => {
                self.cut.remove(room);
                Some(room.clone())
            }
            Recorded::Track(t) => {
                self.room_of
                    .entry(t.participant)
                    .or_insert_with(|| t.room.clone());
                Some(t.room.clone())
            }
            Recorded::Stopped { room, .. } => {
                self.room_of.retain(|_, r| r != room);
                if self.cut.contains(room) {
                    // Said already (the `Cut`).
                    return None;
                }
                Some(room.clone())
            }
            Recorded::TrackEnded { room, .. } => Some(room.clone()),
            Recorded::Rtp(_) => None,
        };
        if !self.cut.is_empty() {
            let r = match (&room, &rec) {
                (Some(r), _) => Some(r),
                (None, Recorded::Rtp(p)) => self.room_of.get(&p.participant),
                _ => None,
            };
            if r.is_some_and(|r| self.cut.contains(r)) {
                return None;
            }
        }
        match self.tx.try_send(Command::Media(rec)) {
            Ok(()) => None,
            Err(TrySendError::Disconnected(_)) => None,
            Err(TrySendError::Full(Command::Media(rec))) => {
                let room = match (room, &rec) {
                    (Some(r), _) => r,
                    (None, Recorded::Rtp(p)) => self.room_of.get(&p.participant)?.clone(),
                    _ => return None,
                };
                tracing::warn!(%room, "recorder queue full: the room's recording stops");
                self.cut.insert(room.clone());
                let _ = self.events.try_send(RecorderEvent::Failed {
                    room: room.clone(),
                    reason: "the recorder fell behind (disk too slow): recording stopped".into(),
                });
                self.owed.push_back(Command::Cut { room: room.clone() });
                Some(room)
            }
            Err(TrySendError::Full(_)) => None,
        }
    }

    /// Tells the thread about rooms cut while its queue was full, as soon
    /// as it has room (the media task calls this every round).
    pub fn retry(&mut self) {
        while let Some(cmd) = self.owed.pop_front() {
            match self.tx.try_send(cmd) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(cmd)) => {
                    self.owed.push_front(cmd);
                    return;
                }
            }
        }
    }
}

/// The control plane's end: what the files' rows need.
#[derive(Clone)]
pub struct RecorderControl {
    tx: SyncSender<Command>,
}

impl RecorderControl {
    /// The room's recording row and its participants (call before turning
    /// the recording on, and again for people who join). Never waits; false
    /// if the queue was full (the files are still written, without rows).
    pub fn describe(
        &self,
        room: RoomId,
        recording: Option<RecordingId>,
        people: Vec<(ParticipantId, Person)>,
    ) -> bool {
        self.tx
            .try_send(Command::Describe {
                room,
                recording,
                people,
            })
            .is_ok()
    }

    /// The room's recording ended (not paused): forget its description
    /// once the media before this has been written. Never waits.
    pub fn forget(&self, room: RoomId) -> bool {
        self.tx.try_send(Command::Forget { room }).is_ok()
    }
}

struct Thread {
    ctx: Ctx,
    rooms: HashMap<RoomId, Room>,
}

/// What the files are written with (apart from the rooms, so that a room's
/// track can be written while the context is read).
struct Ctx {
    dir: PathBuf,
    keys: Option<Arc<KeyRing>>,
    store: Option<Store>,
    runtime: Option<tokio::runtime::Handle>,
    events: mpsc::Sender<RecorderEvent>,
    /// What the control plane said about rooms, kept across their starts.
    described: HashMap<RoomId, Description>,
}

#[derive(Debug, Default, Clone)]
struct Description {
    recording: Option<RecordingId>,
    people: HashMap<ParticipantId, Person>,
}

struct Room {
    /// The recording clock's zero: every track's start is on it.
    zero: Instant,
    /// The folder under `dir` (relative): `<consultation>/<recording>/<start>`.
    folder: String,
    failed: bool,
    tracks: HashMap<(ParticipantId, Mid), Track>,
}

struct Track {
    meta: RecordedTrack,
    muxer: Option<TrackMuxer>,
    segment: u32,
    offset_ms: u64,
    /// Muxed bytes before the head is complete (the file is made with it).
    early: Vec<u8>,
    file: Option<OpenFile>,
    last_flush: Instant,
}

struct OpenFile {
    writer: SealWriter<File>,
    abs: PathBuf,
    row: Option<RecordingFileId>,
    /// What its row needs, should the row come late (the description
    /// reaches the recorder after the first file opened).
    codec: TrackCodec,
    path: RecordingPath,
}

/// Why a room's files cannot go on.
#[derive(Debug)]
struct WriteFailed(String);

impl From<SealError> for WriteFailed {
    fn from(e: SealError) -> Self {
        WriteFailed(e.to_string())
    }
}

impl From<std::io::Error> for WriteFailed {
    fn from(e: std::io::Error) -> Self {
        WriteFailed(e.to_string())
    }
}

fn ms_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_millis() as u64
}

/// A name part made of what `RecordingPath` allows.
fn clean(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if c.is_empty() { "_".into() } else { c }
}

fn record_codec(c: TrackCodec) -> Codec {
    match c {
        TrackCodec::Opus => Codec::Opus,
        TrackCodec::Vp8 => Codec::Vp8,
        TrackCodec::H264 => Codec::H264,
    }
}

impl Thread {
    fn run(&mut self, rx: Receiver<Command>) {
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        loop {
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(cmd) => {
                    self.on_command(cmd);
                    // Take what else is queued, then rest a moment: while
                    // the thread rests, the media task's sends find nobody
                    // to wake. A wake per packet (a futex call on each side
                    // and a context switch) cost more than the muxing and
                    // sealing together: most of recording's extra CPU in S2R
                    // (BENCHMARKS.md, "Recording cost"). The queue holds
                    // seconds; a rest holds a few dozen packets of a room.
                    let mut gone = false;
                    loop {
                        match rx.try_recv() {
                            Ok(cmd) => self.on_command(cmd),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                gone = true;
                                break;
                            }
                        }
                    }
                    if gone {
                        break;
                    }
                    std::thread::sleep(BATCH_PAUSE);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_flush {
                next_flush = now + FLUSH_EVERY;
                self.flush_all(now);
            }
        }
        // The server is stopping: every file is finished.
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.stop(&room);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Describe {
                room,
                recording,
                people,
            } => {
                let d = self.ctx.described.entry(room.clone()).or_default();
                if recording.is_some() {
                    d.recording = recording;
                }
                d.people.extend(people);
                // Files opened before their row could be made (the media
                // outran the description): their rows now.
                if let Some(r) = self.rooms.get_mut(&room) {
                    for t in r.tracks.values_mut() {
                        let Some((codec, path, key)) = t
                            .file
                            .as_ref()
                            .filter(|f| f.row.is_none())
                            .map(|f| (f.codec, f.path.clone(), f.writer.key_id().0))
                        else {
                            continue;
                        };
                        let row = self.ctx.open_row(&room, t, codec, path, key);
                        if let Some(f) = t.file.as_mut() {
                            f.row = row;
                        }
                    }
                }
            }
            Command::Forget { room } => {
                self.ctx.described.remove(&room);
            }
            Command::Cut { room } => self.stop(&room),
            Command::Media(rec) => self.on_media(rec),
        }
    }

    fn on_media(&mut self, rec: Recorded) {
        match rec {
            Recorded::Started { room, at } => {
                // A start without a stop (a cut the SFU did not hear of):
                // the earlier files end first.
                self.stop(&room);
                if self.ctx.keys.is_none() {
                    self.ctx
                        .fail_event(&room, "recording keys are unavailable".into());
                    return;
                }
                let recording = self.ctx.described.get(&room).and_then(|d| d.recording);
                // One folder per start: a paused and resumed recording (a
                // patient without consent came and went) keeps one row and
                // gets new files, never reopens the old ones.
                let started_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let folder = format!(
                    "{}/{}/{started_ms}",
                    clean(&room.to_string()),
                    recording.map_or_else(|| "unlisted".to_owned(), |r| r.0.to_string()),
                );
                self.rooms.insert(
                    room,
                    Room {
                        zero: at,
                        folder,
                        failed: false,
                        tracks: HashMap::new(),
                    },
                );
            }
            Recorded::Track(t) => {
                let Some(room) = self.rooms.get_mut(&t.room) else {
                    return;
                };
                if room.failed {
                    return;
                }
                let codec = match TrackCodec::from_str0m(t.codec) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(room = %t.room, participant = %t.participant, "track not recorded: {e}");
                        return;
                    }
                };
                let offset_ms = ms_between(room.zero, t.at);
                let muxer = match TrackMuxer::new(codec, t.clock_rate, offset_ms) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(room = %t.room, participant = %t.participant, "track not recorded: {e}");
                        return;
                    }
                };
                let key = (t.participant, t.mid);
                let at = t.at;
                room.tracks.insert(
                    key,
                    Track {
                        meta: t,
                        muxer: Some(muxer),
                        segment: 0,
                        offset_ms,
                        early: Vec::new(),
                        file: None,
                        last_flush: at,
                    },
                );
            }
            Recorded::Rtp(p) => {
                // The room is found by the track: the tap's packets do not
                // carry it (no String per packet on the media task).
                // (A handful of rooms are recorded at once: a scan.)
                let Some((room_id, room)) = self
                    .rooms
                    .iter_mut()
                    .find(|(_, r)| r.tracks.contains_key(&(p.participant, p.mid)))
                else {
                    return;
                };
                let Room {
                    zero,
                    folder,
                    failed,
                    tracks,
                } = room;
                if *failed {
                    return;
                }
                let Some(track) = tracks.get_mut(&(p.participant, p.mid)) else {
                    return;
                };
                let r = self.ctx.push(room_id, folder, *zero, track, &p);
                if let Err(WriteFailed(why)) = r {
                    let room_id = room_id.clone();
                    self.fail(&room_id, why);
                }
            }
            Recorded::TrackEnded {
                room,
                participant,
                mid,
                ..
            } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return;
                };
                let Some(track) = r.tracks.remove(&(participant, mid)) else {
                    return;
                };
                let folder = r.folder.clone();
                if let Err(WriteFailed(why)) = self.ctx.finish_track(&room, &folder, track) {
                    self.fail(&room, why);
                }
            }
            Recorded::Stopped { room, .. } => self.stop(&room),
        }
    }

    fn flush_all(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (id, room) in &mut self.rooms {
            if room.failed {
                continue;
            }
            for t in room.tracks.values_mut() {
                if let Some(f) = t.file.as_mut()
                    && f.writer.buffered() > 0
                {
                    t.last_flush = now;
                    if let Err(e) = f.writer.flush_chunk() {
                        failed.push((id.clone(), e.to_string()));
                        break;
                    }
                }
            }
        }
        for (room, why) in failed {
            self.fail(&room, why);
        }
    }

    /// Ends a room's recording: every track's file finished.
    fn stop(&mut self, room: &RoomId) {
        let Some(mut r) = self.rooms.remove(room) else {
            return;
        };
        if r.failed {
            return;
        }
        let folder = r.folder.clone();
        let tracks: Vec<Track> = r.tracks.drain().map(|(_, t)| t).collect();
        let mut failure = None;
        for t in tracks {
            if failure.is_some() {
                self.ctx.abandon(room, t);
                continue;
            }
            if let Err(WriteFailed(why)) = self.ctx.finish_track(room, &folder, t) {
                failure = Some(why);
            }
        }
        if let Some(why) = failure {
            self.ctx
                .fail_event(room, format!("writing the recording failed: {why}"));
        }
    }

    /// A write failed: the room's recording stops here, its files are left
    /// readable to their last chunk and marked incomplete.
    fn fail(&mut self, room: &RoomId, why: String) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.failed {
            return;
        }
        r.failed = true;
        let tracks: Vec<Track> = r.tracks.drain().map(|(_, t)| t).collect();
        for t in tracks {
            self.ctx.abandon(room, t);
        }
        self.ctx
            .fail_event(room, format!("writing the recording failed: {why}"));
    }
}

impl Ctx {
    fn push(
        &self,
        room: &RoomId,
        folder: &str,
        zero: Instant,
        track: &mut Track,
        p: &tuxa_sfu::RecordedRtp,
    ) -> Result<(), WriteFailed> {
        let Some(muxer) = track.muxer.as_mut() else {
            return Ok(());
        };
        let pushed = muxer.push(RtpIn {
            seq: p.seq,
            timestamp: p.timestamp,
            marker: p.marker,
            red: p.red,
            payload: &p.payload,
            arrival_ms: ms_between(zero, p.arrived),
        });
        let pushed = match pushed {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%room, "recording a track: {e}");
                return Ok(());
            }
        };
        let out = muxer.take_output();
        self.write(room, folder, track, &out)?;
        if let Some(next) = pushed.next_segment {
            // A new resolution: this file ends, the next segment begins.
            let old = track.muxer.replace(*next);
            self.close_file(room, track, old)?;
            track.segment += 1;
            track.offset_ms = ms_between(zero, p.arrived);
            let out = track
                .muxer
                .as_mut()
                .map(|m| m.take_output())
                .unwrap_or_default();
            self.write(room, folder, track, &out)?;
        }
        if ms_between(track.last_flush, p.arrived) >= FLUSH_EVERY.as_millis() as u64 {
            track.last_flush = p.arrived;
            if let Some(f) = track.file.as_mut() {
                f.writer.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// Appends muxed bytes to the track's file, making the file when the
    /// head is complete.
    fn write(
        &self,
        room: &RoomId,
        folder: &str,
        track: &mut Track,
        out: &[u8],
    ) -> Result<(), WriteFailed> {
        if out.is_empty() {
            return Ok(());
        }
        if let Some(f) = track.file.as_mut() {
            f.writer.append(out)?;
            return Ok(());
        }
        track.early.extend_from_slice(out);
        if track.early.len() < HEAD_LEN {
            return Ok(());
        }
        let Some(keys) = &self.keys else {
            return Err(WriteFailed("recording keys are unavailable".into()));
        };
        let codec = track
            .muxer
            .as_ref()
            .map(|m| m.codec())
            .unwrap_or(TrackCodec::Opus);
        let t = &track.meta;
        let name = format!(
            "{}-{}-{}-{}.{}",
            t.participant.0,
            tuxa_records::recording::source_as_str(t.source),
            clean(&t.mid.to_string()),
            track.segment,
            codec.file_extension()
        );
        let rel = format!("{folder}/{name}");
        let path = RecordingPath::parse(&rel)
            .ok_or_else(|| WriteFailed(format!("bad recording path {rel:?}")))?;
        let abs = self.dir.join(&rel);
        if let Some(parent) = abs.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&abs)?;
        let early = std::mem::take(&mut track.early);
        let mut writer = SealWriter::create(file, keys, &early[..HEAD_LEN])?;
        writer.append(&early[HEAD_LEN..])?;
        let row = self.open_row(room, track, codec, path.clone(), writer.key_id().0);
        track.file = Some(OpenFile {
            writer,
            abs,
            row,
            codec,
            path,
        });
        Ok(())
    }

    /// The file's row, `open`, before anything but its head is written (so
    /// that recovery after a crash finds it).
    fn open_row(
        &self,
        room: &RoomId,
        track: &Track,
        codec: TrackCodec,
        path: RecordingPath,
        key_id: u32,
    ) -> Option<RecordingFileId> {
        let (Some(store), Some(rt)) = (&self.store, &self.runtime) else {
            return None;
        };
        let Some(d) = self.described.get(room) else {
            // The usual race: the row is made on the store thread and its
            // description follows the media; the file gets its row then.
            tracing::debug!(%room, "file opened before its recording's row; the row comes late");
            return None;
        };
        let recording = d.recording?;
        let t = &track.meta;
        let person = d.people.get(&t.participant);
        let f = NewRecordingFile {
            recording,
            participant: t.participant,
            role: person.map_or(Role::Guest, |p| p.role),
            display_name: person.map_or_else(String::new, |p| p.name.clone()),
            facility: person.and_then(|p| p.facility.clone()),
            kind: match t.kind {
                str0m::media::MediaKind::Audio => tuxa_protocol::MediaKind::Audio,
                str0m::media::MediaKind::Video => tuxa_protocol::MediaKind::Video,
            },
            source: t.source,
            codec: record_codec(codec),
            segment: track.segment,
            path,
            offset_ms: track.offset_ms as i64,
            started_at: UnixTime::from_secs(crate::clock::unix_now() as i64),
            width: None,
            height: None,
            key_id,
        };
        match rt.block_on(store.call(move |c| tuxa_store::recordings::open_file(c, &f))) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(%room, "recording file row: {e:#}");
                None
            }
        }
    }

    /// Ends a segment's file: the muxer's tail, the head rewritten, the
    /// size and hash into the row and the audit chain.
    fn close_file(
        &self,
        room: &RoomId,
        track: &mut Track,
        muxer: Option<TrackMuxer>,
    ) -> Result<(), WriteFailed> {
        let Some(mut muxer) = muxer else {
            return Ok(());
        };
        let rest = muxer.take_output();
        if let Some(f) = track.file.as_mut() {
            f.writer.append(&rest)?;
        } else {
            track.early.extend_from_slice(&rest);
        }
        let fin = muxer.finish();
        let Some(f) = track.file.take() else {
            // Not even a head's worth: nothing to keep.
            track.early.clear();
            return Ok(());
        };
        let OpenFile {
            mut writer, row, ..
        } = f;
        writer.append(&fin.tail)?;
        let sealed = writer.finish(&fin.head)?;
        tracing::info!(
            %room,
            participant = %track.meta.participant,
            frames = fin.frames,
            bytes = sealed.size,
            "recorded track file finished"
        );
        let outcome = FileOutcome {
            state: FileState::Complete,
            duration_ms: Some(fin.duration_ms as i64),
            frames: Some(fin.frames as i64),
            width: fin.width.map(u32::from),
            height: fin.height.map(u32::from),
            size: sealed.size,
            sha256: hex(&sealed.sha256),
        };
        self.finish_row(room, row, outcome);
        Ok(())
    }

    fn finish_row(&self, room: &RoomId, row: Option<RecordingFileId>, outcome: FileOutcome) {
        let (Some(store), Some(rt), Some(id)) = (&self.store, &self.runtime, row) else {
            return;
        };
        let now = UnixTime::from_secs(crate::clock::unix_now() as i64);
        let r = rt.block_on(
            store.call(move |c| tuxa_store::recordings::finish_file(c, id, &outcome, now)),
        );
        if let Err(e) = r {
            tracing::error!(%room, "recording file row: {e:#}");
        }
    }

    fn finish_track(
        &self,
        room: &RoomId,
        _folder: &str,
        mut track: Track,
    ) -> Result<(), WriteFailed> {
        let muxer = track.muxer.take();
        self.close_file(room, &mut track, muxer)
    }

    /// Leaves a track's file as it is on disk and marks its row incomplete
    /// with the size and hash of what is there.
    fn abandon(&self, room: &RoomId, mut t: Track) {
        let Some(f) = t.file.take() else {
            return;
        };
        let OpenFile {
            writer, abs, row, ..
        } = f;
        drop(writer);
        let (size, sha) = match File::open(&abs).and_then(hash_all) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(%room, "reading back {}: {e}", abs.display());
                return;
            }
        };
        self.finish_row(
            room,
            row,
            FileOutcome {
                state: FileState::Incomplete,
                duration_ms: None,
                frames: None,
                width: None,
                height: None,
                size,
                sha256: hex(&sha),
            },
        );
    }

    fn fail_event(&self, room: &RoomId, reason: String) {
        tracing::warn!(%room, "recording stopped: {reason}");
        if self
            .events
            .try_send(RecorderEvent::Failed {
                room: room.clone(),
                reason,
            })
            .is_err()
        {
            tracing::error!(%room, "recorder event lost (its queue is full)");
        }
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    //! The recorder thread on real media: VP8 and Opus made by ffmpeg,
    //! packetized as a browser would, through the queue into sealed files,
    //! decrypted and read back by ffprobe (an independent reader); rows in a
    //! real SQLite file; a full disk on a real (small) tmpfs.

    use super::*;
    use std::path::Path;
    use std::process::Command as Cmd;
    use str0m::format::Codec as RtcCodec;
    use str0m::media::MediaKind;
    use tuxa_protocol::TrackSource;
    use tuxa_recording::keys::{KEY_LEN, KeyId, key_line};
    use tuxa_recording::seal::SealReader;
    use tuxa_records::recording::{FileState, NewRecording, StartedBy};
    use tuxa_sfu::RecordedRtp;

    const ROOM: &str = "abcdefghijklmnop";

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tuxa-rec-{name}-{}", std::process::id()));
        let _ = Cmd::new("umount").arg(&d).output();
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ffmpeg(args: &[&str]) {
        let out = Cmd::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .output()
            .expect("ffmpeg is installed (scripts/test-all.sh)");
        assert!(
            out.status.success(),
            "ffmpeg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// VP8 frames (IVF) of a test picture, a keyframe every `gop` frames.
    fn vp8_frames(dir: &Path, secs: u32, size: &str, rate: &str, gop: u32) -> Vec<Vec<u8>> {
        let f = dir.join(format!("v-{size}.ivf"));
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size={size}:rate=30"),
            "-t",
            &secs.to_string(),
            "-c:v",
            "libvpx",
            "-b:v",
            rate,
            "-g",
            &gop.to_string(),
            f.to_str().unwrap(),
        ]);
        let b = std::fs::read(&f).unwrap();
        let mut at = u16::from_le_bytes([b[6], b[7]]) as usize;
        let mut out = Vec::new();
        while at + 12 <= b.len() {
            let n = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            out.push(b[at + 12..at + 12 + n].to_vec());
            at += 12 + n;
        }
        out
    }

    /// Opus packets (20 ms) of a tone, from an Ogg file.
    fn opus_packets(dir: &Path, secs: u32) -> Vec<Vec<u8>> {
        let f = dir.join("a.ogg");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &secs.to_string(),
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-frame_duration",
            "20",
            f.to_str().unwrap(),
        ]);
        let b = std::fs::read(&f).unwrap();
        let (mut at, mut out, mut cur) = (0, Vec::new(), Vec::new());
        while at + 27 <= b.len() && &b[at..at + 4] == b"OggS" {
            let segs = b[at + 26] as usize;
            let table = &b[at + 27..at + 27 + segs];
            let mut p = at + 27 + segs;
            for &len in table {
                cur.extend_from_slice(&b[p..p + len as usize]);
                p += len as usize;
                if len < 255 {
                    out.push(std::mem::take(&mut cur));
                }
            }
            at = p;
        }
        // OpusHead and OpusTags are not media.
        out.split_off(2)
    }

    fn track(room: &RoomId, pid: u64, mid: &str, kind: MediaKind, at: Instant) -> Recorded {
        let (source, codec, clock_rate) = match kind {
            MediaKind::Audio => (TrackSource::Microphone, RtcCodec::Opus, 48_000),
            MediaKind::Video => (TrackSource::Camera, RtcCodec::Vp8, 90_000),
        };
        Recorded::Track(RecordedTrack {
            room: room.clone(),
            participant: ParticipantId(pid),
            mid: Mid::from(mid),
            track: tuxa_protocol::TrackId(format!("{pid}-{mid}")),
            kind,
            source,
            codec,
            clock_rate,
            at,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn rtp(
        pid: u64,
        mid: &str,
        kind: MediaKind,
        seq: u64,
        ts: u32,
        marker: bool,
        key: bool,
        at: Instant,
        payload: Vec<u8>,
    ) -> Recorded {
        let (codec, clock_rate) = match kind {
            MediaKind::Audio => (RtcCodec::Opus, 48_000),
            MediaKind::Video => (RtcCodec::Vp8, 90_000),
        };
        Recorded::Rtp(RecordedRtp {
            participant: ParticipantId(pid),
            mid: Mid::from(mid),
            rid: None,
            kind,
            codec,
            clock_rate,
            seq,
            timestamp: ts,
            marker,
            keyframe_start: key,
            red: false,
            arrived: at,
            payload: payload.into(),
        })
    }

    /// One participant's camera and microphone, interleaved in time as they
    /// would arrive: VP8 frames cut into packets of at most 1 100 bytes with
    /// a one-byte payload descriptor, Opus one packet per 20 ms.
    fn media(
        pid: u64,
        t0: Instant,
        video: &[Vec<u8>],
        audio: &[Vec<u8>],
    ) -> Vec<(Duration, Recorded)> {
        let mut out = Vec::new();
        let mut seq = 1_000u64;
        for (n, f) in video.iter().enumerate() {
            let at = Duration::from_millis(n as u64 * 1000 / 30);
            let key = f[0] & 1 == 0;
            let chunks: Vec<&[u8]> = f.chunks(1_100).collect();
            for (k, c) in chunks.iter().enumerate() {
                let mut p = vec![if k == 0 { 0x10 } else { 0x00 }];
                p.extend_from_slice(c);
                seq += 1;
                out.push((
                    at,
                    rtp(
                        pid,
                        "v",
                        MediaKind::Video,
                        seq,
                        (n as u32) * 3_000,
                        k + 1 == chunks.len(),
                        key && k == 0,
                        t0 + at,
                        p,
                    ),
                ));
            }
        }
        for (n, p) in audio.iter().enumerate() {
            let at = Duration::from_millis(n as u64 * 20);
            out.push((
                at,
                rtp(
                    pid,
                    "a",
                    MediaKind::Audio,
                    500 + n as u64,
                    (n as u32) * 960,
                    false,
                    false,
                    t0 + at,
                    p.clone(),
                ),
            ));
        }
        out.sort_by_key(|(at, _)| *at);
        out
    }

    fn ring() -> Arc<KeyRing> {
        Arc::new(KeyRing::parse(&key_line(KeyId(3), &[0x42; KEY_LEN])).unwrap())
    }

    fn decrypt(path: &Path, ring: &KeyRing, to: &Path) -> tuxa_recording::seal::Summary {
        let mut r = SealReader::open(File::open(path).unwrap(), ring).unwrap();
        let summary = r.verify().expect("every chunk opens");
        let mut buf = vec![0u8; r.plaintext_len() as usize];
        let n = r.read_at(0, &mut buf).unwrap();
        buf.truncate(n);
        std::fs::write(to, &buf).unwrap();
        summary
    }

    /// (frames read, duration in seconds from the first frame) as ffprobe
    /// counts them.
    fn probe(path: &Path) -> (u64, f64) {
        let out = Cmd::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "0"])
            .args([
                "-show_entries",
                "stream=nb_read_frames,start_time:format=duration",
            ])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(path)
            .output()
            .expect("ffprobe is installed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} in {text:?} ({:?})", out.stderr))
                .to_owned()
        };
        // A file cut by a full disk has no Duration: N/A, then NaN here.
        let start: f64 = get("start_time=").parse().unwrap_or(f64::NAN);
        let end: f64 = get("duration=").parse().unwrap_or(f64::NAN);
        (get("nb_read_frames=").parse().unwrap(), end - start)
    }

    struct Setup {
        dir: PathBuf,
        store: Store,
        recording: RecordingId,
        tx: RecorderTx,
        control: RecorderControl,
        thread: std::thread::JoinHandle<()>,
        events: mpsc::Receiver<RecorderEvent>,
        room: RoomId,
    }

    async fn setup(name: &str, recordings: Option<PathBuf>) -> Setup {
        let dir = scratch(name);
        let store = Store::open(&dir.join("tuxa.sqlite3")).unwrap();
        let recording = store
            .call(|c| {
                c.execute(
                    "INSERT INTO consultations(id, kind, title, status, created_at)
                     VALUES (?1, 'conference', 't', 'open', 0)",
                    [ROOM],
                )?;
                tuxa_store::recordings::start(
                    c,
                    &NewRecording {
                        consultation: ROOM.into(),
                        started_by: StartedBy {
                            participant: ParticipantId(1),
                            name: "BS An".into(),
                            staff: None,
                        },
                        started_at: UnixTime::from_secs(1_800_000_000),
                    },
                )
            })
            .await
            .unwrap();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (tx, control, thread) = spawn(RecorderConfig {
            dir: recordings.unwrap_or_else(|| dir.join("recordings")),
            keys: Some(ring()),
            store: Some(store.clone()),
            runtime: Some(tokio::runtime::Handle::current()),
            events: events_tx,
            queue: QUEUE,
        })
        .unwrap();
        Setup {
            dir,
            store,
            recording,
            tx,
            control,
            thread,
            events,
            room: RoomId::parse(ROOM).unwrap(),
        }
    }

    fn describe(s: &Setup) {
        let person = Person {
            role: Role::Doctor,
            name: "BS An".into(),
            facility: Some("BV Tỉnh".into()),
        };
        assert!(s.control.describe(
            s.room.clone(),
            Some(s.recording),
            vec![(ParticipantId(1), person)]
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tracks_are_sealed_files_that_play_back_what_was_sent() {
        let s = setup("play", None).await;
        let video = vp8_frames(&s.dir, 4, "320x240", "300k", 60);
        let audio = opus_packets(&s.dir, 4);
        assert!(
            video.len() >= 115 && audio.len() >= 195,
            "{} {}",
            video.len(),
            audio.len()
        );
        describe(&s);
        let Setup {
            dir,
            store,
            mut tx,
            thread,
            room,
            mut events,
            control,
            ..
        } = s;
        let t0 = Instant::now();
        let mut send = |r: Recorded| assert_eq!(tx.send(r), None, "the queue took it");
        send(Recorded::Started {
            room: room.clone(),
            at: t0,
        });
        // The camera starts 500 ms into the recording: its file starts there.
        let cam_at = t0 + Duration::from_millis(500);
        send(track(&room, 1, "a", MediaKind::Audio, t0));
        send(track(&room, 1, "v", MediaKind::Video, cam_at));
        let mut audio_started = false;
        for (at, r) in media(1, t0, &video, &audio) {
            if let Recorded::Rtp(p) = &r
                && p.kind == MediaKind::Video
            {
                let mut p = p.clone();
                p.arrived = cam_at + at;
                send(Recorded::Rtp(p));
                continue;
            }
            audio_started = true;
            send(r);
        }
        assert!(audio_started);
        send(Recorded::Stopped {
            room: room.clone(),
            at: t0 + Duration::from_secs(5),
        });
        drop(tx);
        drop(control);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        assert!(events.try_recv().is_err(), "no failure");

        let files = store
            .call(|c| tuxa_store::recordings::files_of_consultation(c, ROOM))
            .await
            .unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        let ring = ring();
        for f in &files {
            assert_eq!(f.state, FileState::Complete);
            assert_eq!(f.key_id, 3);
            assert_eq!(f.role, Role::Doctor);
            let path = dir.join("recordings").join(f.path.as_str());
            let (size, sha) = hash_all(File::open(&path).unwrap()).unwrap();
            assert_eq!(f.size, Some(size));
            assert_eq!(f.sha256.as_deref(), Some(hex(&sha).as_str()));
            let plain = dir.join(format!("{}.webm", f.id));
            let summary = decrypt(&path, &ring, &plain);
            assert!(summary.complete);
            let (frames, duration) = probe(&plain);
            let (sent, secs) = match f.kind {
                tuxa_protocol::MediaKind::Video => {
                    assert_eq!(f.offset_ms, 500);
                    assert_eq!((f.width, f.height), (Some(320), Some(240)));
                    (video.len() as f64, video.len() as f64 / 30.0)
                }
                tuxa_protocol::MediaKind::Audio => {
                    assert_eq!(f.offset_ms, 0);
                    (audio.len() as f64, audio.len() as f64 * 0.02)
                }
            };
            assert!(
                (frames as f64 - sent).abs() <= sent * 0.05,
                "{:?}: {frames} frames read, {sent} sent",
                f.kind
            );
            assert!(
                (duration - secs).abs() <= secs * 0.05,
                "{:?}: {duration} s read, {secs} s sent",
                f.kind
            );
            assert_eq!(f.frames, Some(frames as i64));
        }
        // The audit chain has each file's hash.
        let sealed = store
            .call(|c| {
                c.query_row(
                    "SELECT count(*) FROM audit WHERE action = 'recording_file_sealed'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(sealed, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_stops_the_recording_and_keeps_what_was_written() {
        let base = scratch("full");
        let small = base.join("recordings");
        std::fs::create_dir_all(&small).unwrap();
        let mounted = Cmd::new("mount")
            .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
            .arg(&small)
            .output()
            .unwrap();
        if !mounted.status.success() {
            eprintln!(
                "\n\n*** SKIPPED: a_full_disk_stops_the_recording_and_keeps_what_was_written: \
                 mount -t tmpfs refused ({}) ***\n\n",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return;
        }
        let s = setup("full-db", Some(small.clone())).await;
        // About 200 KB of video: twice what the disk holds.
        let video = vp8_frames(&s.dir, 6, "640x480", "1000k", 30);
        describe(&s);
        let Setup {
            dir,
            store,
            mut tx,
            thread,
            room,
            mut events,
            control,
            ..
        } = s;
        let t0 = Instant::now();
        let mut cut = Vec::new();
        let mut send = |r: Recorded| cut.extend(tx.send(r));
        send(Recorded::Started {
            room: room.clone(),
            at: t0,
        });
        send(track(&room, 1, "v", MediaKind::Video, t0));
        for (_, r) in media(1, t0, &video, &[]) {
            send(r);
            // As in a call: the recorder gets time to write between packets.
            std::thread::sleep(Duration::from_micros(200));
        }
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event")
            .expect("the recorder is alive");
        let RecorderEvent::Failed { room: r, reason } = ev;
        assert_eq!(r, room);
        assert!(reason.contains("writing the recording failed"), "{reason}");
        // The media task goes on sending (the SFU is told by the hub); the
        // recorder takes it and writes nothing more.
        send(Recorded::Stopped {
            room: room.clone(),
            at: t0 + Duration::from_secs(7),
        });
        assert!(cut.is_empty(), "the queue never filled: {cut:?}");
        drop(tx);
        drop(control);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();

        let files = store
            .call(|c| tuxa_store::recordings::files_of_consultation(c, ROOM))
            .await
            .unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        let f = &files[0];
        assert_eq!(f.state, FileState::Incomplete);
        let path = small.join(f.path.as_str());
        let (size, sha) = hash_all(File::open(&path).unwrap()).unwrap();
        assert_eq!((f.size, f.sha256.clone()), (Some(size), Some(hex(&sha))));
        // What reached the disk decrypts to a WebM that plays its first
        // frames (cut after a whole cluster).
        let plain = dir.join("cut.webm");
        let summary = decrypt(&path, &ring(), &plain);
        assert!(!summary.complete);
        assert!(summary.chunks > 0);
        let (frames, _) = probe(&plain);
        assert!(frames >= 10, "{frames} frames readable");
        assert!((frames as usize) < video.len());
        let _ = Cmd::new("umount").arg(&small).output();
        let _ = std::fs::remove_dir_all(&base);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_stops_that_room_only_and_never_waits() {
        let (events_tx, mut events) = mpsc::channel(EVENT_QUEUE);
        let dir = scratch("queue");
        let (mut tx, control, thread) = spawn(RecorderConfig {
            dir: dir.join("recordings"),
            keys: Some(ring()),
            store: None,
            runtime: None,
            events: events_tx,
            queue: 4,
        })
        .unwrap();
        let a = RoomId::parse(ROOM).unwrap();
        let b = RoomId::parse("bbbbbbbbbbbbbbbb").unwrap();
        let t0 = Instant::now();
        let payload = vec![0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 1, 0, 1, 0];
        let mut cut = None;
        for n in 0..200_000u64 {
            let r = rtp(
                1,
                "v",
                MediaKind::Video,
                n,
                0,
                true,
                true,
                t0,
                payload.clone(),
            );
            if n == 0 {
                assert_eq!(
                    tx.send(Recorded::Started {
                        room: a.clone(),
                        at: t0
                    }),
                    None
                );
                assert_eq!(tx.send(track(&a, 1, "v", MediaKind::Video, t0)), None);
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(room) = tx.send(r) {
                cut = Some(room);
                break;
            }
        }
        assert_eq!(cut.as_ref(), Some(&a), "room a's recording is cut");
        assert_eq!(
            events.try_recv().ok(),
            Some(RecorderEvent::Failed {
                room: a.clone(),
                reason: "the recorder fell behind (disk too slow): recording stopped".into()
            })
        );
        // Room a's events are dropped from now on; room b is still taken.
        let r = rtp(
            1,
            "v",
            MediaKind::Video,
            9,
            0,
            true,
            true,
            t0,
            payload.clone(),
        );
        assert_eq!(tx.send(r), None);
        // Once the recorder has caught up (on a busy machine, give it time).
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(tx.send(Recorded::Started { room: b, at: t0 }), None);
        drop(tx);
        drop(control);
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
