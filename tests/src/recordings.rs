//! A recording put in place as the recorder would leave it — a sealed file
//! under `data/recordings/` with the test key (`RecordingConfig::for_tests`)
//! and its rows — for tests of reading recordings back (playback, the
//! permission matrix) that do not need a call to make one.

use std::path::Path;

use anyhow::Context;
use tuxa_protocol::{ParticipantId, Role, TrackSource};
use tuxa_recording::seal::SealWriter;
use tuxa_records::UnixTime;
use tuxa_records::recording::{
    Codec, FileOutcome, FileState, NewRecording, NewRecordingFile, RecordingFileId, RecordingPath,
    RecordingState, StartedBy, StopReason,
};
use tuxa_server::vault;

/// One sealed track: its row id, and its plaintext as written.
pub struct Seeded {
    pub file: RecordingFileId,
    pub plaintext: Vec<u8>,
    pub path: std::path::PathBuf,
}

/// Seals `plaintext` (with a `head_len`-byte head taken from its start, as
/// the muxer's header is) into a complete file of `consultation`, and
/// records it. The server may be running: SQLite takes the second writer.
pub fn seed(data_dir: &Path, consultation: &str, plaintext: &[u8]) -> anyhow::Result<Seeded> {
    let ring = vault::load_keys(&vault::RecordingConfig::for_tests().keys, data_dir)?;
    let head_len = 64.min(plaintext.len());
    let rel = format!("{consultation}/seeded-{}.webm.sealed", plaintext.len());
    let path = vault::recordings_dir(data_dir).join(&rel);
    std::fs::create_dir_all(path.parent().context("a parent")?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let (head, rest) = plaintext.split_at(head_len);
    let mut w = SealWriter::create(file, &ring, head)?;
    for piece in rest.chunks(5000) {
        w.append(piece)?;
        w.flush_chunk()?;
    }
    let sealed = w.finish(head)?;
    let mut c = rusqlite::Connection::open(data_dir.join("tuxa.sqlite3"))?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    let now = UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64,
    );
    let rec = tuxa_store::recordings::start(
        &c,
        &NewRecording {
            consultation: consultation.to_owned(),
            started_by: StartedBy {
                participant: ParticipantId(1),
                name: "BS. Ghi Hình".into(),
                staff: None,
            },
            started_at: now,
        },
    )?;
    let id = tuxa_store::recordings::open_file(
        &c,
        &NewRecordingFile {
            recording: rec,
            participant: ParticipantId(1),
            role: Role::Doctor,
            display_name: "BS. Ghi Hình".into(),
            facility: None,
            kind: tuxa_protocol::MediaKind::Video,
            source: TrackSource::Camera,
            codec: Codec::Vp8,
            segment: 0,
            path: RecordingPath::parse(&rel).context("a recording path")?,
            offset_ms: 0,
            started_at: now,
            width: Some(320),
            height: Some(240),
            key_id: sealed.key_id.0,
        },
    )?;
    let hex: String = sealed.sha256.iter().map(|b| format!("{b:02x}")).collect();
    tuxa_store::recordings::finish_file(
        &mut c,
        id,
        &FileOutcome {
            state: FileState::Complete,
            duration_ms: Some(4000),
            frames: Some(60),
            width: Some(320),
            height: Some(240),
            size: sealed.size,
            sha256: hex,
        },
        now,
    )?;
    tuxa_store::recordings::end(&c, rec, now, RecordingState::Complete, StopReason::Stopped)?;
    Ok(Seeded {
        file: id,
        plaintext: plaintext.to_vec(),
        path,
    })
}
