//! The database's secrets as stored: the join-token key (`meta.token_key`)
//! and every staff TOTP secret. The store neither seals nor opens them:
//! the server does, with the master key it reads from outside the data
//! directory.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::StaffId;

/// Where a secret lives in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// `meta.token_key`.
    TokenKey,
    /// `staff.totp_secret` of this account.
    Totp(StaffId),
}

fn table_exists(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// Every secret in the database, sealed or not. Works on a database of any
/// schema version (a table not made yet holds none): the server checks its
/// key against them before the schema is migrated.
pub fn secrets(c: &Connection) -> rusqlite::Result<Vec<(Slot, Vec<u8>)>> {
    let mut out = Vec::new();
    if table_exists(c, "meta")? {
        out.extend(token_key(c)?.map(|v| (Slot::TokenKey, v)));
    }
    if table_exists(c, "staff")? {
        let mut st = c.prepare("SELECT id, totp_secret FROM staff ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((Slot::Totp(r.get(0)?), r.get(1)?)))?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// Overwrites secrets in one transaction. The overwritten values are zeroed
/// on disk (`secure_delete`) and the write-ahead log is emptied, so that
/// plain values replaced by sealed ones do not linger in the file.
pub fn overwrite(c: &mut Connection, values: &[(Slot, Vec<u8>)]) -> rusqlite::Result<()> {
    c.pragma_update(None, "secure_delete", "ON")?;
    let tx = c.transaction()?;
    for (slot, value) in values {
        match slot {
            Slot::TokenKey => tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'token_key'",
                [value],
            )?,
            Slot::Totp(id) => tx.execute(
                "UPDATE staff SET totp_secret = ?1 WHERE id = ?2",
                params![value, id],
            )?,
        };
    }
    tx.commit()?;
    // The old page images stay in the WAL until it is checkpointed: copy
    // them home (zeroed now) and truncate the log.
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    c.pragma_update(None, "secure_delete", "OFF")?;
    Ok(())
}

/// The join-token key as stored.
pub fn token_key(c: &Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    c.query_row("SELECT value FROM meta WHERE key = 'token_key'", [], |r| {
        r.get(0)
    })
    .optional()
}

/// Stores the join-token key (sealed by the caller).
pub fn set_token_key(c: &Connection, value: &[u8]) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO meta(key, value) VALUES ('token_key', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [value],
    )?;
    Ok(())
}

/// A staff account's TOTP secret as stored.
pub fn totp_secret(c: &Connection, id: StaffId) -> rusqlite::Result<Option<Vec<u8>>> {
    c.query_row("SELECT totp_secret FROM staff WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuxa_records::directory::{NewFacility, NewStaff, StaffRole, Tier, Username};

    #[test]
    fn secrets_are_listed_and_overwritten_at_any_schema_version() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(secrets(&c).unwrap(), vec![], "an empty file holds none");
        crate::schema::migrate(&mut c).unwrap();
        assert_eq!(token_key(&c).unwrap(), None);
        set_token_key(&c, &[3; 32]).unwrap();
        let f = crate::directory::insert_facility(
            &c,
            &NewFacility {
                name: "F".into(),
                tier: Tier::Province,
                parent: None,
            },
            0,
        )
        .unwrap();
        let s = crate::directory::insert_staff(
            &c,
            &NewStaff {
                username: Username::parse("dp.a").unwrap(),
                name: "A".into(),
                role: StaffRole::Coordinator,
                facility: f.id,
                practitioner: None,
            },
            "x",
            &[7; 20],
            0,
        )
        .unwrap();
        assert_eq!(
            secrets(&c).unwrap(),
            vec![
                (Slot::TokenKey, vec![3; 32]),
                (Slot::Totp(s.id), vec![7; 20])
            ]
        );
        overwrite(
            &mut c,
            &[
                (Slot::TokenKey, b"k".to_vec()),
                (Slot::Totp(s.id), b"t".to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(token_key(&c).unwrap().as_deref(), Some(&b"k"[..]));
        assert_eq!(totp_secret(&c, s.id).unwrap().as_deref(), Some(&b"t"[..]));
        assert_eq!(totp_secret(&c, StaffId(99)).unwrap(), None);
    }
}
