//! Recordings, read back: a consultation's recordings listed, the player
//! page (web-client/player.js), and each track streamed — decrypted on the
//! fly, by byte range, so a player seeks without reading the whole file —
//! or downloaded as the standard file it is inside its seal (WebM).
//!
//! Who may: the record's readers (`authz::Permission::Export`, as for
//! `record.json` and the minutes; docs/api.md "Who may call what"). A
//! recording is part of the record, and seeing a patient's face is at least
//! as sensitive as reading their conclusion.
//!
//! Every download and every opened stream is in the audit chain. A player
//! asks for many ranges of one file as it plays and seeks; the audit counts
//! a view when a stream is opened from its start (`Range: bytes=0-` or no
//! range), which is how a browser's media element begins, not every range.
//!
//! Streams are bounded: at most [`crate::vault::MAX_STREAMS`] at once for the whole
//! server (each holds a blocking thread while it decrypts), beyond which a
//! request is refused with `rate_limited` rather than queued.

use std::fs::File;
use std::io;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tuxa_protocol::ErrorCode;
use tuxa_recording::keys::KeyRing;
use tuxa_recording::seal::SealReader;
use tuxa_records::authz::Permission;
use tuxa_records::recording::{Codec, FileState, RecordingFile, RecordingFileId};

use crate::app::AppState;
use crate::audit::Action;
use crate::authz::Actor;
use crate::error::{ApiError, ApiResult};
use crate::gate::{Access, Routes};

/// One piece of a streamed body: a few sealed chunks' worth.
const PIECE: usize = 64 * 1024;
/// Pieces decrypted ahead of a slow client.
const PIECES_AHEAD: usize = 4;

pub fn routes() -> Routes {
    Routes::new()
        .get("/consultations/{id}/recordings", Access::STAFF, page)
        .get("/api/v1/consultations/{id}/recordings", Access::STAFF, list)
        .get("/api/v1/recordings/{file}", Access::STAFF, media)
}

/// The page holds nothing; what it shows comes from [`list`], which checks
/// who asks.
async fn page() -> Response {
    crate::web::player_page().await
}

fn media_type(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "audio/webm",
        Codec::Vp8 | Codec::Vp9 | Codec::Av1 => "video/webm",
        Codec::H264 => "video/x-matroska",
    }
}

fn extension(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "mkv",
        _ => "webm",
    }
}

fn track_json(f: &RecordingFile) -> serde_json::Value {
    let url = format!("/api/v1/recordings/{}", f.id);
    json!({
        "id": f.id,
        "participant_id": f.participant.0,
        "name": f.display_name,
        "role": f.role,
        "facility": f.facility,
        "kind": tuxa_records::recording::kind_as_str(f.kind),
        "source": tuxa_records::recording::source_as_str(f.source),
        "codec": f.codec.as_str(),
        "segment": f.segment,
        "offset_ms": f.offset_ms,
        "started_at": f.started_at.0,
        "duration_ms": f.duration_ms.unwrap_or(0),
        "frames": f.frames,
        "width": f.width,
        "height": f.height,
        "size": f.size.unwrap_or(0),
        "sha256": f.sha256.clone().unwrap_or_default(),
        "key_id": f.key_id,
        "state": f.state.as_str(),
        "content_type": media_type(f.codec),
        "media_url": url,
        "download_url": format!("{url}?download=1"),
    })
}

/// `GET /api/v1/consultations/{id}/recordings`: every recording of the
/// consultation with its tracks (who, what, when on the room's clock, size,
/// SHA-256, state).
async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = crate::app::load_for(&state, &actor, &id, Permission::Export).await?;
    let cid = row.id.clone();
    let (recs, files) = state
        .store
        .call(move |c| {
            Ok((
                tuxa_store::recordings::of_consultation(c, &cid)?,
                tuxa_store::recordings::files_of_consultation(c, &cid)?,
            ))
        })
        .await
        .map_err(internal)?;
    let recordings: Vec<_> = recs
        .iter()
        .map(|r| {
            let tracks: Vec<_> = files
                .iter()
                .filter(|f| f.recording == r.id && f.state != FileState::Purged)
                .map(track_json)
                .collect();
            json!({
                "id": r.id,
                "state": r.state.as_str(),
                "started_at": r.started_at.0,
                "ended_at": r.ended_at.map(|t| t.0),
                "started_by": r.started_by.name,
                "stop_reason": r.stop_reason.map(|s| s.as_str()),
                "tracks": tracks,
            })
        })
        .collect();
    let mut res = axum::Json(json!({
        "consultation_id": row.id,
        "available": state.recordings.keys.available(),
        "recordings": recordings,
    }))
    .into_response();
    no_store(&mut res);
    Ok(res)
}

#[derive(Debug, Deserialize)]
struct MediaQuery {
    #[serde(default)]
    download: Option<String>,
}

/// A byte range asked for, resolved against the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// No (usable) `Range`: the whole file, `200`.
    Whole,
    /// `206` with these inclusive bounds.
    Part(u64, u64),
    /// `416`: starts at or past the end.
    Unsatisfiable,
}

/// Reads a `Range` header (RFC 9110 §14): one `bytes` range, `a-b`, `a-` or
/// `-n`. Anything else (several ranges, other units, garbage) is ignored, as
/// the RFC allows, and the whole file is sent.
fn wanted(range: Option<&HeaderValue>, len: u64) -> Wanted {
    let Some(spec) = range
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last n bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Wanted::Whole;
        };
        if n == 0 || len == 0 {
            return Wanted::Unsatisfiable;
        }
        return Wanted::Part(len.saturating_sub(n), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return Wanted::Whole;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return Wanted::Whole,
        }
    };
    if start >= len {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part(start, end)
}

/// `GET /api/v1/recordings/{file}` (`?download=1` for a file to save).
async fn media(
    State(state): State<AppState>,
    actor: Actor,
    Path(file): Path<String>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such recording");
    let id = file
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(RecordingFileId)
        .ok_or_else(not_found)?;
    let f = state
        .store
        .call(move |c| tuxa_store::recordings::file(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    // Whether the file exists is not told to those who may not see it.
    crate::app::load_for(&state, &actor, &f.consultation, Permission::Export).await?;
    if f.state == FileState::Purged {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this recording was deleted at the end of its retention period",
        ));
    }
    let Some(ring) = state.recordings.keys.ring().cloned() else {
        return Err(ApiError::new(
            ErrorCode::RecordingUnavailable,
            "recordings are unavailable: the server has no recording key (see docs/recording.md)",
        ));
    };
    let Ok(permit) = state.recordings.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many recordings are being streamed; try again shortly",
        ));
    };
    let path = state.recordings.dir.join(f.path.as_str());
    let opened = tokio::task::spawn_blocking(move || open(&path, &ring))
        .await
        .map_err(internal)?;
    let reader = match opened {
        Ok(r) => r,
        Err(Opening::Missing) => {
            tracing::error!(
                "recording file {} ({}) is missing; run `tuxa verify-recordings`",
                f.id,
                f.path
            );
            return Err(ApiError::new(
                ErrorCode::Internal,
                "the recording's file is missing; the operator is told in the log",
            ));
        }
        Err(Opening::Damaged(why)) => {
            tracing::error!(
                "recording file {} ({}) does not open: {why}; run `tuxa verify-recordings`",
                f.id,
                f.path
            );
            return Err(ApiError::new(
                ErrorCode::Internal,
                "the recording's file fails its integrity check; the operator is told in the log",
            ));
        }
    };
    let len = reader.plaintext_len();
    let download = q
        .download
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true");
    let got = wanted(headers.get(header::RANGE), len);
    let (status, start, end) = match got {
        Wanted::Whole => (StatusCode::OK, 0, len),
        Wanted::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Wanted::Unsatisfiable => {
            let mut res = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).map_err(internal)?,
            );
            no_store(&mut res);
            return Ok(res);
        }
    };
    if download || start == 0 {
        let action = if download {
            Action::RecordingDownloaded
        } else {
            Action::RecordingViewed
        };
        crate::app::audit(
            &state,
            action,
            Some(&f.consultation),
            &actor.audit_name(),
            json!({
                "recording": f.recording,
                "file": f.id,
                "participant": f.participant.0,
                "kind": tuxa_records::recording::kind_as_str(f.kind),
                "segment": f.segment,
                "sha256": f.sha256,
            }),
        );
    }
    let body = stream(reader, start, end, permit);
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_type(f.codec)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)).map_err(internal)?,
        );
    }
    if download {
        let name = format!(
            "tuxa-{}-rec{}-p{}-{}-{}.{}",
            f.consultation,
            f.recording,
            f.participant.0,
            tuxa_records::recording::kind_as_str(f.kind),
            f.segment,
            extension(f.codec)
        );
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).map_err(internal)?,
        );
    }
    no_store(&mut res);
    Ok(res)
}

enum Opening {
    Missing,
    Damaged(String),
}

fn open(path: &std::path::Path, ring: &KeyRing) -> Result<SealReader<File>, Opening> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Opening::Missing),
        Err(e) => return Err(Opening::Damaged(e.to_string())),
    };
    SealReader::open(file, ring).map_err(|e| Opening::Damaged(e.to_string()))
}

/// The plaintext of `[start, end)`, decrypted on a blocking thread a few
/// pieces ahead of the client; a client that goes away stops it.
fn stream(
    mut reader: SealReader<File>,
    start: u64,
    end: u64,
    permit: OwnedSemaphorePermit,
) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(PIECES_AHEAD);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(PIECE);
            let mut buf = vec![0u8; n];
            let got = match reader.read_at(at, &mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the recording ended early",
                    )));
                    return;
                }
                Ok(got) => got,
                Err(e) => {
                    // The status line is gone: all that is left is to cut
                    // the body short, which the client sees as an error.
                    tracing::error!("recording stream: {e}; run `tuxa verify-recordings`");
                    let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
                    return;
                }
            };
            buf.truncate(got);
            at += got as u64;
            if tx.blocking_send(Ok(buf)).is_err() {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }))
}

fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("recordings: {e}");
    ApiError::new(ErrorCode::Internal, "internal error; see the server log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let w = |s: &str, len| wanted(r(s).as_ref(), len);
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(w("bytes=0-", 100), Wanted::Part(0, 99));
        assert_eq!(w("bytes=10-19", 100), Wanted::Part(10, 19));
        assert_eq!(
            w("bytes=90-500", 100),
            Wanted::Part(90, 99),
            "clipped to the end"
        );
        assert_eq!(w("bytes=-10", 100), Wanted::Part(90, 99), "a suffix");
        assert_eq!(w("bytes=-500", 100), Wanted::Part(0, 99));
        assert_eq!(w("bytes=100-", 100), Wanted::Unsatisfiable, "at the end");
        assert_eq!(w("bytes=500-600", 100), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0", 100), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=0-", 0), Wanted::Unsatisfiable, "an empty file");
        // Ignored, as the RFC allows: the whole file.
        assert_eq!(w("bytes=0-1,5-6", 100), Wanted::Whole);
        assert_eq!(w("items=0-1", 100), Wanted::Whole);
        assert_eq!(w("bytes=9-3", 100), Wanted::Whole);
        assert_eq!(w("bytes=x-", 100), Wanted::Whole);
    }
}
