//! Staff sign-in: passwords (argon2id), a TOTP second factor (RFC 6238:
//! HMAC-SHA-1, 30-second steps, 6 digits), sessions, and limits on failed
//! sign-ins per client address and per username.
//!
//! - **Passwords** are stored as argon2id PHC strings (19 MiB, 2 passes:
//!   OWASP's recommendation). Sign-in verifies on the blocking pool, at most
//!   [`VERIFY_PERMITS`] at a time, each in a reused buffer ([`Verifier`]),
//!   never on the async runtime.
//! - **TOTP** secrets are 20 random bytes, shown once, base32, at
//!   enrolment (`otpauth://` URI), and stored sealed under the master key
//!   (secrets.rs). A code is accepted for the current step
//!   and one step either side, and never twice: the last accepted step is
//!   stored, and a code for that step or an earlier one is refused
//!   (`tuxa_records::totp`, over the totp-rs crate).
//! - **Sign-in failures look alike**: no such user, wrong password, wrong or
//!   reused code all give the same answer, and an unknown user costs the
//!   same argon2 work as a known one. Codes are compared in constant time.
//! - **Sessions** are 32 random bytes in an `HttpOnly; Secure;
//!   SameSite=Strict` cookie named `__Host-tuxa_session`; only their
//!   SHA-256 is stored. They last [`SESSION_TTL_SECS`], and end after
//!   [`tuxa_records::auth::SESSION_IDLE_SECS`] without use, at logout, or when the account is
//!   disabled (`tuxa_records::auth`; the rows: `tuxa_store::auth`).
//! - **Failed sign-ins** are limited ([`Limits`], docs/security.md): per
//!   client address by governor ([`ADDRESS_BURST`], then one every
//!   [`ADDRESS_REFILL_SECS`]), and per username by a delay that grows after
//!   [`FREE_FAILURES`] failures up to [`MAX_DELAY_SECS`], which holds back
//!   only addresses that have failed lately. The limits are plain maps
//!   owned by this module's router state; their lock is taken only inside
//!   synchronous methods, never across an `.await`, and no task runs for
//!   them: entries expire when looked at, and the maps are pruned when full.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::constant_time;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::Action;
use crate::authz::session_token;
use crate::error::body;
use tuxa_records::{StaffId, directory::Username};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// An audit entry about no consultation (sign-in).
fn audit(state: &AppState, action: crate::audit::Action, actor: &str, detail: Value) {
    crate::app::audit(state, action, None, actor, detail);
}
use crate::app::AppState;
use crate::clock::unix_now;
use crate::error::ApiError;
use crate::gate::{Access, Routes};
use crate::random_bytes;
use crate::secrets::{Keyring, Purpose};
use tuxa_records::Error;
pub use tuxa_records::auth::{SESSION_TTL_SECS, SignedIn};
pub use tuxa_records::password::Password;
pub use tuxa_records::totp::{TotpSecret, totp};

/// The session cookie. `__Host-` makes browsers insist on `Secure`,
/// `Path=/` and no `Domain`, so no other host can set or shadow it.
pub use crate::authz::SESSION_COOKIE;
/// Failed sign-ins on one username before its attempts are spaced out.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between two attempts on one username.
pub const MAX_DELAY_SECS: u64 = 60;
/// Failures of a username, or of an address, are forgotten after this long
/// without another.
pub const FAILURE_MEMORY_SECS: u64 = 900;
/// Failed sign-ins one client address (IPv6: one /64) may make at once…
pub const ADDRESS_BURST: u32 = 20;
/// …and then one more every this many seconds.
pub const ADDRESS_REFILL_SECS: u64 = 3;
/// Password verifications running at once (each holds an argon2 buffer of
/// 19 MiB).
pub const VERIFY_PERMITS: usize = 2;
/// Usernames, and addresses, the limits track at most (a bound on memory).
const LIMITER_MAX_KEYS: usize = 10_000;

// ---------------------------------------------------------------------------
// Passwords

/// A fault that is not the caller's (logged; the caller is told no more).
fn internal(e: impl std::fmt::Display) -> ApiError {
    Error::internal(e).into()
}

/// A new password from the CSPRNG ([`Password::from_random`]).
pub fn generate_password() -> Password {
    Password::from_random(random_bytes::<16>())
}

/// argon2id cost: tuxa_records::password's (over a second per hash in a
/// debug build: prefer `--release`). Hashing stays here, not in the domain
/// crate: each salt needs the CSPRNG, and its buffers are a resource this
/// module bounds ([`Verifier`]).
use tuxa_records::password::ARGON2_COST;
/// Unit tests use the smallest cost argon2 allows, so that they stay fast.
/// The cost travels in each PHC string, so verification always uses the
/// cost a hash was made with.
const ARGON2_TEST_COST: (u32, u32, u32) = (64, 1, 1);

fn argon2() -> Argon2<'static> {
    let (m, t, p) = if cfg!(test) {
        ARGON2_TEST_COST
    } else {
        ARGON2_COST
    };
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(m, t, p, None).expect("valid argon2 parameters"),
    )
}

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes is a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with valid parameters")
        .to_string()
}

/// Whether `password` matches the PHC string `phc` (false when `phc` is not
/// one). The final comparison is constant time.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// [`verify_password`] in the caller's memory `blocks` (grown as the hash's
/// cost needs, kept for the next call). Same answers, same constant-time
/// comparison.
fn verify_password_in(phc: &str, password: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut blocks[..need],
    );
    hashed.is_ok() && constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
}

/// [`hash_password`] on the blocking pool.
pub async fn hash_password_off_runtime(password: Password) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(password.as_str()))
        .await
        .map_err(internal)
}

// ---------------------------------------------------------------------------
// TOTP

/// A new TOTP secret from the CSPRNG.
pub fn new_totp_secret() -> TotpSecret {
    TotpSecret::from_random(random_bytes())
}

/// The [`TotpSecret::otpauth_uri`] as a QR code (SVG) for the
/// authenticator app to scan at enrolment. It holds the secret: shown
/// once, in a `no-store` answer, never logged.
pub fn totp_qr_svg(secret: &TotpSecret, account: &str) -> Option<String> {
    crate::qr::render(&secret.otpauth_uri(account))
        .ok()
        .map(|q| q.svg)
}

// ---------------------------------------------------------------------------
// Sign-in limits

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Too many failures from the client's address.
    Address,
    /// The username is in its delay after failures.
    Username,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::Username => "username",
        }
    }
}

/// What [`Limits::attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Allowed,
    /// Refused for `retry_after` seconds. `first` is true for the first
    /// refusal of an episode (the one worth auditing).
    Refused {
        retry_after: u64,
        first: bool,
        limit: Limit,
    },
}

/// The delay before the next attempt on a username with `failures`
/// recent failures: none for the first [`FREE_FAILURES`], then 2 s,
/// doubling, at most [`MAX_DELAY_SECS`].
pub fn username_delay(failures: u32) -> u64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES + 1).min(16);
    (1u64 << doublings).min(MAX_DELAY_SECS)
}

#[derive(Debug, Default)]
struct UserFailures {
    count: u32,
    last: u64,
    refusal_noted: bool,
}

#[derive(Debug, Default)]
struct AddressState {
    /// The last attempt from this address that did not succeed (counted
    /// from its start, so that parallel guesses cannot slip through).
    last_failure: Option<u64>,
    /// Refused until then (the address's failure rate, from governor).
    throttled_until: u64,
    refusal_noted: bool,
}

/// Failed sign-ins per username (a progressive delay) and per client
/// address (a throttle and a "has failed lately" mark). Sans-IO: the time is
/// an argument, and the throttle's end comes from the caller's rate limiter.
///
/// A username in its delay refuses attempts only from addresses that have
/// failed within [`FAILURE_MEMORY_SECS`]: someone guessing from elsewhere
/// cannot keep a doctor out of their own account, since the doctor's
/// address has not failed (docs/security.md, "Sign-in limits").
///
/// An attempt counts as a failure from its start and is forgiven on
/// success, so concurrent guesses cannot slip past while argon2 runs.
#[derive(Debug)]
pub struct Limits {
    max_keys: usize,
    users: HashMap<String, UserFailures>,
    addresses: HashMap<IpAddr, AddressState>,
}

impl Limits {
    pub fn new(max_keys: usize) -> Limits {
        Limits {
            max_keys,
            users: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    /// Whether an attempt on `user` from `addr` at `now` may go ahead; if
    /// so, it is recorded as a failure until [`Limits::succeeded`].
    pub fn attempt(&mut self, user: &str, addr: IpAddr, now: u64) -> Attempt {
        if let Some(a) = self.addresses.get_mut(&addr)
            && a.throttled_until > now
        {
            let first = !a.refusal_noted;
            a.refusal_noted = true;
            return Attempt::Refused {
                retry_after: a.throttled_until - now,
                first,
                limit: Limit::Address,
            };
        }
        let suspect = self
            .addresses
            .get(&addr)
            .and_then(|a| a.last_failure)
            .is_some_and(|t| t + FAILURE_MEMORY_SECS > now);

        if !self.users.contains_key(user) && self.users.len() >= self.max_keys {
            Self::make_room(&mut self.users, self.max_keys, |u| {
                (u.last + FAILURE_MEMORY_SECS > now).then_some(u.last)
            });
        }
        let u = self.users.entry(user.to_owned()).or_default();
        if u.last + FAILURE_MEMORY_SECS <= now {
            *u = UserFailures::default();
        }
        let ready_at = u.last + username_delay(u.count);
        if suspect && now < ready_at {
            let first = !u.refusal_noted;
            u.refusal_noted = true;
            return Attempt::Refused {
                retry_after: ready_at - now,
                first,
                limit: Limit::Username,
            };
        }
        u.refusal_noted = false;
        u.count = u.count.saturating_add(1);
        u.last = now;

        if !self.addresses.contains_key(&addr) && self.addresses.len() >= self.max_keys {
            Self::make_room(&mut self.addresses, self.max_keys, |a| {
                let recent = a.last_failure.filter(|&t| t + FAILURE_MEMORY_SECS > now);
                if a.throttled_until > now {
                    Some(a.throttled_until)
                } else {
                    recent
                }
            });
        }
        let a = self.addresses.entry(addr).or_default();
        a.last_failure = Some(now);
        a.refusal_noted = false;
        Attempt::Allowed
    }

    /// Seconds `addr` is still throttled for, if it is.
    pub fn throttled(&self, addr: IpAddr, now: u64) -> Option<u64> {
        self.addresses
            .get(&addr)
            .filter(|a| a.throttled_until > now)
            .map(|a| a.throttled_until - now)
    }

    /// A failure from `addr` was confirmed; `throttle_until` is when its
    /// rate limiter lets it try again, if it went over.
    pub fn failed(&mut self, addr: IpAddr, throttle_until: Option<u64>) {
        if let (Some(until), Some(a)) = (throttle_until, self.addresses.get_mut(&addr)) {
            a.throttled_until = a.throttled_until.max(until);
        }
    }

    /// The attempt succeeded: forget `user`'s failures and `addr`'s mark.
    pub fn succeeded(&mut self, user: &str, addr: IpAddr) {
        self.users.remove(user);
        if let Some(a) = self.addresses.get_mut(&addr) {
            a.last_failure = None;
        }
    }

    /// Drops entries with nothing left to remember (`live` gives `None`);
    /// if the map is still full, the entry whose memory is oldest. The
    /// bound on memory wins over an attacker's record: one who makes the
    /// map overflow has many addresses anyway.
    fn make_room<K: Clone + Eq + std::hash::Hash, V>(
        map: &mut HashMap<K, V>,
        max: usize,
        live: impl Fn(&V) -> Option<u64>,
    ) {
        map.retain(|_, v| live(v).is_some());
        if map.len() >= max
            && let Some(k) = map
                .iter()
                .min_by_key(|(_, v)| live(v).unwrap_or(0))
                .map(|(k, _)| k.clone())
        {
            map.remove(&k);
        }
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.users.len(), self.addresses.len())
    }
}

/// The limiter key for what was typed as a username: the same
/// normalisation as [`Username::parse`], bounded in length, applied to
/// anything (so unknown and malformed names are limited alike).
fn limiter_key(typed: &str) -> String {
    typed.trim().to_lowercase().chars().take(64).collect()
}

/// The limiter key of a client address: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 /64 (one client holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Failures per client address: [`ADDRESS_BURST`] at once, then one every
/// [`ADDRESS_REFILL_SECS`].
type AddressLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

fn address_limiter() -> AddressLimiter {
    let quota = governor::Quota::with_period(Duration::from_secs(ADDRESS_REFILL_SECS))
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(ADDRESS_BURST).expect("a non-zero burst"));
    governor::RateLimiter::keyed(quota)
}

// ---------------------------------------------------------------------------
// Bounded password verification

/// Runs argon2 verifications: at most [`VERIFY_PERMITS`] at once, on the
/// blocking pool, each in a memory buffer taken from a pool and put back
/// after. argon2id at 19 MiB allocated and freed per attempt left glibc
/// holding hundreds of MiB after a burst of sign-ins (its arenas keep
/// freed memory); a buffer per permit bounds it to `VERIFY_PERMITS` × the
/// cost, for good.
pub struct Verifier {
    permits: Arc<tokio::sync::Semaphore>,
    buffers: Mutex<Vec<Vec<Block>>>,
    allocated: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Verifier {
    fn new(permits: usize) -> Verifier {
        Verifier {
            permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            buffers: Mutex::new(Vec::new()),
            allocated: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// A permit to verify; held until the verification ends, even if the
    /// request is dropped meanwhile.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.map_err(internal)
    }

    /// Verifies on the blocking pool, in a pooled buffer.
    async fn verify(
        self: &Arc<Self>,
        permit: tokio::sync::OwnedSemaphorePermit,
        phc: String,
        password: String,
    ) -> Result<bool> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let ok = this.verify_now(&phc, &password);
            drop(permit);
            ok
        })
        .await
        .map_err(internal)
    }

    /// Verifies on this thread, in a pooled buffer.
    fn verify_now(&self, phc: &str, password: &str) -> bool {
        let mut buf = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| {
                self.allocated.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            });
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let ok = verify_password_in(phc, password, &mut buf);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf);
        ok
    }

    /// The most verifications that ran at once, and the buffers ever
    /// allocated (for tests).
    #[cfg(test)]
    fn stats(&self) -> (usize, usize) {
        (
            self.peak.load(Ordering::SeqCst),
            self.allocated.load(Ordering::SeqCst),
        )
    }
}

/// What the sign-in routes own: the limits, the verifier, and the hash an
/// unknown username is checked against.
pub struct AuthState {
    limits: Mutex<Limits>,
    per_address: AddressLimiter,
    verifier: Arc<Verifier>,
    /// Made at start (one hash, at the cost real ones have), so that no
    /// sign-in pays for it on the async runtime.
    dummy_hash: String,
}

impl AuthState {
    pub fn new() -> AuthState {
        AuthState {
            limits: Mutex::new(Limits::new(LIMITER_MAX_KEYS)),
            per_address: address_limiter(),
            verifier: Arc::new(Verifier::new(VERIFY_PERMITS)),
            dummy_hash: hash_password(generate_password().as_str()),
        }
    }

    // The lock is held for a few map operations, in these synchronous
    // methods only: never across an `.await`.
    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A failure from `addr` was confirmed: counted by the address's rate
    /// limiter, which may throttle it.
    fn failed(&self, addr: IpAddr, now: u64) {
        let throttle_until = match self.per_address.check_key(&addr) {
            Ok(()) => None,
            Err(not_until) => {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(self.per_address.clock()));
                Some(now + wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        };
        // Addresses whose bucket is full again are forgotten; the store is
        // also bounded by the verification rate (VERIFY_PERMITS at a time).
        if self.per_address.len() >= LIMITER_MAX_KEYS {
            self.per_address.retain_recent();
            self.per_address.shrink_to_fit();
        }
        self.limits().failed(addr, throttle_until);
    }
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState::new()
    }
}

// ---------------------------------------------------------------------------
// Sessions

fn session_cookie(token: &[u8; 32]) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_TTL_SECS}; HttpOnly; Secure; SameSite=Strict",
        crate::hex(token)
    ))
    .expect("a cookie of ASCII")
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
    ))
    .expect("a cookie of ASCII")
}

fn profile_json(s: &SignedIn) -> Value {
    json!({
        "staff": s.profile.staff,
        "facility": s.profile.facility,
        "practitioner": s.profile.practitioner,
        "session": {"expires_at": s.session_expires_at},
    })
}

// ---------------------------------------------------------------------------
// HTTP

pub fn routes() -> Routes {
    routes_with(Arc::new(AuthState::new()))
}

fn routes_with(auth: Arc<AuthState>) -> Routes {
    Routes::new()
        .post("/api/v1/auth/login", Access::Public, login)
        // Its session may have expired already; it must still clear the cookie.
        .post("/api/v1/auth/logout", Access::Public, logout)
        .get("/api/v1/me", Access::Session, me)
        .layer(Extension(auth))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginReq {
    username: String,
    password: String,
    totp: String,
}

/// What the store knows about a username, for checking a sign-in.
struct Credentials {
    id: StaffId,
    password_hash: String,
    totp: Option<TotpSecret>,
    totp_last_step: u64,
    disabled: bool,
}

/// The username's credentials (tuxa_store::auth), the TOTP secret opened.
fn credentials(
    c: &rusqlite::Connection,
    username: &Username,
    keys: &Keyring,
) -> rusqlite::Result<Option<Credentials>> {
    Ok(tuxa_store::auth::credentials(c, username)?.map(|k| {
        // Unopenable, the account cannot sign in (as with no code);
        // the start-up check makes this a damaged row, not a wrong key.
        let totp = match keys.open(Purpose::TotpSecret, &k.totp_sealed) {
            Ok(plain) => TotpSecret::from_slice(&plain),
            Err(e) => {
                tracing::error!("staff {}: the TOTP secret: {e}", k.id);
                None
            }
        };
        Credentials {
            id: k.id,
            password_hash: k.password_hash,
            totp,
            totp_last_step: k.totp_last_step,
            disabled: k.disabled,
        }
    }))
}

fn login_failed(state: &AppState, who: Option<StaffId>, reason: &str) -> ApiError {
    let actor = who.map_or_else(|| "unknown".to_owned(), |id| format!("staff:{id}"));
    audit(
        state,
        Action::LoginFailed,
        &actor,
        json!({"reason": reason}),
    );
    Error::LoginFailed.into()
}

async fn login(
    State(state): State<AppState>,
    Extension(auth): Extension<Arc<AuthState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    req: Result<Json<LoginReq>, JsonRejection>,
) -> Result<Response> {
    let req = body(req)?;
    let now = unix_now();
    let key = limiter_key(&req.username);
    // Every connection carries its peer's address (accept.rs); a request
    // without one (in-process tests) counts as one unknown address.
    let addr = address_key(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.0.ip()));
    let refused = |retry_after: u64, first: bool, limit: Limit| {
        if first {
            // Neither the name typed (people type passwords there) nor
            // the address is recorded.
            audit(
                &state,
                Action::LoginFailed,
                "unknown",
                json!({"reason": "rate_limited", "limit": limit.as_str()}),
            );
        }
        ApiError::from(Error::TooManyAttempts {
            retry_after_secs: retry_after,
        })
    };
    let attempt = auth.limits().attempt(&key, addr, now);
    if let Attempt::Refused {
        retry_after,
        first,
        limit,
    } = attempt
    {
        return Err(refused(retry_after, first, limit));
    }

    let known = match Username::parse(&req.username) {
        Some(u) => {
            let keys = state.store.keys().clone();
            state
                .store
                .call(move |c| credentials(c, &u, &keys))
                .await
                .map_err(internal)?
        }
        None => None,
    };

    // The same argon2 work whether or not the user exists.
    let password_ok = if req.password.len() <= Password::MAX_BYTES {
        let permit = auth.verifier.permit().await?;
        // The address may have been throttled while this waited its turn:
        // no argon2 work for it then.
        if let Some(retry_after) = auth.limits().throttled(addr, unix_now()) {
            return Err(refused(retry_after, false, Limit::Address));
        }
        let hash = match &known {
            Some(k) => k.password_hash.clone(),
            None => auth.dummy_hash.clone(),
        };
        auth.verifier.verify(permit, hash, req.password).await?
    } else {
        false
    };
    let failed = |who: Option<StaffId>, reason: &str| {
        auth.failed(addr, unix_now());
        login_failed(&state, who, reason)
    };

    let Some(k) = known else {
        return Err(failed(None, "unknown_user"));
    };
    let step = k
        .totp
        .as_ref()
        .and_then(|t| t.verify(&req.totp, now, k.totp_last_step));
    if !password_ok {
        return Err(failed(Some(k.id), "wrong_password"));
    }
    let Some(step) = step else {
        // A right code used a second time hints at a shoulder-surfer or a
        // phishing relay: worth telling apart in the audit log only.
        let reused = k
            .totp
            .as_ref()
            .is_some_and(|t| t.verify(&req.totp, now, 0).is_some());
        let reason = if reused { "totp_reused" } else { "wrong_totp" };
        return Err(failed(Some(k.id), reason));
    };
    if k.disabled {
        // They proved who they are: telling them the account is disabled
        // reveals nothing to anyone else.
        login_failed(&state, Some(k.id), "disabled");
        return Err(Error::forbidden(
            "this account is disabled; ask your facility's administrator",
        )
        .into());
    }

    let token = random_bytes::<32>();
    let token_hash = crate::sha256(&token);
    let id = k.id;
    let session = state
        .store
        .call(move |c| tuxa_store::auth::open_session(c, id, step, &token_hash, now as i64))
        .await
        .map_err(internal)?;
    let Some(session) = session else {
        return Err(failed(Some(k.id), "totp_reused"));
    };
    auth.limits().succeeded(&key, addr);
    audit(
        &state,
        Action::LoginSucceeded,
        &format!("staff:{id}"),
        json!({"role": session.profile.staff.role, "facility_id": session.profile.facility.id}),
    );
    let mut res = Json(profile_json(&session)).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    if let Some(token) = session_token(&headers) {
        let hash = crate::sha256(&token);
        let ended: Option<StaffId> = state
            .store
            .call(move |c| tuxa_store::auth::end_session(c, &hash))
            .await
            .map_err(internal)?;
        if let Some(id) = ended {
            audit(&state, Action::Logout, &format!("staff:{id}"), json!({}));
            // Consoles opened with this sign-in must not keep taking patients.
            let _ = state
                .hub
                .send(crate::hub_task::HubMsg::Input(
                    tuxa_signaling::Input::StaffRevoked(id),
                ))
                .await;
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

async fn me(s: SignedIn) -> Result<Response> {
    let mut res = Json(profile_json(&s)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The TOTP and password rules' own tests (RFC vectors, the window,
    // accept-once) are with them in tuxa-records; here, what the server
    // adds: the QR code and argon2.
    const RFC_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn totp_enrolment_qr() {
        let s = TotpSecret::from_slice(RFC_KEY).unwrap();
        assert_eq!(
            s.otpauth_uri("bs.minh"),
            "otpauth://totp/tuxa:bs.minh?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=tuxa&algorithm=SHA1&digits=6&period=30"
        );
        // The enrolment QR: that URI (113 bytes, its base32 secret coded as
        // alphanumerics) at level M is version 6, 41 modules; with the
        // longest username (32 characters) it stays small enough to scan
        // from a screen.
        let qr = crate::qr::render(&s.otpauth_uri("bs.minh")).unwrap();
        assert_eq!((qr.version, qr.modules), (6, 41));
        assert_eq!(totp_qr_svg(&s, "bs.minh"), Some(qr.svg));
        let long = crate::qr::render(&s.otpauth_uri(&"a".repeat(32))).unwrap();
        assert!(long.version <= 8, "{}", long.version);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("mật khẩu đúng 123");
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password(&h, "mật khẩu đúng 123"));
        assert!(!verify_password(&h, "mật khẩu sai 123"));
        assert!(!verify_password(&h, ""));
        assert!(!verify_password("not a hash", "mật khẩu đúng 123"));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash_password("mật khẩu đúng 123"));
        // A hash made with other parameters verifies with the parameters it
        // carries (as production-cost hashes do in these tests' build).
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 2, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let h = other
            .hash_password(b"Benhvien@2025", &salt)
            .unwrap()
            .to_string();
        assert!(h.contains("m=256,t=2,p=1"), "{h}");
        assert!(verify_password(&h, "Benhvien@2025"));
        assert!(!verify_password(&h, "Benhvien@2024"));
        // The production cost is valid and is OWASP's.
        let (m, t, p) = ARGON2_COST;
        assert!(Params::new(m, t, p, None).is_ok());
        assert_eq!((m, t, p), (19456, 2, 1));
    }

    #[test]
    fn password_rules() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(Password::parse("đủ mười ký tự").is_ok());
        let g = generate_password();
        assert_eq!(g.as_str().len(), 19);
        assert!(Password::parse(g.as_str()).is_ok());
        assert_ne!(g.as_str(), generate_password().as_str());
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));

    fn refused(retry_after: u64, first: bool, limit: Limit) -> Attempt {
        Attempt::Refused {
            retry_after,
            first,
            limit,
        }
    }

    #[test]
    fn username_delay_grows_to_a_minute() {
        let delays: Vec<u64> = (0..12).map(username_delay).collect();
        assert_eq!(delays, [0, 0, 0, 0, 0, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(username_delay(u32::MAX), MAX_DELAY_SECS);
    }

    #[test]
    fn a_username_is_spaced_out_for_addresses_that_failed_not_locked() {
        let mut l = Limits::new(100);
        for i in 0..5 {
            assert_eq!(l.attempt("bs.minh", A, 1000 + i), Attempt::Allowed);
        }
        // The sixth try from the same address waits 2 s after the fifth.
        assert_eq!(
            l.attempt("bs.minh", A, 1005),
            refused(1, true, Limit::Username)
        );
        assert_eq!(
            l.attempt("bs.minh", A, 1005),
            refused(1, false, Limit::Username)
        );
        assert_eq!(l.attempt("bs.minh", A, 1006), Attempt::Allowed);
        // Then 4 s, 8 s…
        assert_eq!(
            l.attempt("bs.minh", A, 1009),
            refused(1, true, Limit::Username)
        );
        assert_eq!(l.attempt("bs.minh", A, 1010), Attempt::Allowed);
        assert_eq!(
            l.attempt("bs.minh", A, 1010),
            refused(8, true, Limit::Username)
        );
        // …never more than a minute.
        let mut t = 1018;
        for _ in 0..10 {
            assert_eq!(l.attempt("bs.minh", A, t), Attempt::Allowed);
            match l.attempt("bs.minh", A, t) {
                Attempt::Refused { retry_after, .. } => {
                    assert!(retry_after <= MAX_DELAY_SECS);
                    t += retry_after;
                }
                Attempt::Allowed => panic!("no delay"),
            }
        }
        // An address that has not failed is not held back: the doctor signs
        // in from their own (and their attempt counts like any other).
        assert_eq!(l.attempt("bs.minh", B, t), Attempt::Allowed);
        l.succeeded("bs.minh", B);
        assert_eq!(l.attempt("bs.minh", A, t), Attempt::Allowed);
        // Other usernames are not affected.
        assert_eq!(l.attempt("bs.ngoc", A, t), Attempt::Allowed);
        // Failures are forgotten after a quiet spell.
        let mut l = Limits::new(100);
        for i in 0..8 {
            l.attempt("bs.minh", A, i * 100);
        }
        assert!(matches!(
            l.attempt("bs.minh", A, 700),
            Attempt::Refused { .. }
        ));
        assert_eq!(
            l.attempt("bs.minh", A, 700 + FAILURE_MEMORY_SECS),
            Attempt::Allowed
        );
    }

    #[test]
    fn a_throttled_address_is_refused_whatever_the_name() {
        let mut l = Limits::new(100);
        assert_eq!(l.attempt("a1", A, 1000), Attempt::Allowed);
        l.failed(A, None);
        assert_eq!(l.throttled(A, 1000), None);
        l.failed(A, Some(1003));
        assert_eq!(l.throttled(A, 1000), Some(3));
        assert_eq!(l.attempt("a2", A, 1000), refused(3, true, Limit::Address));
        assert_eq!(l.attempt("a3", A, 1001), refused(2, false, Limit::Address));
        assert_eq!(l.attempt("a3", B, 1001), Attempt::Allowed);
        assert_eq!(l.attempt("a3", A, 1003), Attempt::Allowed);
    }

    #[test]
    fn the_address_limiter_allows_a_burst_then_one_per_period() {
        let limiter = address_limiter();
        for i in 0..ADDRESS_BURST {
            assert!(limiter.check_key(&A).is_ok(), "failure {i}");
        }
        let Err(wait) = limiter.check_key(&A) else {
            panic!("the burst is spent")
        };
        let wait = wait.wait_time_from(governor::clock::Clock::now(limiter.clock()));
        assert!(wait <= Duration::from_secs(ADDRESS_REFILL_SECS), "{wait:?}");
        assert!(limiter.check_key(&B).is_ok(), "another address");
    }

    #[test]
    fn limits_memory_is_bounded() {
        let mut l = Limits::new(3);
        for (i, k) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8));
            l.attempt(k, addr, 1000 + i as u64);
            let (users, addresses) = l.len();
            assert!(users <= 3 && addresses <= 3);
        }
    }

    #[test]
    fn limiter_keys_normalise_what_was_typed() {
        assert_eq!(limiter_key("  BS.Minh "), "bs.minh");
        assert_eq!(limiter_key(&"x".repeat(1000)).len(), 64);
        // IPv6: one /64; IPv4-mapped: the IPv4 address.
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn pooled_verification_agrees_and_reuses_its_buffers() {
        let v = Verifier::new(2);
        let h = hash_password("mật khẩu đúng 123");
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 2, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let big = other
            .hash_password(b"Benhvien@2025", &salt)
            .unwrap()
            .to_string();
        for _ in 0..3 {
            assert!(v.verify_now(&h, "mật khẩu đúng 123"));
            assert!(!v.verify_now(&h, "mật khẩu sai 123"));
            assert!(v.verify_now(&big, "Benhvien@2025"));
            assert!(!v.verify_now(&big, "Benhvien@2024"));
            assert!(!v.verify_now("not a hash", "x"));
        }
        // One at a time here: one buffer, made once and grown once.
        let (peak, allocated) = v.stats();
        assert_eq!((peak, allocated), (1, 1));
        let buffers = v.buffers.lock().unwrap();
        assert_eq!(buffers.len(), 1);
        assert_eq!(buffers[0].len(), 256, "sized for the largest cost seen");
    }

    #[test]
    fn session_cookie_round_trips() {
        let token = [0xabu8; 32];
        let cookie = session_cookie(&token);
        let c = cookie.to_str().unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        let pair = c.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}; x=y")).unwrap(),
        );
        assert_eq!(session_token(&h), Some(token));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-tuxa_session=zz"),
        );
        assert_eq!(session_token(&h), None);
    }
}

/// The sign-in and directory API, through the whole router, in process.
#[cfg(test)]
mod api_tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use super::*;
    use crate::store::Store;

    const ADMIN: &str = "test-admin-key";
    const PASSWORD: &str = "Mật khẩu thử 2025";

    struct Api {
        app: axum::Router,
        state: AppState,
        store: Store,
        dir: PathBuf,
        // Kept alive: the router's state holds their other halves.
        _hub: tokio::sync::mpsc::Receiver<crate::hub_task::HubMsg>,
        _shutdown: tokio::sync::watch::Sender<bool>,
    }

    impl Drop for Api {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        json: Value,
    }

    impl Reply {
        fn code(&self) -> &str {
            self.json["error"]["code"].as_str().unwrap_or("")
        }

        /// `name=value` of the Set-Cookie header.
        fn cookie(&self) -> String {
            let c = self.headers[header::SET_COOKIE].to_str().unwrap();
            c.split(';').next().unwrap().to_owned()
        }
    }

    fn api() -> Api {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tuxa-auth-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let (state, hub_rx, shutdown_tx) = crate::app::test_state(&dir, ADMIN);
        let store = state.store.clone();
        Api {
            app: crate::http::router(state.clone()),
            state,
            store,
            dir,
            _hub: hub_rx,
            _shutdown: shutdown_tx,
        }
    }

    impl Api {
        async fn send(
            &self,
            method: Method,
            path: &str,
            headers: &[(&str, &str)],
            body: Option<Value>,
        ) -> Reply {
            self.send_via(&self.app, None, method, path, headers, body)
                .await
        }

        /// A request through `app`, from `peer` when given (as the accept
        /// loop tells every request its peer).
        async fn send_via(
            &self,
            app: &axum::Router,
            peer: Option<SocketAddr>,
            method: Method,
            path: &str,
            headers: &[(&str, &str)],
            body: Option<Value>,
        ) -> Reply {
            let mut req = Request::builder().method(method).uri(path);
            if let Some(p) = peer {
                req = req.extension(ConnectInfo(p));
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = match body {
                Some(b) => req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(b.to_string())),
                None => req.body(Body::empty()),
            }
            .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Reply {
                status,
                headers,
                json,
            }
        }

        async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
            let bearer = format!("Bearer {ADMIN}");
            self.send(method, path, &[("authorization", &bearer)], body)
                .await
        }

        async fn login(&self, username: &str, password: &str, totp: &str) -> Reply {
            self.send(
                Method::POST,
                "/api/v1/auth/login",
                &[],
                Some(json!({"username": username, "password": password, "totp": totp})),
            )
            .await
        }

        async fn login_from(
            &self,
            peer: SocketAddr,
            username: &str,
            password: &str,
            totp: &str,
        ) -> Reply {
            self.send_via(
                &self.app,
                Some(peer),
                Method::POST,
                "/api/v1/auth/login",
                &[],
                Some(json!({"username": username, "password": password, "totp": totp})),
            )
            .await
        }

        /// A stored TOTP secret, opened with the store's keys.
        fn open_totp(&self, sealed: &[u8]) -> TotpSecret {
            assert!(
                crate::secrets::sealed_key_id(sealed).is_some(),
                "stored sealed"
            );
            let plain = self.store.keys().open(Purpose::TotpSecret, sealed).unwrap();
            TotpSecret::from_slice(&plain).unwrap()
        }

        async fn me(&self, cookie: &str) -> Reply {
            self.send(Method::GET, "/api/v1/me", &[("cookie", cookie)], None)
                .await
        }

        async fn audit_actions(&self) -> Vec<(String, String, Value)> {
            self.store
                .call(|c| {
                    let mut st =
                        c.prepare("SELECT action, actor, detail FROM audit ORDER BY id")?;
                    st.query_map([], |r| {
                        let d: String = r.get(2)?;
                        Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&d).unwrap()))
                    })?
                    .collect()
                })
                .await
                .unwrap()
        }

        /// A provincial hospital, a district centre under it, and a doctor
        /// account at the district centre. Returns the doctor's TOTP secret.
        async fn directory(&self) -> (TotpSecret, Value) {
            let r = self
                .admin(
                    Method::POST,
                    "/api/v1/facilities",
                    Some(json!({"name": "Bệnh viện Đa khoa tỉnh", "tier": "province"})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
            let province = r.json["id"].as_i64().unwrap();
            let r = self
                .admin(
                    Method::POST,
                    "/api/v1/facilities",
                    Some(json!({"name": "Trung tâm Y tế huyện Tân Lập", "tier": "district", "parent_id": province})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
            let district = r.json["id"].as_i64().unwrap();
            let r = self
                .admin(
                    Method::POST,
                    "/api/v1/practitioners",
                    Some(json!({"name": "Nguyễn Văn An", "title": "BSCKI",
                                "licence_number": "000733/AH-CCHN", "specialty": "Nội khoa",
                                "facility_id": district})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
            let practitioner = r.json["id"].as_i64().unwrap();
            let r = self
                .admin(
                    Method::POST,
                    "/api/v1/staff",
                    Some(
                        json!({"username": "BS.An", "name": "Nguyễn Văn An", "role": "doctor",
                                "facility_id": district, "practitioner_id": practitioner,
                                "password": PASSWORD}),
                    ),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
            assert_eq!(r.json["staff"]["username"], "bs.an");
            assert!(
                r.json.get("password").is_none(),
                "a given password is not echoed"
            );
            let uri = r.json["totp"]["otpauth_uri"].as_str().unwrap();
            let secret = r.json["totp"]["secret"].as_str().unwrap();
            assert!(
                uri.starts_with("otpauth://totp/tuxa:bs.an?secret="),
                "{uri}"
            );
            assert!(uri.contains(secret));
            // Issue 12: the authenticator scans the same URI as a QR code;
            // the one-time secrets are never cached.
            let qr = crate::qr::render(uri).unwrap();
            assert_eq!(r.json["totp"]["qr_svg"].as_str(), Some(qr.svg.as_str()));
            assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
            let bytes: Vec<u8> = self
                .store
                .call(|c| {
                    let who = Username::parse("bs.an").unwrap();
                    let s = tuxa_store::directory::staff_by_username(c, &who)?.unwrap();
                    Ok(tuxa_store::secrets::totp_secret(c, s.id)?.unwrap())
                })
                .await
                .unwrap();
            let totp = self.open_totp(&bytes);
            assert_eq!(totp.base32(), secret);
            (
                totp,
                json!({"province": province, "district": district, "practitioner": practitioner, "staff": r.json["staff"]["id"]}),
            )
        }
    }

    fn now() -> u64 {
        unix_now()
    }

    fn peer(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
        SocketAddr::from(([a, b, c, d], 40000))
    }

    #[tokio::test]
    async fn password_and_totp_sign_in_and_logout_ends_the_session() {
        let api = api();
        let (totp, ids) = api.directory().await;

        let r = api.login("bs.an", PASSWORD, &totp.code_at(now())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        for attr in [
            "__Host-tuxa_session=",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        assert_eq!(r.json["staff"]["username"], "bs.an");
        assert_eq!(r.json["staff"]["role"], "doctor");
        assert_eq!(r.json["facility"]["tier"], "district");
        assert_eq!(r.json["practitioner"]["licence_number"], "000733/AH-CCHN");
        assert!(r.json["staff"].get("password_hash").is_none());
        let cookie = r.cookie();

        let me = api.me(&cookie).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.json);
        assert_eq!(me.json["staff"]["id"], ids["staff"]);
        assert_eq!(me.json["facility"]["id"], ids["district"]);

        // Not signed in, or a made-up session.
        assert_eq!(api.me("").await.status, StatusCode::UNAUTHORIZED);
        let forged = format!("{SESSION_COOKIE}={}", "ab".repeat(32));
        let r = api.me(&forged).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );

        let r = api
            .send(
                Method::POST,
                "/api/v1/auth/logout",
                &[("cookie", &cookie)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(
            r.headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        let r = api.me(&cookie).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );

        let actions = api.audit_actions().await;
        let staff_actor = format!("staff:{}", ids["staff"]);
        for want in ["staff_created", "login_succeeded", "logout"] {
            assert!(
                actions.iter().any(|(a, _, _)| a == want),
                "{want}: {actions:?}"
            );
        }
        assert!(
            actions
                .iter()
                .any(|(a, actor, _)| a == "login_succeeded" && *actor == staff_actor)
        );
        let sessions: i64 = api
            .store
            .call(|c| c.query_row("SELECT count(*) FROM staff_sessions", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(sessions, 0);
    }

    #[tokio::test]
    async fn wrong_password_wrong_code_and_unknown_user_look_alike() {
        let api = api();
        let (totp, _) = api.directory().await;
        let code = totp.code_at(now());
        let wrong_code = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);

        let wrong_totp = api.login("bs.an", PASSWORD, &wrong_code).await;
        let wrong_password = api.login("bs.an", "Mật khẩu sai 2025", &code).await;
        let unknown = api.login("bs.khong.co", PASSWORD, &code).await;
        let malformed = api.login("?", PASSWORD, &code).await;
        for r in [&wrong_totp, &wrong_password, &unknown, &malformed] {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.json, wrong_totp.json, "the same body for every failure");
            assert!(r.headers.get(header::SET_COOKIE).is_none());
        }
        assert_eq!(wrong_totp.code(), "login_failed");

        // The right password and code still work (4 failures so far), and
        // the same code cannot be used a second time.
        let ok = api.login("bs.an", PASSWORD, &code).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
        let replay = api.login("bs.an", PASSWORD, &code).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
        assert_eq!(replay.json, wrong_totp.json);

        let reasons: Vec<String> = api
            .audit_actions()
            .await
            .into_iter()
            .filter(|(a, _, _)| a == "login_failed")
            .map(|(_, _, d)| d["reason"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            reasons,
            [
                "wrong_totp",
                "wrong_password",
                "unknown_user",
                "unknown_user",
                "totp_reused"
            ]
        );
        // What was typed as a username is never recorded.
        let all = api.audit_actions().await;
        assert!(!format!("{all:?}").contains("bs.khong.co"));
    }

    #[tokio::test]
    async fn failures_are_limited_per_username() {
        let api = api();
        let (totp, _) = api.directory().await;
        let attacker = peer(203, 0, 113, 7);
        for _ in 0..FREE_FAILURES {
            let r = api
                .login_from(attacker, "bs.an", "Mật khẩu sai 2025", "000000")
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        // From the address that failed, even the right password and code
        // wait a little (2 s after the fifth failure).
        let r = api
            .login_from(attacker, "BS.AN ", PASSWORD, &totp.code_at(now()))
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
        assert_eq!(r.code(), "too_many_attempts");
        let retry: u64 = r.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=MAX_DELAY_SECS).contains(&retry), "{retry}");
        // Unknown usernames are limited the same way.
        for _ in 0..FREE_FAILURES {
            api.login_from(attacker, "bs.khong.co", PASSWORD, "000000")
                .await;
        }
        let r = api
            .login_from(attacker, "bs.khong.co", PASSWORD, "000000")
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let limited: usize = api
            .audit_actions()
            .await
            .iter()
            .filter(|(a, _, d)| {
                a == "login_failed" && d["reason"] == "rate_limited" && d["limit"] == "username"
            })
            .count();
        assert_eq!(limited, 2, "one audit entry per delay, not per refusal");
    }

    #[tokio::test]
    async fn guesses_from_elsewhere_do_not_lock_a_doctor_out() {
        let api = api();
        let (totp, _) = api.directory().await;
        let attacker = peer(203, 0, 113, 7);
        // Twelve wrong guesses: the old limit locked the account for five
        // minutes after five.
        let mut refused = 0;
        for _ in 0..12 {
            let r = api
                .login_from(attacker, "bs.an", "Mật khẩu sai 2025", "000000")
                .await;
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status),
                "{}",
                r.json
            );
            refused += usize::from(r.status == StatusCode::TOO_MANY_REQUESTS);
        }
        assert!(refused > 0, "the guesser is slowed down");
        // The doctor, from their own address, signs in at once.
        let doctor = peer(198, 51, 100, 20);
        let r = api
            .login_from(doctor, "bs.an", PASSWORD, &totp.code_at(now()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }

    #[tokio::test]
    async fn an_address_trying_many_names_is_throttled_not_the_others() {
        let api = api();
        let (totp, _) = api.directory().await;
        let attacker = peer(203, 0, 113, 7);
        let mut statuses = Vec::new();
        for i in 0..40 {
            let r = api
                .login_from(attacker, &format!("bs.user{i}"), PASSWORD, "000000")
                .await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(r.code(), "too_many_attempts");
                assert!(r.headers.contains_key(header::RETRY_AFTER));
            }
            statuses.push(r.status);
        }
        let first_refusal = statuses
            .iter()
            .position(|s| *s == StatusCode::TOO_MANY_REQUESTS)
            .expect("the address is throttled");
        assert!(
            first_refusal >= ADDRESS_BURST as usize,
            "{ADDRESS_BURST} failures are allowed at once: {statuses:?}"
        );
        assert_eq!(
            statuses.last(),
            Some(&StatusCode::TOO_MANY_REQUESTS),
            "{statuses:?}"
        );
        // The attacked doctor, from another address, is not affected; nor
        // is the attacker's next name.
        let r = api
            .login_from(
                peer(198, 51, 100, 20),
                "bs.an",
                PASSWORD,
                &totp.code_at(now()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let r = api
            .login_from(attacker, "bs.an", PASSWORD, &totp.code_at(now() + 30))
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
        let address_audits = api
            .audit_actions()
            .await
            .iter()
            .filter(|(a, _, d)| a == "login_failed" && d["limit"] == "address")
            .count();
        assert_eq!(address_audits, 1, "one audit entry per throttle");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn verifications_in_flight_never_exceed_the_bound() {
        let api = Arc::new(api());
        let (_totp, _) = api.directory().await;
        let auth = Arc::new(AuthState::new());
        let app = routes_with(auth.clone()).with_state(api.state.clone());
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let (api, app) = (api.clone(), app.clone());
            tasks.push(tokio::spawn(async move {
                let body =
                    json!({"username": "bs.an", "password": "Mật khẩu sai 2025", "totp": "000000"});
                api.send_via(
                    &app,
                    Some(peer(10, 0, 0, i)),
                    Method::POST,
                    "/api/v1/auth/login",
                    &[],
                    Some(body),
                )
                .await
                .status
            }));
        }
        for t in tasks {
            let status = t.await.unwrap();
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&status),
                "{status}"
            );
        }
        let (peak, allocated) = auth.verifier.stats();
        assert!(
            (1..=VERIFY_PERMITS).contains(&peak),
            "{peak} verifications at once"
        );
        assert!(allocated <= VERIFY_PERMITS, "{allocated} buffers");
    }

    #[tokio::test]
    async fn roles_change_and_disabling_ends_sessions() {
        let api = api();
        let (totp, ids) = api.directory().await;
        let r = api.login("bs.an", PASSWORD, &totp.code_at(now())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let cookie = r.cookie();
        let path = format!("/api/v1/staff/{}", ids["staff"]);

        let r = api
            .admin(Method::PATCH, &path, Some(json!({"role": "coordinator"})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["role"], "coordinator");
        // The session sees the new role at once.
        assert_eq!(api.me(&cookie).await.json["staff"]["role"], "coordinator");

        let r = api
            .admin(Method::PATCH, &path, Some(json!({"disabled": true})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(api.me(&cookie).await.status, StatusCode::UNAUTHORIZED);
        // Signing in again: right credentials, but disabled.
        let r = api
            .login("bs.an", PASSWORD, &totp.code_at(now() + 30))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);

        let actions = api.audit_actions().await;
        let changed = actions
            .iter()
            .find(|(a, _, _)| a == "role_changed")
            .expect("role_changed audited");
        assert_eq!(changed.2["from"], "doctor");
        assert_eq!(changed.2["to"], "coordinator");
        assert!(actions.iter().any(|(a, _, _)| a == "staff_disabled"));

        // Unknown staff, empty patch.
        let r = api
            .admin(
                Method::PATCH,
                "/api/v1/staff/999",
                Some(json!({"role": "nurse"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = api.admin(Method::PATCH, &path, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        let verdict = api.store.call(|c| crate::audit::verify(c)).await.unwrap();
        assert!(
            matches!(verdict, crate::audit::Verdict::Intact { .. }),
            "{verdict:?}"
        );
    }

    #[tokio::test]
    async fn directory_endpoints_need_the_admin_key_and_refuse_bad_input() {
        let api = api();
        let (_, ids) = api.directory().await;

        for path in [
            "/api/v1/facilities",
            "/api/v1/practitioners",
            "/api/v1/staff",
        ] {
            let r = api.send(Method::GET, path, &[], None).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::UNAUTHORIZED, "unauthorized")
            );
            let r = api
                .send(Method::GET, path, &[("authorization", "Bearer nope")], None)
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            let r = api.admin(Method::GET, path, None).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        let list = api.admin(Method::GET, "/api/v1/staff", None).await;
        let text = list.json.to_string();
        assert!(text.contains("bs.an"));
        assert!(
            !text.contains("password") && !text.contains("totp"),
            "{text}"
        );

        let bad = [
            // A commune station must sit under a district centre.
            (
                "/api/v1/facilities",
                json!({"name": "Trạm Y tế xã A", "tier": "commune_station", "parent_id": ids["province"]}),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/facilities",
                json!({"name": "X", "tier": "hospital"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/facilities",
                json!({"name": "  ", "tier": "province"}),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/facilities",
                json!({"name": "Trung tâm Y tế huyện Tân Lập", "tier": "district", "parent_id": ids["province"]}),
                StatusCode::CONFLICT,
            ),
            (
                "/api/v1/practitioners",
                json!({"name": "B", "title": "BS", "licence_number": "000733/AH-CCHN", "specialty": "Nhi khoa", "facility_id": ids["district"]}),
                StatusCode::CONFLICT,
            ),
            (
                "/api/v1/practitioners",
                json!({"name": "B", "title": "BS", "licence_number": "1/X", "specialty": "Nhi khoa", "facility_id": 999}),
                StatusCode::BAD_REQUEST,
            ),
            // A doctor needs a practitioner record.
            (
                "/api/v1/staff",
                json!({"username": "bs.b", "name": "B", "role": "doctor", "facility_id": ids["district"]}),
                StatusCode::BAD_REQUEST,
            ),
            // That practitioner already has an account.
            (
                "/api/v1/staff",
                json!({"username": "bs.c", "name": "C", "role": "doctor", "facility_id": ids["district"], "practitioner_id": ids["practitioner"]}),
                StatusCode::CONFLICT,
            ),
            // The practitioner works elsewhere.
            (
                "/api/v1/staff",
                json!({"username": "bs.d", "name": "D", "role": "doctor", "facility_id": ids["province"], "practitioner_id": ids["practitioner"]}),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/staff",
                json!({"username": "bs.an", "name": "E", "role": "coordinator", "facility_id": ids["district"]}),
                StatusCode::CONFLICT,
            ),
            (
                "/api/v1/staff",
                json!({"username": "x", "name": "E", "role": "coordinator", "facility_id": ids["district"]}),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/staff",
                json!({"username": "dp.e", "name": "E", "role": "patient", "facility_id": ids["district"]}),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/staff",
                json!({"username": "dp.e", "name": "E", "role": "coordinator", "facility_id": ids["district"], "password": "short"}),
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (path, body, status) in bad {
            let r = api.admin(Method::POST, path, Some(body.clone())).await;
            assert_eq!(r.status, status, "{path} {body}: {}", r.json);
            let code = if status == StatusCode::CONFLICT {
                "conflict"
            } else {
                "bad_request"
            };
            assert_eq!(r.code(), code, "{path} {body}: {}", r.json);
        }

        // A coordinator without a password given gets a generated one, once.
        let r = api
            .admin(
                Method::POST,
                "/api/v1/staff",
                Some(json!({"username": "dp.lam", "name": "Trịnh Văn Lâm", "role": "coordinator", "facility_id": ids["district"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let password = r.json["password"].as_str().unwrap().to_owned();
        let secret = r.json["totp"]["secret"].as_str().unwrap().to_owned();
        let bytes: Vec<u8> = api
            .store
            .call(|c| {
                let who = Username::parse("dp.lam").unwrap();
                let s = tuxa_store::directory::staff_by_username(c, &who)?.unwrap();
                Ok(tuxa_store::secrets::totp_secret(c, s.id)?.unwrap())
            })
            .await
            .unwrap();
        let totp = api.open_totp(&bytes);
        assert_eq!(totp.base32(), secret);
        let r = api.login("dp.lam", &password, &totp.code_at(now())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["practitioner"], Value::Null);
    }
}
