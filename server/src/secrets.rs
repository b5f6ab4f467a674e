//! Secrets at rest: the join-token key and every staff TOTP secret are
//! sealed (AES-256-GCM) under a master key kept outside the data directory,
//! so that a copy of the SQLite file, or a backup of `data/`, gives neither
//! away (docs/security.md, "Data at rest and keys").
//!
//! A sealed value is `enc1:` ‖ key id (8 bytes) ‖ nonce (12) ‖ ciphertext ‖
//! tag (16). The key id names the master key that sealed it, so that a wrong
//! key is told apart from a damaged value, and values sealed under an older
//! key can be opened while they are re-sealed (key rotation). The AEAD's
//! associated data says what the value is for ([`Purpose`]): a sealed TOTP
//! secret cannot be passed off as the token key.
//!
//! Values written before sealing existed (plain bytes) are sealed in place
//! at the first start with a master key ([`seal_in_place`]); a start whose
//! keys cannot open what is already sealed stops before writing anything
//! ([`check_opens`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use rusqlite::Connection;
use tuxa_store::secrets::{self as stored, Slot};

/// Marks a sealed value (format version 1).
pub const SEALED_PREFIX: &[u8] = b"enc1:";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = SEALED_PREFIX.len() + KEY_ID_LEN + NONCE_LEN;

/// What a sealed value is for: its AEAD associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `meta.token_key`: the key join tokens are encrypted with.
    TokenKey,
    /// `staff.totp_secret`.
    TotpSecret,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::TokenKey => b"tuxa meta.token_key",
            Purpose::TotpSecret => b"tuxa staff.totp_secret",
        }
    }
}

/// Why a value could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the value is not sealed")]
    Plain,
    #[error("the value was sealed under master key {0}, which was not given")]
    UnknownKey(String),
    #[error("the value does not open under master key {0} (damaged or altered)")]
    Damaged(String),
}

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// A file holding the key as text (base64 or hex of 32 bytes); made,
    /// 0600, with a random key on the first start if it does not exist.
    File(PathBuf),
    /// The key itself (`TUXA_MASTER_KEY`, tests).
    Inline(Arc<[u8; MasterKey::LEN]>),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            MasterKeySource::Inline(_) => f.write_str("Inline(…)"),
        }
    }
}

impl MasterKeySource {
    fn describe(&self) -> String {
        match self {
            MasterKeySource::File(p) => format!("the key file {}", p.display()),
            MasterKeySource::Inline(_) => "TUXA_MASTER_KEY".to_owned(),
        }
    }
}

/// The master key to seal with, and older ones that may still open values.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub current: MasterKeySource,
    /// Key files of earlier master keys (after a rotation): values sealed
    /// under them are opened and sealed again under the current key.
    pub old_files: Vec<PathBuf>,
}

impl KeysConfig {
    /// A fixed key, for tests only.
    pub fn for_tests() -> KeysConfig {
        KeysConfig {
            current: MasterKeySource::Inline(Arc::new([0x5a; MasterKey::LEN])),
            old_files: Vec::new(),
        }
    }
}

/// One master key: its id, and the AES-256-GCM key derived from it.
pub struct MasterKey {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id_hex())
    }
}

impl MasterKey {
    pub const LEN: usize = 32;

    pub fn from_bytes(raw: &[u8; Self::LEN]) -> MasterKey {
        // The id is a hash of the key under its own label: it names the key
        // without helping anyone find it. The sealing key is derived (HKDF)
        // rather than the raw key, so that the same master key could serve
        // another purpose later without the two meeting.
        let mut input = b"tuxa master key id".to_vec();
        input.extend_from_slice(raw);
        let digest = crate::sha256(&input);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tuxa").extract(raw);
        let okm = prk
            .expand(&[b"tuxa secrets enc1"], &AES_256_GCM)
            .expect("HKDF output of one AES-256 key");
        let key = UnboundKey::from(okm);
        MasterKey {
            id,
            aead: LessSafeKey::new(key),
        }
    }

    /// A key given as text: 64 hex digits or the base64 of 32 bytes.
    pub fn parse_text(text: &str) -> Option<[u8; Self::LEN]> {
        let t = text.trim();
        let bytes = if t.len() == 2 * Self::LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..Self::LEN)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?
        } else {
            base64::engine::general_purpose::STANDARD.decode(t).ok()?
        };
        bytes.try_into().ok()
    }

    pub fn id_hex(&self) -> String {
        crate::hex(&self.id)
    }
}

/// The keys a running server holds: the current one seals, every one opens.
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    old: Vec<MasterKey>,
    /// Where the current key came from (for messages).
    source: String,
    /// Set when this start made the key file.
    created: Option<PathBuf>,
}

impl Keyring {
    pub fn new(current: MasterKey, old: Vec<MasterKey>) -> Keyring {
        Keyring {
            current,
            old,
            source: "the given key".to_owned(),
            created: None,
        }
    }

    /// The key file this start created, if it did.
    pub fn created(&self) -> Option<&Path> {
        self.created.as_deref()
    }

    pub fn current_id(&self) -> String {
        self.current.id_hex()
    }

    pub fn seal(&self, purpose: Purpose, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = crate::random_bytes();
        let mut body = plain.to_vec();
        self.current
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                &mut body,
            )
            .expect("AES-GCM sealing of a short value");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(SEALED_PREFIX);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let id = sealed_key_id(sealed).ok_or(OpenError::Plain)?;
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(crate::hex(&id)))?;
        let nonce: [u8; NONCE_LEN] = sealed[SEALED_PREFIX.len() + KEY_ID_LEN..HEADER_LEN]
            .try_into()
            .expect("checked length");
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                &mut body,
            )
            .map_err(|_| OpenError::Damaged(crate::hex(&id)))?;
        Ok(plain.to_vec())
    }

    /// Whether `sealed` was sealed under the current key.
    fn is_current(&self, sealed: &[u8]) -> bool {
        sealed_key_id(sealed) == Some(self.current.id)
    }
}

/// The id of the key that sealed `v`, if `v` is a sealed value. (A plain
/// secret is 20 or 32 random bytes: it cannot both start with `enc1:` and be
/// long enough, or only with odds of 2⁻⁴⁰.)
pub fn sealed_key_id(v: &[u8]) -> Option<[u8; KEY_ID_LEN]> {
    if v.len() < HEADER_LEN + TAG_LEN || !v.starts_with(SEALED_PREFIX) {
        return None;
    }
    v[SEALED_PREFIX.len()..SEALED_PREFIX.len() + KEY_ID_LEN]
        .try_into()
        .ok()
}

// ---------------------------------------------------------------------------
// Key files

/// Reads the keys `cfg` names. When the current key is a file that does not
/// exist, it is made (random, 0600, in a 0700 folder) only if `may_create`:
/// a database that already holds sealed values needs the key that sealed
/// them, not a new one.
pub fn load_keyring(
    cfg: &KeysConfig,
    may_create: bool,
    data_dir: &Path,
) -> anyhow::Result<Keyring> {
    let mut created = None;
    let raw = match &cfg.current {
        MasterKeySource::Inline(k) => **k,
        MasterKeySource::File(path) => {
            warn_if_inside(path, data_dir);
            if path.exists() {
                read_key_file(path)?
            } else if may_create {
                let k = crate::random_bytes::<{ MasterKey::LEN }>();
                write_key_file(path, &k)?;
                created = Some(path.clone());
                k
            } else {
                bail!(
                    "there is no master key at {}, but the database holds secrets sealed under \
                     one: start with the key they were sealed with (--key-file or \
                     TUXA_MASTER_KEY). Nothing was changed.",
                    path.display()
                );
            }
        }
    };
    let old = cfg
        .old_files
        .iter()
        .map(|p| read_key_file(p).map(|k| MasterKey::from_bytes(&k)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Keyring {
        current: MasterKey::from_bytes(&raw),
        old,
        source: cfg.current.describe(),
        created,
    })
}

fn warn_if_inside(key: &Path, data_dir: &Path) {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .ok()
            .map(|a| a.canonicalize().unwrap_or(a))
    };
    let key_dir = key.parent().and_then(abs);
    if let (Some(k), Some(d)) = (key_dir, abs(data_dir))
        && k.starts_with(&d)
    {
        tracing::warn!(
            "the master key file {} is inside the data directory {}: a copy of the data \
             directory then carries the key that opens its secrets; keep it elsewhere",
            key.display(),
            data_dir.display()
        );
    }
}

/// Reads a key file (base64 or hex text), tightening its mode to 0600.
pub fn read_key_file(path: &Path) -> anyhow::Result<[u8; MasterKey::LEN]> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "the key file {} was readable by others (mode {:o}): made 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} 0600", path.display()))?;
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    MasterKey::parse_text(&text).with_context(|| {
        format!(
            "the key file {} must hold 32 bytes as base64 or 64 hex digits",
            path.display()
        )
    })
}

/// Writes a new key file, 0600 (never over an existing file), in a folder
/// made 0700 if it does not exist.
pub fn write_key_file(path: &Path, key: &[u8; MasterKey::LEN]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    f.write_all(format!("{text}\n").as_bytes())?;
    f.sync_all()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The database's secrets

// The rows are the store's (tuxa_store::secrets); what each is for, and
// sealing them, is this module's.

fn purpose(slot: &Slot) -> Purpose {
    match slot {
        Slot::TokenKey => Purpose::TokenKey,
        Slot::Totp(_) => Purpose::TotpSecret,
    }
}

/// Whether the database holds any sealed secret (then only the key that
/// sealed it will do).
pub fn holds_sealed(c: &Connection) -> anyhow::Result<bool> {
    Ok(stored::secrets(c)?
        .iter()
        .any(|(_, v)| sealed_key_id(v).is_some()))
}

/// Checks that `keys` open every sealed secret, before anything is written.
pub fn check_opens(c: &Connection, keys: &Keyring) -> anyhow::Result<()> {
    for (slot, v) in stored::secrets(c)? {
        match keys.open(purpose(&slot), &v) {
            Ok(_) | Err(OpenError::Plain) => {}
            Err(e) => bail!(
                "the master key from {} (key id {}) cannot open the secrets in the database: \
                 {e}. Start with the key they were sealed with (--key-file or \
                 TUXA_MASTER_KEY), adding earlier keys with --old-key-file after a rotation. \
                 Nothing was changed.",
                keys.source,
                keys.current_id()
            ),
        }
    }
    Ok(())
}

/// Seals plain secrets, and seals again under the current key those sealed
/// under an older one, in one transaction. Overwritten plain values are
/// zeroed on disk (`secure_delete`) and the write-ahead log is emptied, so
/// they do not linger in the file. Returns how many values were written.
pub fn seal_in_place(c: &mut Connection, keys: &Keyring) -> anyhow::Result<usize> {
    let todo: Vec<(Slot, Vec<u8>)> = stored::secrets(c)?
        .into_iter()
        .filter(|(_, v)| !keys.is_current(v))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let plain = todo
        .iter()
        .filter(|(_, v)| sealed_key_id(v).is_none())
        .count();
    let mut sealed = Vec::with_capacity(todo.len());
    for (slot, v) in &todo {
        let value = match keys.open(purpose(slot), v) {
            Ok(p) => p,
            Err(OpenError::Plain) => v.clone(),
            Err(e) => bail!("sealing the database's secrets: {e}"),
        };
        sealed.push((slot.clone(), keys.seal(purpose(slot), &value)));
    }
    // One transaction; the plain values are zeroed on disk and out of the
    // write-ahead log (tuxa_store::secrets::overwrite).
    stored::overwrite(c, &sealed)?;
    if plain > 0 {
        tracing::warn!(
            "sealed {plain} secret(s) that were stored in plain under master key {}; copies \
             of the database made before now still hold them (docs/security.md)",
            keys.current_id()
        );
    }
    if todo.len() > plain {
        tracing::info!(
            "sealed {} secret(s) again under master key {} (key rotation)",
            todo.len() - plain,
            keys.current_id()
        );
    }
    Ok(todo.len())
}

/// The join-token key: opened from `meta`, or made and stored sealed.
pub fn token_key(c: &Connection, keys: &Keyring) -> anyhow::Result<[u8; 32]> {
    if let Some(v) = stored::token_key(c)? {
        let plain = keys
            .open(Purpose::TokenKey, &v)
            .context("opening the join-token key")?;
        if let Ok(k) = <[u8; 32]>::try_from(plain.as_slice()) {
            return Ok(k);
        }
        tracing::warn!("the stored join-token key has the wrong length: a new one is made");
    }
    let k = crate::random_bytes::<32>();
    stored::set_token_key(c, &keys.seal(Purpose::TokenKey, &k))?;
    Ok(k)
}

/// `tuxa rotate-key`: seals every secret in `data_dir`'s database under the
/// key in `new_key_file` (made if absent), opening them with the keys `cfg`
/// names. Run it with the server stopped, then start the server with
/// `--key-file` set to the new file. Returns the report line.
pub fn rotate(data_dir: &Path, cfg: &KeysConfig, new_key_file: &Path) -> anyhow::Result<String> {
    let db = data_dir.join("tuxa.sqlite3");
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    let old = load_keyring(cfg, false, data_dir)?;
    let created = !new_key_file.exists();
    if created {
        write_key_file(new_key_file, &crate::random_bytes())?;
    }
    let mut old_files: Vec<PathBuf> = cfg.old_files.clone();
    let current_raw: [u8; MasterKey::LEN] = match &cfg.current {
        MasterKeySource::Inline(k) => **k,
        MasterKeySource::File(p) => read_key_file(p)?,
    };
    let rotated = KeysConfig {
        current: MasterKeySource::File(new_key_file.to_path_buf()),
        old_files: std::mem::take(&mut old_files),
    };
    // The key being replaced opens what it sealed; it goes into the ring as
    // an in-memory old key (it may have come from TUXA_MASTER_KEY).
    let mut ring = load_keyring(&rotated, false, data_dir)?;
    ring.old.push(MasterKey::from_bytes(&current_raw));
    let (mut c, _) = open_connection(&db, cfg)?;
    check_opens(&c, &ring)?;
    let n = seal_in_place(&mut c, &ring)?;
    Ok(format!(
        "{n} secret(s) sealed under the new master key {} ({}{}), replacing {}. Start tuxa \
         with --key-file {} from now on; keep the old key until you have checked that it starts.",
        ring.current_id(),
        new_key_file.display(),
        if created { ", made now" } else { "" },
        old.current_id(),
        new_key_file.display()
    ))
}

// ---------------------------------------------------------------------------
// Opening the file: its directory's permissions, then the keys that open it

/// Opens the SQLite file at `path` for tuxa (the server, `load-demo`,
/// `rotate-key`), in this order:
/// 1. its folder is made 0700 and its files 0600 (warned about when they
///    were not): it holds patients' records and attachments;
/// 2. the master key is read (or made, only while no secret is sealed yet)
///    and checked against every sealed secret, before anything is written:
///    a wrong key stops here with the file unchanged;
/// 3. the schema is brought up to date;
/// 4. plain secrets are sealed, and those under an older key sealed again.
pub fn open_connection(path: &Path, keys: &KeysConfig) -> anyhow::Result<(Connection, Keyring)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    secure_dir(dir)?;
    if !path.exists() {
        // SQLite would make it 0644 (less the umask); its -wal and -shm
        // files then take the database file's mode.
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
    }
    let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    // WAL, synchronous=FULL, foreign keys: see tuxa_store::schema::configure.
    tuxa_store::schema::configure(&conn)?;
    secure_files(dir)?;
    let sealed = holds_sealed(&conn)?;
    let keyring = load_keyring(keys, !sealed, dir)?;
    check_opens(&conn, &keyring)?;
    tuxa_store::schema::migrate(&mut conn)?;
    seal_in_place(&mut conn, &keyring)?;
    Ok((conn, keyring))
}

/// Makes `dir` (0700) or tightens it to 0700.
fn secure_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        return Ok(());
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the data directory {} was open to others (mode {mode:o}): made 0700",
            dir.display()
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} 0700", dir.display()))?;
    }
    Ok(())
}

/// Tightens every file under `dir` to 0600 (symbolic links are left alone:
/// their targets are not ours to change).
fn secure_files(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            secure_dir(&path)?;
            secure_files(&path)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} was readable by others (mode {mode:o}): made 0600",
                    path.display()
                );
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} 0600", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(b: u8) -> Keyring {
        Keyring::new(MasterKey::from_bytes(&[b; 32]), Vec::new())
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let a = ring(1);
        let secret = b"12345678901234567890";
        let s = a.seal(Purpose::TotpSecret, secret);
        assert!(s.starts_with(SEALED_PREFIX));
        assert_eq!(s.len(), HEADER_LEN + secret.len() + TAG_LEN);
        assert!(!s.windows(secret.len()).any(|w| w == secret));
        assert_eq!(a.open(Purpose::TotpSecret, &s).unwrap(), secret);
        // Fresh nonce each time.
        assert_ne!(s, a.seal(Purpose::TotpSecret, secret));
        // Another purpose, another key, a flipped bit, a plain value.
        assert!(matches!(
            a.open(Purpose::TokenKey, &s),
            Err(OpenError::Damaged(_))
        ));
        let b = ring(2);
        assert_eq!(
            b.open(Purpose::TotpSecret, &s),
            Err(OpenError::UnknownKey(a.current_id()))
        );
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            a.open(Purpose::TotpSecret, &bad),
            Err(OpenError::Damaged(_))
        ));
        assert_eq!(a.open(Purpose::TotpSecret, secret), Err(OpenError::Plain));
        // An old key in the ring opens; sealing uses the current one.
        let rotated = Keyring::new(
            MasterKey::from_bytes(&[2; 32]),
            vec![MasterKey::from_bytes(&[1; 32])],
        );
        assert_eq!(rotated.open(Purpose::TotpSecret, &s).unwrap(), secret);
        assert!(!rotated.is_current(&s));
        let again = rotated.seal(Purpose::TotpSecret, secret);
        assert!(rotated.is_current(&again));
        assert!(b.open(Purpose::TotpSecret, &again).is_ok());
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        let hex = "00".repeat(31) + "ff";
        let k = MasterKey::parse_text(&format!(" {hex}\n")).unwrap();
        assert_eq!(k[31], 0xff);
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(MasterKey::parse_text(&b64), Some([9u8; 32]));
        for bad in ["", "abc", &"00".repeat(31), "not base64 at all!"] {
            assert_eq!(MasterKey::parse_text(bad), None, "{bad:?}");
        }
        // Debug never shows the key.
        let src = MasterKeySource::Inline(Arc::new([7; 32]));
        assert_eq!(format!("{src:?}"), "Inline(…)");
    }

    #[test]
    fn key_files_are_made_0600_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("tuxa-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys").join("tuxa.key");
        let cfg = KeysConfig {
            current: MasterKeySource::File(path.clone()),
            old_files: Vec::new(),
        };
        let data = dir.join("data");
        assert!(
            load_keyring(&cfg, false, &data).is_err(),
            "not made when refused"
        );
        assert!(!path.exists());
        let first = load_keyring(&cfg, true, &data).unwrap();
        assert_eq!(first.created(), Some(path.as_path()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let second = load_keyring(&cfg, true, &data).unwrap();
        assert_eq!(second.created(), None);
        assert_eq!(first.current_id(), second.current_id());
        // A loosened file is tightened when read.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        load_keyring(&cfg, false, &data).unwrap();
        assert_eq!(mode(&path), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn plain_secrets_are_sealed_in_place_and_a_wrong_key_changes_nothing() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c).unwrap();
        let plain_key = [3u8; 32];
        stored::set_token_key(&c, &plain_key).unwrap();
        // A staff account from before sealing: its TOTP secret in plain.
        let f = tuxa_store::directory::insert_facility(
            &c,
            &tuxa_records::directory::NewFacility {
                name: "F".into(),
                tier: tuxa_records::directory::Tier::Province,
                parent: None,
            },
            0,
        )
        .unwrap();
        let staff = tuxa_store::directory::insert_staff(
            &c,
            &tuxa_records::directory::NewStaff {
                username: tuxa_records::directory::Username::parse("dp.a").unwrap(),
                name: "A".into(),
                role: tuxa_records::directory::StaffRole::Coordinator,
                facility: f.id,
                practitioner: None,
            },
            "x",
            &(1..=20).collect::<Vec<u8>>(),
            0,
        )
        .unwrap();
        let a = ring(1);
        assert!(!holds_sealed(&c).unwrap());
        check_opens(&c, &a).unwrap();
        assert_eq!(seal_in_place(&mut c, &a).unwrap(), 2);
        assert!(holds_sealed(&c).unwrap());
        assert_eq!(seal_in_place(&mut c, &a).unwrap(), 0, "nothing left to do");
        assert_eq!(token_key(&c, &a).unwrap(), plain_key);
        let totp = stored::totp_secret(&c, staff.id).unwrap().unwrap();
        assert_eq!(
            a.open(Purpose::TotpSecret, &totp).unwrap(),
            (1..=20).collect::<Vec<u8>>()
        );
        // The wrong key is refused before anything is written.
        let b = ring(2);
        let err = check_opens(&c, &b).unwrap_err().to_string();
        assert!(
            err.contains("cannot open") && err.contains("Nothing was changed"),
            "{err}"
        );
        // Rotation: the new key with the old one in the ring.
        let rotated = Keyring::new(
            MasterKey::from_bytes(&[2; 32]),
            vec![MasterKey::from_bytes(&[1; 32])],
        );
        check_opens(&c, &rotated).unwrap();
        assert_eq!(seal_in_place(&mut c, &rotated).unwrap(), 2);
        assert_eq!(token_key(&c, &b).unwrap(), plain_key);
        assert!(
            check_opens(&c, &a).is_err(),
            "the old key alone no longer opens"
        );
    }
}
