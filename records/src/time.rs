//! Wall-clock time as the record keeps it: whole seconds since the Unix
//! epoch. Like the other core crates this one never reads the clock; the
//! caller passes `now` in.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    pub const fn from_secs(secs: i64) -> UnixTime {
        UnixTime(secs)
    }

    pub const fn secs(self) -> i64 {
        self.0
    }

    /// `self + secs`, saturating: a far-future expiry never wraps.
    pub const fn plus(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::ToSql for UnixTime {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.0))
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::FromSql for UnixTime {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(v).map(UnixTime)
    }
}
