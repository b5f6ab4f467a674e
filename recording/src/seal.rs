//! Sealed files: a recording's bytes encrypted in chunks with AES-256-GCM,
//! sans IO over `std::io::{Read, Write, Seek}` (no sockets, no clock).
//!
//! # Format (version 1)
//!
//! A clear header ([`HEADER_LEN`] bytes):
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `TUXAREC\0` |
//! | 1 | version, 1 |
//! | 4 | master key id ([`KeyId`]), big-endian |
//! | 16 | file id, random |
//! | 4 | head length (plaintext bytes of the head chunk), big-endian |
//! | 12 | nonce of the wrapped data key, random |
//! | 48 | the file's 32-byte data key sealed with AES-256-GCM under the master key's wrapping key (ciphertext and tag); associated data: the 45 bytes above |
//!
//! then chunks, each `[len: u32 BE][flags: u8][ciphertext ‖ tag]` (`len`
//! counts ciphertext and tag), sealed with AES-256-GCM under the data key:
//!
//! - first the **head**, of a fixed plaintext length set at create: the
//!   start of the plaintext, reserved for what the muxer rewrites at finish
//!   (a WebM header with the duration). Sealed at create with flags
//!   [`HEAD`] and rewritten once at finish with flags [`HEAD_FINAL`]: each
//!   kind has its own nonce domain, so no nonce ever seals two plaintexts.
//! - then **data** chunks ([`DATA`]), numbered from 0, at most
//!   [`MAX_CHUNK`] plaintext bytes each;
//! - last the **end marker** ([`END`]), numbered after the last data chunk,
//!   whose plaintext is the data chunks' count and plaintext length. A file
//!   without it is *incomplete* (the writer died) but readable up to its
//!   last whole chunk.
//!
//! The nonce is `[kind, 0, 0, 0, index: u64 BE]`; a chunk's associated data
//! is the whole clear header, its flags and its index. So a chunk moved to
//! another place, another file or another kind does not open, and neither
//! does anything after a changed byte; the failure names the chunk.
//!
//! The plaintext a reader serves ([`SealReader::read_at`]) is the head
//! followed by the data chunks' plaintext, in order.
//!
//! # Why aws-lc-rs
//!
//! It is already in the tree (rustls, str0m and the secrets' sealing in
//! the server use it), FIPS-validated, and its `LessSafeKey` takes the
//! explicit nonces this format derives from chunk indexes; RustCrypto's
//! `aes-gcm` would add a second AES implementation to the binary for
//! nothing.

use std::io::{self, Read, Seek, SeekFrom, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest;

use crate::keys::{KeyId, KeyRing};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"TUXAREC\0";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// The clear header's length.
pub const HEADER_LEN: usize = 93;
/// A chunk's frame before its ciphertext: length (4) and flags (1).
pub const FRAME_LEN: usize = 5;
/// AES-GCM's tag.
pub const TAG_LEN: usize = 16;
/// The largest data chunk's plaintext: `append` seals a chunk when its
/// buffer reaches it.
pub const MAX_CHUNK: usize = 64 * 1024;
/// The largest head a file may reserve.
pub const MAX_HEAD: usize = 1024 * 1024;

/// Chunk flags: the head as sealed at create.
pub const HEAD: u8 = 0x01;
/// Chunk flags: the head as rewritten at finish.
pub const HEAD_FINAL: u8 = 0x02;
/// Chunk flags: a data chunk.
pub const DATA: u8 = 0x10;
/// Chunk flags: the end marker.
pub const END: u8 = 0x20;

const KEY_ID_AT: usize = 9;
const FILE_ID_AT: usize = 13;
const HEAD_LEN_AT: usize = 29;
const WRAP_NONCE_AT: usize = 33;
const WRAPPED_AT: usize = 45;
const END_PLAIN_LEN: usize = 16;

/// Which chunk of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkRef {
    /// The head chunk (the first).
    Head,
    /// Data chunk number `n` (from 0).
    Data(u64),
    /// The end marker.
    End,
}

impl std::fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkRef::Head => f.write_str("the head chunk"),
            ChunkRef::Data(n) => write!(f, "data chunk {n}"),
            ChunkRef::End => f.write_str("the end marker"),
        }
    }
}

/// What is wrong with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// It does not decrypt: altered, moved, or from another file.
    DoesNotOpen,
    /// Its frame (length or flags) cannot be a chunk's.
    BadFrame,
    /// The end marker's counts are not the file's.
    EndMismatch,
    /// Bytes follow the end marker.
    AfterEnd,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Problem::DoesNotOpen => "does not decrypt (altered, moved or from another file)",
            Problem::BadFrame => "has a frame that is not a chunk's (altered length or flags)",
            Problem::EndMismatch => "does not match the chunks before it",
            Problem::AfterEnd => "is followed by bytes that are not part of the file",
        })
    }
}

/// The first thing wrong in a file: which chunk, where, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{chunk} at byte {offset} {problem}")]
pub struct ChunkFailure {
    pub chunk: ChunkRef,
    /// The chunk frame's offset in the file.
    pub offset: u64,
    pub problem: Problem,
}

/// Why a file could not be sealed or read.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a sealed recording (no TUXAREC header)")]
    NotSealed,
    #[error("sealed recording format version {0}, this build reads version 1")]
    Version(u8),
    #[error("sealed under recording key {0}, which is not in the key ring")]
    UnknownKey(KeyId),
    #[error(
        "the data key does not unwrap under recording key {0} (a different key with that id, or an altered header)"
    )]
    WrongKey(KeyId),
    #[error("the head must keep its length ({expected} bytes, given {given})")]
    HeadLength { expected: usize, given: usize },
    #[error("a head of {0} bytes is over the limit of 1 MiB")]
    HeadTooLarge(usize),
    #[error("the system's random generator failed")]
    Random,
    #[error("damaged: {0}")]
    Damaged(ChunkFailure),
    #[error("an earlier write failed: this file takes no more")]
    Poisoned,
}

/// What [`SealWriter::finish`] leaves: the file as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// The file's size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file as it is on disk.
    pub sha256: [u8; 32],
    /// Plaintext bytes (head and data).
    pub plaintext_len: u64,
    /// Data chunks written.
    pub chunks: u64,
    pub key_id: KeyId,
}

/// What [`SealReader::verify`] found in a file whose chunks all open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub key_id: KeyId,
    pub file_id: [u8; 16],
    pub plaintext_len: u64,
    /// Data chunks.
    pub chunks: u64,
    /// Whether the end marker is there (false: the writer died).
    pub complete: bool,
    /// Bytes of a chunk cut off at the end (a crash during a write): not
    /// readable, not a failure.
    pub trailing_bytes: u64,
}

fn nonce(kind: u8, index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = kind;
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(header: &[u8; HEADER_LEN], flags: u8, index: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER_LEN + 9);
    a.extend_from_slice(header);
    a.push(flags);
    a.extend_from_slice(&index.to_be_bytes());
    a
}

fn seal_chunk(
    key: &LessSafeKey,
    header: &[u8; HEADER_LEN],
    flags: u8,
    index: u64,
    plain: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_LEN + plain.len() + TAG_LEN);
    let len = u32::try_from(plain.len() + TAG_LEN).expect("chunks are bounded");
    out.extend_from_slice(&len.to_be_bytes());
    out.push(flags);
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(
        nonce(flags, index),
        Aad::from(aad(header, flags, index)),
        &mut body,
    )
    .expect("AES-GCM seals any chunk under 4 GiB");
    out.extend_from_slice(&body);
    out
}

fn open_chunk(
    key: &LessSafeKey,
    header: &[u8; HEADER_LEN],
    flags: u8,
    index: u64,
    mut sealed: Vec<u8>,
) -> Option<Vec<u8>> {
    let n = key
        .open_in_place(
            nonce(flags, index),
            Aad::from(aad(header, flags, index)),
            &mut sealed,
        )
        .ok()?
        .len();
    sealed.truncate(n);
    Some(sealed)
}

fn fill_random(buf: &mut [u8]) -> Result<(), SealError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| SealError::Random)
}

/// SHA-256 and size of everything `r` yields (a file, from where it is).
pub fn hash_all(mut r: impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((size, out))
}

/// Writes one sealed file. The caller (the recorder thread) appends muxed
/// bytes, calls [`flush_chunk`](Self::flush_chunk) about every second so a
/// crash loses at most that, and [`finish`](Self::finish) at the end.
///
/// After a failed write (a full disk) the writer is poisoned: every later
/// call fails with [`SealError::Poisoned`], and what reached the disk
/// before stays readable as an incomplete file.
///
/// Durability is the caller's: `flush_chunk` hands the chunk to `W` (for a
/// `File`, to the kernel: it survives the process being killed); against a
/// power cut the caller also syncs the file now and then. Pass `&File`
/// (it is `Read + Write + Seek`) to keep the file for `sync_data` after
/// [`finish`](Self::finish).
pub struct SealWriter<W> {
    w: W,
    header: [u8; HEADER_LEN],
    key: LessSafeKey,
    key_id: KeyId,
    head_len: usize,
    buf: Vec<u8>,
    /// The next data chunk's number.
    index: u64,
    data_len: u64,
    /// Bytes written to `w` so far.
    written: u64,
    poisoned: bool,
}

impl<W> std::fmt::Debug for SealWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealWriter")
            .field("key_id", &self.key_id)
            .field("chunks", &self.index)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Seek> SealWriter<W> {
    /// Starts a file at `w`'s current position (its start): writes the clear
    /// header under the ring's sealing key and the head chunk holding
    /// `head`, whose length is fixed for the file's life.
    pub fn create(w: W, ring: &KeyRing, head: &[u8]) -> Result<SealWriter<W>, SealError> {
        if head.len() > MAX_HEAD {
            return Err(SealError::HeadTooLarge(head.len()));
        }
        let master = ring.sealing();
        let mut data_key = [0u8; 32];
        fill_random(&mut data_key)?;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8] = VERSION;
        header[KEY_ID_AT..FILE_ID_AT].copy_from_slice(&master.id().0.to_be_bytes());
        fill_random(&mut header[FILE_ID_AT..HEAD_LEN_AT])?;
        header[HEAD_LEN_AT..WRAP_NONCE_AT].copy_from_slice(&(head.len() as u32).to_be_bytes());
        fill_random(&mut header[WRAP_NONCE_AT..WRAPPED_AT])?;
        let mut wrap_nonce = [0u8; 12];
        wrap_nonce.copy_from_slice(&header[WRAP_NONCE_AT..WRAPPED_AT]);
        let mut wrapped = data_key.to_vec();
        master
            .wrapping_key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(&header[..WRAPPED_AT]),
                &mut wrapped,
            )
            .expect("AES-GCM seals 32 bytes");
        header[WRAPPED_AT..].copy_from_slice(&wrapped);
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &data_key).expect("a 32-byte AES-256 key"),
        );
        let head_chunk = seal_chunk(&key, &header, HEAD, 0, head);
        let mut s = SealWriter {
            w,
            header,
            key,
            key_id: master.id(),
            head_len: head.len(),
            buf: Vec::new(),
            index: 0,
            data_len: 0,
            written: 0,
            poisoned: false,
        };
        s.write(&header)?;
        s.write(&head_chunk)?;
        s.w.flush().inspect_err(|_| s.poisoned = true)?;
        Ok(s)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SealError> {
        if self.poisoned {
            return Err(SealError::Poisoned);
        }
        if let Err(e) = self.w.write_all(bytes) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Buffers `data` after what was appended before; seals a chunk each
    /// time the buffer reaches [`MAX_CHUNK`].
    pub fn append(&mut self, mut data: &[u8]) -> Result<(), SealError> {
        if self.poisoned {
            return Err(SealError::Poisoned);
        }
        while !data.is_empty() {
            let room = MAX_CHUNK - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == MAX_CHUNK {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// Seals what is buffered as one chunk and writes it out (nothing when
    /// the buffer is empty). What is flushed survives the process dying.
    pub fn flush_chunk(&mut self) -> Result<(), SealError> {
        if self.buf.is_empty() {
            return if self.poisoned {
                Err(SealError::Poisoned)
            } else {
                Ok(())
            };
        }
        let plain = std::mem::take(&mut self.buf);
        let chunk = seal_chunk(&self.key, &self.header, DATA, self.index, &plain);
        self.write(&chunk)?;
        self.w.flush().inspect_err(|_| self.poisoned = true)?;
        self.index += 1;
        self.data_len += plain.len() as u64;
        Ok(())
    }

    /// Plaintext bytes appended and not yet sealed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes written to the file so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The master key the file is sealed under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The file's random id (in its clear header).
    pub fn file_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.header[FILE_ID_AT..HEAD_LEN_AT]);
        id
    }

    /// The head's fixed length.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The writer underneath (e.g. to `sync_data` a file).
    pub fn get_ref(&self) -> &W {
        &self.w
    }
}

impl<W: Read + Write + Seek> SealWriter<W> {
    /// Seals what is buffered, writes the end marker, rewrites the head
    /// with `head` (same length as at create), and reads the file back for
    /// its SHA-256. The file is complete once this returns.
    pub fn finish(mut self, head: &[u8]) -> Result<Sealed, SealError> {
        if head.len() != self.head_len {
            return Err(SealError::HeadLength {
                expected: self.head_len,
                given: head.len(),
            });
        }
        self.flush_chunk()?;
        let mut end = [0u8; END_PLAIN_LEN];
        end[..8].copy_from_slice(&self.index.to_be_bytes());
        end[8..].copy_from_slice(&self.data_len.to_be_bytes());
        let end_chunk = seal_chunk(&self.key, &self.header, END, self.index, &end);
        self.write(&end_chunk)?;
        self.w.flush()?;
        // The end marker is on disk before the head changes: a crash in
        // between leaves a complete file whose head the reader still opens
        // (it tries both of the head's kinds).
        let head_chunk = seal_chunk(&self.key, &self.header, HEAD_FINAL, 0, head);
        self.w.seek(SeekFrom::Start((HEADER_LEN + 4) as u64))?;
        self.w.write_all(&head_chunk[4..])?;
        self.w.flush()?;
        self.w.seek(SeekFrom::Start(0))?;
        let (size, sha256) = hash_all(&mut self.w)?;
        Ok(Sealed {
            size,
            sha256,
            plaintext_len: self.head_len as u64 + self.data_len,
            chunks: self.index,
            key_id: self.key_id,
        })
    }
}

/// Where a data chunk is and what plaintext it holds.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The frame's offset in the file.
    offset: u64,
    /// Where its plaintext starts in the plaintext stream.
    plain_start: u64,
    plain_len: u32,
}

/// Reads a sealed file: by byte range for playback ([`read_at`](Self::read_at)),
/// or all of it to check it ([`verify`](Self::verify)).
///
/// `open` reads the header and the head, and walks the chunk frames
/// (lengths only, no decryption); each chunk is decrypted when read. A
/// file without end marker opens and reads up to its last whole chunk.
pub struct SealReader<R> {
    r: R,
    header: [u8; HEADER_LEN],
    key: LessSafeKey,
    key_id: KeyId,
    head: Vec<u8>,
    chunks: Vec<Entry>,
    /// The end marker was found where expected and matches.
    complete: bool,
    /// The first thing the walk could not take as a chunk (after which
    /// nothing is read).
    walk_failure: Option<ChunkFailure>,
    trailing_bytes: u64,
    /// The last data chunk decrypted (playback reads in order).
    cache: Option<(usize, Vec<u8>)>,
}

impl<R> std::fmt::Debug for SealReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealReader")
            .field("key_id", &self.key_id)
            .field("chunks", &self.chunks.len())
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

fn read_exact_at<R: Read + Seek>(r: &mut R, at: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(buf)
}

impl<R: Read + Seek> SealReader<R> {
    /// Opens a sealed file with the ring's key of the id in its header.
    pub fn open(mut r: R, ring: &KeyRing) -> Result<SealReader<R>, SealError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        let mut header = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            return Err(SealError::NotSealed);
        }
        read_exact_at(&mut r, 0, &mut header)?;
        if &header[..8] != MAGIC {
            return Err(SealError::NotSealed);
        }
        if header[8] != VERSION {
            return Err(SealError::Version(header[8]));
        }
        let key_id = KeyId(u32::from_be_bytes(
            header[KEY_ID_AT..FILE_ID_AT].try_into().expect("4 bytes"),
        ));
        let master = ring.get(key_id).ok_or(SealError::UnknownKey(key_id))?;
        let mut wrap_nonce = [0u8; 12];
        wrap_nonce.copy_from_slice(&header[WRAP_NONCE_AT..WRAPPED_AT]);
        let mut wrapped = header[WRAPPED_AT..].to_vec();
        let data_key = master
            .wrapping_key()
            .open_in_place(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(&header[..WRAPPED_AT]),
                &mut wrapped,
            )
            .map_err(|_| SealError::WrongKey(key_id))?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, data_key).expect("a 32-byte AES-256 key"),
        );
        let head_len = u32::from_be_bytes(
            header[HEAD_LEN_AT..WRAP_NONCE_AT]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let head_failure = |problem| {
            SealError::Damaged(ChunkFailure {
                chunk: ChunkRef::Head,
                offset: HEADER_LEN as u64,
                problem,
            })
        };
        let head_end = (HEADER_LEN + FRAME_LEN + head_len + TAG_LEN) as u64;
        if head_len > MAX_HEAD || head_end > file_len {
            return Err(head_failure(Problem::BadFrame));
        }
        let mut frame = [0u8; FRAME_LEN];
        read_exact_at(&mut r, HEADER_LEN as u64, &mut frame)?;
        let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        if len != head_len + TAG_LEN || !matches!(frame[4], HEAD | HEAD_FINAL) {
            return Err(head_failure(Problem::BadFrame));
        }
        let mut sealed = vec![0u8; len];
        r.read_exact(&mut sealed)?;
        // The flags say which head this is; the other is tried too, for a
        // crash between the two bytes of a rewrite (see `finish`).
        let other = if frame[4] == HEAD { HEAD_FINAL } else { HEAD };
        let head = open_chunk(&key, &header, frame[4], 0, sealed.clone())
            .or_else(|| open_chunk(&key, &header, other, 0, sealed))
            .ok_or_else(|| head_failure(Problem::DoesNotOpen))?;

        let mut s = SealReader {
            r,
            header,
            key,
            key_id,
            head,
            chunks: Vec::new(),
            complete: false,
            walk_failure: None,
            trailing_bytes: 0,
            cache: None,
        };
        s.walk(head_end, file_len)?;
        Ok(s)
    }

    /// Walks the frames after the head: data chunks, then the end marker.
    fn walk(&mut self, mut at: u64, file_len: u64) -> Result<(), SealError> {
        let mut plain = self.head.len() as u64;
        loop {
            if at == file_len {
                return Ok(());
            }
            let index = self.chunks.len() as u64;
            if at + FRAME_LEN as u64 > file_len {
                self.trailing_bytes = file_len - at;
                return Ok(());
            }
            let mut frame = [0u8; FRAME_LEN];
            read_exact_at(&mut self.r, at, &mut frame)?;
            let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as u64;
            let (chunk, max) = match frame[4] {
                DATA => (ChunkRef::Data(index), MAX_CHUNK),
                END => (ChunkRef::End, END_PLAIN_LEN),
                _ => (ChunkRef::Data(index), 0),
            };
            let fail = |problem| ChunkFailure {
                chunk,
                offset: at,
                problem,
            };
            if max == 0 || len <= TAG_LEN as u64 || len > (max + TAG_LEN) as u64 {
                self.walk_failure = Some(fail(Problem::BadFrame));
                return Ok(());
            }
            let next = at + FRAME_LEN as u64 + len;
            if next > file_len {
                // A chunk cut short by a crash: the file ends before it.
                self.trailing_bytes = file_len - at;
                return Ok(());
            }
            if frame[4] == END {
                let mut sealed = vec![0u8; len as usize];
                self.r.read_exact(&mut sealed)?;
                let Some(end) = open_chunk(&self.key, &self.header, END, index, sealed) else {
                    self.walk_failure = Some(fail(Problem::DoesNotOpen));
                    return Ok(());
                };
                let count = u64::from_be_bytes(end[..8].try_into().expect("8 bytes"));
                let data = u64::from_be_bytes(end[8..16].try_into().expect("8 bytes"));
                if end.len() != END_PLAIN_LEN
                    || count != index
                    || data != plain - self.head.len() as u64
                {
                    self.walk_failure = Some(fail(Problem::EndMismatch));
                    return Ok(());
                }
                if next != file_len {
                    self.walk_failure = Some(fail(Problem::AfterEnd));
                    return Ok(());
                }
                self.complete = true;
                return Ok(());
            }
            let plain_len = (len - TAG_LEN as u64) as u32;
            self.chunks.push(Entry {
                offset: at,
                plain_start: plain,
                plain_len,
            });
            plain += u64::from(plain_len);
            at = next;
        }
    }

    /// The readable plaintext's length: the head and every whole data chunk.
    pub fn plaintext_len(&self) -> u64 {
        self.chunks.last().map_or(self.head.len() as u64, |e| {
            e.plain_start + u64::from(e.plain_len)
        })
    }

    /// Whether the file has its end marker (false: the writer died, or the
    /// file was cut; it reads up to its last whole chunk).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The master key the file is sealed under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The file's random id.
    pub fn file_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.header[FILE_ID_AT..HEAD_LEN_AT]);
        id
    }

    /// The head's plaintext (the start of the plaintext stream).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Whole data chunks found.
    pub fn chunks(&self) -> u64 {
        self.chunks.len() as u64
    }

    fn decrypt(&mut self, i: usize) -> Result<&[u8], SealError> {
        if self.cache.as_ref().is_none_or(|(c, _)| *c != i) {
            let e = self.chunks[i];
            let mut sealed = vec![0u8; e.plain_len as usize + TAG_LEN];
            read_exact_at(&mut self.r, e.offset + FRAME_LEN as u64, &mut sealed)?;
            let plain = open_chunk(&self.key, &self.header, DATA, i as u64, sealed).ok_or(
                SealError::Damaged(ChunkFailure {
                    chunk: ChunkRef::Data(i as u64),
                    offset: e.offset,
                    problem: Problem::DoesNotOpen,
                }),
            )?;
            self.cache = Some((i, plain));
        }
        Ok(&self.cache.as_ref().expect("just filled").1)
    }

    /// Reads plaintext from `offset` into `buf`: any byte range (HTTP range
    /// requests), across chunk edges. Returns the bytes read, 0 at or past
    /// the end of the readable plaintext. A chunk that does not open is an
    /// error naming it; nothing of it is returned.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, SealError> {
        let mut done = 0;
        let head_len = self.head.len() as u64;
        while done < buf.len() {
            let at = offset + done as u64;
            if at < head_len {
                let from = at as usize;
                let n = (self.head.len() - from).min(buf.len() - done);
                buf[done..done + n].copy_from_slice(&self.head[from..from + n]);
                done += n;
                continue;
            }
            // The chunk holding `at`: the last one starting at or before it.
            let i = self.chunks.partition_point(|e| e.plain_start <= at);
            if i == 0 {
                break;
            }
            let i = i - 1;
            let e = self.chunks[i];
            let within = (at - e.plain_start) as usize;
            if within >= e.plain_len as usize {
                break;
            }
            let plain = self.decrypt(i)?;
            let n = (plain.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&plain[within..within + n]);
            done += n;
        }
        Ok(done)
    }

    /// Decrypts every chunk. `Ok`: every whole chunk opens (the file may
    /// still be incomplete: see [`Summary::complete`]); `Err`: the first
    /// chunk that does not, or the first frame that is not a chunk's.
    pub fn verify(&mut self) -> Result<Summary, ChunkFailure> {
        for i in 0..self.chunks.len() {
            match self.decrypt(i) {
                Ok(_) => {}
                Err(SealError::Damaged(f)) => return Err(f),
                Err(_) => {
                    return Err(ChunkFailure {
                        chunk: ChunkRef::Data(i as u64),
                        offset: self.chunks[i].offset,
                        problem: Problem::DoesNotOpen,
                    });
                }
            }
        }
        if let Some(f) = self.walk_failure {
            return Err(f);
        }
        Ok(Summary {
            key_id: self.key_id,
            file_id: self.file_id(),
            plaintext_len: self.plaintext_len(),
            chunks: self.chunks(),
            complete: self.complete,
            trailing_bytes: self.trailing_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::keys::{KEY_LEN, MasterKey};

    fn ring(keys: &[(u32, u8)]) -> KeyRing {
        KeyRing::new(
            keys.iter()
                .map(|(id, b)| MasterKey::new(KeyId(*id), [*b; KEY_LEN])),
        )
        .unwrap()
    }

    /// Bytes that differ at every position (a shifted chunk cannot match).
    fn data(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Writes through a shared Vec so a test can see the bytes after
    /// `finish` consumed the writer.
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Cursor<Vec<u8>>>>);

    impl Read for Shared {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.borrow_mut().read(b)
        }
    }
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Shared {
        fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
            self.0.borrow_mut().seek(p)
        }
    }

    const HEAD0: [u8; 40] = [7u8; 40];

    fn head1() -> [u8; 40] {
        let mut h = [0u8; 40];
        h[..5].copy_from_slice(b"final");
        h
    }

    /// A finished file of `parts` (each flushed as one chunk, split at
    /// MAX_CHUNK by append), its bytes and what finish said.
    fn file(ring: &KeyRing, parts: &[Vec<u8>]) -> (Vec<u8>, Sealed) {
        let out = Shared::default();
        let mut w = SealWriter::create(out.clone(), ring, &HEAD0).unwrap();
        for p in parts {
            w.append(p).unwrap();
            w.flush_chunk().unwrap();
        }
        let s = w.finish(&head1()).unwrap();
        let bytes = out.0.borrow().get_ref().clone();
        (bytes, s)
    }

    fn unfinished(ring: &KeyRing, parts: &[Vec<u8>], buffered: &[u8]) -> Vec<u8> {
        let out = Shared::default();
        let mut w = SealWriter::create(out.clone(), ring, &HEAD0).unwrap();
        for p in parts {
            w.append(p).unwrap();
            w.flush_chunk().unwrap();
        }
        // Appended but never flushed: lost with the process, like a kill -9.
        w.append(buffered).unwrap();
        drop(w);
        out.0.borrow().get_ref().clone()
    }

    fn read_all<R: Read + Seek>(r: &mut SealReader<R>) -> Vec<u8> {
        let mut out = vec![0u8; r.plaintext_len() as usize + 10];
        let n = r.read_at(0, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn parts() -> Vec<Vec<u8>> {
        vec![data(1000, 1), data(70_000, 2), data(1, 3), data(30_000, 4)]
    }

    fn chunk_offsets(bytes: &[u8]) -> Vec<(u64, u8)> {
        let mut at = HEADER_LEN;
        let mut out = Vec::new();
        while at + FRAME_LEN <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push((at as u64, bytes[at + 4]));
            at += FRAME_LEN + len;
        }
        out
    }

    #[test]
    fn a_file_round_trips_with_its_rewritten_head() {
        let ring = ring(&[(1, 1)]);
        let (bytes, s) = file(&ring, &parts());
        let plain: Vec<u8> = head1().iter().copied().chain(parts().concat()).collect();
        assert_eq!(s.size, bytes.len() as u64);
        assert_eq!(s.sha256, hash_all(&bytes[..]).unwrap().1);
        assert_eq!(s.plaintext_len, plain.len() as u64);
        // 70 000 bytes are two chunks (64 KiB and the rest).
        assert_eq!(s.chunks, 5);
        assert_eq!(s.key_id, KeyId(1));
        let mut r = SealReader::open(Cursor::new(bytes.clone()), &ring).unwrap();
        assert!(r.complete());
        assert_eq!(r.head(), &head1());
        assert_eq!(r.plaintext_len(), plain.len() as u64);
        assert_eq!(read_all(&mut r), plain);
        let v = r.verify().unwrap();
        assert!(v.complete);
        assert_eq!(v.chunks, 5);
        assert_eq!(v.trailing_bytes, 0);
        // Nothing of the plaintext is in the file.
        let secret = &parts()[1][100..132];
        assert!(!bytes.windows(32).any(|w| w == secret));
        // The head was rewritten under its own nonce domain.
        assert_eq!(bytes[HEADER_LEN + 4], HEAD_FINAL);
    }

    #[test]
    fn any_range_reads_across_chunk_edges() {
        let ring = ring(&[(1, 1)]);
        let (bytes, _) = file(&ring, &parts());
        let plain: Vec<u8> = head1().iter().copied().chain(parts().concat()).collect();
        let mut r = SealReader::open(Cursor::new(bytes), &ring).unwrap();
        let edges = [40u64, 1040, 1040 + 65_536, 71_040, 71_041];
        for &edge in &edges {
            for (back, len) in [(0u64, 1usize), (1, 2), (10, 100), (3, 70_000), (0, 0)] {
                let from = edge.saturating_sub(back);
                let mut buf = vec![0u8; len];
                let n = r.read_at(from, &mut buf).unwrap();
                let want = &plain[from as usize..(from as usize + len).min(plain.len())];
                assert_eq!(&buf[..n], want, "from {from} len {len}");
            }
        }
        // Backwards, out of order, inside the head, past the end.
        let mut buf = [0u8; 50];
        assert_eq!(r.read_at(20, &mut buf).unwrap(), 50);
        assert_eq!(&buf[..], &plain[20..70]);
        let end = plain.len() as u64;
        assert_eq!(r.read_at(end - 5, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], &plain[plain.len() - 5..]);
        assert_eq!(r.read_at(end, &mut buf).unwrap(), 0);
        assert_eq!(r.read_at(end + 1000, &mut buf).unwrap(), 0);
        assert_eq!(r.read_at(u64::MAX - 3, &mut buf).unwrap(), 0);
    }

    #[test]
    fn a_tampered_byte_names_its_chunk() {
        let ring = ring(&[(1, 1)]);
        let (bytes, _) = file(&ring, &parts());
        let chunks = chunk_offsets(&bytes);
        // [head, data 0..=4, end]
        assert_eq!(chunks.len(), 7);
        let (at, _) = chunks[3];
        let mut bad = bytes.clone();
        bad[at as usize + FRAME_LEN + 10] ^= 0x01;
        let mut r = SealReader::open(Cursor::new(bad), &ring).unwrap();
        let f = r.verify().unwrap_err();
        assert_eq!(
            f,
            ChunkFailure {
                chunk: ChunkRef::Data(2),
                offset: at,
                problem: Problem::DoesNotOpen
            }
        );
        assert!(f.to_string().contains("data chunk 2"), "{f}");
        // What is before it still reads; the damaged range is an error, never wrong bytes.
        let mut buf = [0u8; 100];
        assert_eq!(r.read_at(100, &mut buf).unwrap(), 100);
        assert!(matches!(
            r.read_at(1040 + 65_536, &mut buf),
            Err(SealError::Damaged(ChunkFailure {
                chunk: ChunkRef::Data(2),
                ..
            }))
        ));

        // A changed length breaks the frame walk at that chunk.
        let mut bad = bytes.clone();
        bad[chunks[2].0 as usize + 3] ^= 0x04;
        let mut r = SealReader::open(Cursor::new(bad), &ring).unwrap();
        let f = r.verify().unwrap_err();
        assert_eq!(f.chunk, ChunkRef::Data(1));

        // The head, and the header (the data key's wrapping covers it).
        let mut bad = bytes.clone();
        bad[HEADER_LEN + FRAME_LEN + 1] ^= 0x80;
        assert!(matches!(
            SealReader::open(Cursor::new(bad), &ring),
            Err(SealError::Damaged(ChunkFailure {
                chunk: ChunkRef::Head,
                ..
            }))
        ));
        let mut bad = bytes.clone();
        bad[FILE_ID_AT] ^= 0x01;
        assert!(matches!(
            SealReader::open(Cursor::new(bad), &ring),
            Err(SealError::WrongKey(KeyId(1)))
        ));
        // The end marker.
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x01;
        let mut r = SealReader::open(Cursor::new(bad), &ring).unwrap();
        assert!(!r.complete());
        assert_eq!(r.verify().unwrap_err().chunk, ChunkRef::End);
        // Bytes after the end marker.
        let mut bad = bytes.clone();
        bad.extend_from_slice(b"x");
        let mut r = SealReader::open(Cursor::new(bad), &ring).unwrap();
        assert_eq!(r.verify().unwrap_err().problem, Problem::AfterEnd);
    }

    #[test]
    fn a_cut_file_is_incomplete_and_reads_to_its_last_whole_chunk() {
        let ring = ring(&[(1, 1)]);
        // The writer died: two chunks flushed, some bytes only buffered.
        let bytes = unfinished(&ring, &[data(500, 1), data(600, 2)], &data(300, 3));
        let mut r = SealReader::open(Cursor::new(bytes.clone()), &ring).unwrap();
        assert!(!r.complete());
        assert_eq!(r.plaintext_len(), 40 + 1100);
        let plain: Vec<u8> = HEAD0
            .iter()
            .copied()
            .chain(data(500, 1))
            .chain(data(600, 2))
            .collect();
        assert_eq!(read_all(&mut r), plain);
        let v = r.verify().unwrap();
        assert!(!v.complete);
        assert_eq!(v.trailing_bytes, 0);

        // Died in the middle of writing the second chunk.
        for cut in [1, 4, 5, 100, 600 + TAG_LEN + FRAME_LEN - 1] {
            let short = &bytes[..bytes.len() - cut];
            let mut r = SealReader::open(Cursor::new(short.to_vec()), &ring).unwrap();
            assert!(!r.complete());
            assert_eq!(r.plaintext_len(), 540, "cut {cut}");
            assert_eq!(read_all(&mut r), &plain[..540]);
            let v = r.verify().unwrap();
            assert_eq!(v.trailing_bytes, (600 + TAG_LEN + FRAME_LEN - cut) as u64);
        }

        // A finished file cut before its end marker: incomplete too.
        let (bytes, _) = file(&ring, &parts());
        let chunks = chunk_offsets(&bytes);
        let end_at = chunks.last().unwrap().0 as usize;
        let r = SealReader::open(Cursor::new(bytes[..end_at].to_vec()), &ring).unwrap();
        assert!(!r.complete());
        assert_eq!(r.plaintext_len(), 40 + 101_001);

        // Too short for a header, or not a sealed file at all.
        assert!(matches!(
            SealReader::open(Cursor::new(bytes[..50].to_vec()), &ring),
            Err(SealError::NotSealed)
        ));
        assert!(matches!(
            SealReader::open(Cursor::new(vec![0u8; 500]), &ring),
            Err(SealError::NotSealed)
        ));
    }

    #[test]
    fn swapped_chunks_do_not_open() {
        let ring = ring(&[(1, 1)]);
        let same = vec![data(2000, 1), data(2000, 2), data(2000, 3)];
        let (bytes, _) = file(&ring, &same);
        let chunks = chunk_offsets(&bytes);
        let len = FRAME_LEN + 2000 + TAG_LEN;
        let (a, b) = (chunks[1].0 as usize, chunks[2].0 as usize);
        let mut swapped = bytes.clone();
        swapped[a..a + len].copy_from_slice(&bytes[b..b + len]);
        swapped[b..b + len].copy_from_slice(&bytes[a..a + len]);
        let mut r = SealReader::open(Cursor::new(swapped), &ring).unwrap();
        assert_eq!(r.verify().unwrap_err().chunk, ChunkRef::Data(0));

        // The same chunk of another file under the same key, same place.
        let (other, _) = file(&ring, &same);
        let mut mixed = bytes.clone();
        mixed[b..b + len].copy_from_slice(&other[b..b + len]);
        let mut r = SealReader::open(Cursor::new(mixed), &ring).unwrap();
        assert_eq!(r.verify().unwrap_err().chunk, ChunkRef::Data(1));

        // A data chunk relabelled as the end marker.
        let mut relabelled = bytes.clone();
        relabelled.truncate(chunks[3].0 as usize + len);
        relabelled[chunks[3].0 as usize + 4] = END;
        let mut r = SealReader::open(Cursor::new(relabelled), &ring).unwrap();
        assert_eq!(r.verify().unwrap_err().chunk, ChunkRef::End);
    }

    #[test]
    fn a_wrong_or_missing_key_is_told_apart() {
        let (bytes, _) = file(&ring(&[(1, 1)]), &parts());
        assert!(matches!(
            SealReader::open(Cursor::new(bytes.clone()), &ring(&[(1, 9)])),
            Err(SealError::WrongKey(KeyId(1)))
        ));
        let e = SealReader::open(Cursor::new(bytes), &ring(&[(2, 1)])).unwrap_err();
        assert!(matches!(e, SealError::UnknownKey(KeyId(1))));
        assert!(e.to_string().contains("recording key 1"), "{e}");
    }

    #[test]
    fn rotation_keeps_old_files_open_and_seals_new_ones_with_the_new_key() {
        let old = ring(&[(1, 1)]);
        let (before, s) = file(&old, &parts());
        assert_eq!(s.key_id, KeyId(1));
        let rotated = ring(&[(1, 1), (2, 2)]);
        let mut r = SealReader::open(Cursor::new(before), &rotated).unwrap();
        assert_eq!(r.key_id(), KeyId(1));
        assert!(r.verify().unwrap().complete);
        let (after, s) = file(&rotated, &parts());
        assert_eq!(s.key_id, KeyId(2));
        assert!(SealReader::open(Cursor::new(after.clone()), &rotated).is_ok());
        assert!(matches!(
            SealReader::open(Cursor::new(after), &old),
            Err(SealError::UnknownKey(KeyId(2)))
        ));
    }

    #[test]
    fn the_head_keeps_its_length_and_a_failed_write_poisons() {
        let ring = ring(&[(1, 1)]);
        let w = SealWriter::create(Shared::default(), &ring, &HEAD0).unwrap();
        assert!(matches!(
            w.finish(&[0u8; 41]),
            Err(SealError::HeadLength {
                expected: 40,
                given: 41
            })
        ));
        assert!(matches!(
            SealWriter::create(Shared::default(), &ring, &vec![0u8; MAX_HEAD + 1]),
            Err(SealError::HeadTooLarge(_))
        ));

        /// A disk that fills after `room` bytes.
        struct Full {
            inner: Cursor<Vec<u8>>,
            room: usize,
        }
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.inner.get_ref().len() + b.len() > self.room {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
                }
                self.inner.write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Seek for Full {
            fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
                self.inner.seek(p)
            }
        }
        let mut w = SealWriter::create(
            Full {
                inner: Cursor::new(Vec::new()),
                room: 1000,
            },
            &ring,
            &HEAD0,
        )
        .unwrap();
        w.append(&data(300, 1)).unwrap();
        w.flush_chunk().unwrap();
        w.append(&data(2000, 2)).unwrap();
        assert!(matches!(w.flush_chunk(), Err(SealError::Io(_))));
        assert!(matches!(w.append(b"x"), Err(SealError::Poisoned)));
        assert!(matches!(w.flush_chunk(), Err(SealError::Poisoned)));
        // What reached the disk before reads back.
        let bytes = w.get_ref().inner.get_ref().clone();
        let mut r = SealReader::open(Cursor::new(bytes), &ring).unwrap();
        assert_eq!(r.plaintext_len(), 340);
        assert!(!r.verify().unwrap().complete);
    }

    /// A real file, passed by reference so it can be synced after finish,
    /// with SHA-256 and size as `sha256sum` would see them.
    #[test]
    fn a_file_by_reference_is_kept_for_syncing() {
        let ring = ring(&[(3, 3)]);
        let path = std::env::temp_dir().join(format!("tuxa-seal-{}.sealed", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut w = SealWriter::create(&file, &ring, &HEAD0).unwrap();
        w.append(&data(100_000, 9)).unwrap();
        let s = w.finish(&head1()).unwrap();
        file.sync_data().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(s.size, on_disk.len() as u64);
        assert_eq!(s.sha256, hash_all(&on_disk[..]).unwrap().1);
        let mut r = SealReader::open(std::fs::File::open(&path).unwrap(), &ring).unwrap();
        assert_eq!(r.verify().unwrap().plaintext_len, 100_040);
        let _ = std::fs::remove_file(&path);
    }
}
