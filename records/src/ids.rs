//! The directory's and the record's ids: one definition each, used by
//! `signaling`, `store` and `server` alike (no casts between crates).
//!
//! They are SQLite row ids, hence `i64`; a row id is never negative.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.0))
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(v).map($name)
            }
        }
    };
}
pub(crate) use id_type;

id_type!(
    /// A row of `facilities`.
    FacilityId
);
id_type!(
    /// A row of `practitioners`.
    PractitionerId
);
id_type!(
    /// A row of `staff`: a staff account.
    StaffId
);
id_type!(
    /// A row of `queues`: an on-call queue (a specialty at a facility).
    QueueId
);
id_type!(
    /// A row of `conference_requests`.
    ConferenceId
);

/// Enums stored as text: `as_str` into the database, `parse` out of it.
#[cfg(feature = "sqlite")]
#[macro_export]
macro_rules! text_enum_sql {
    ($t:ty) => {
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {s:?}", stringify!($t)).into(),
                    )
                })
            }
        }
    };
}
