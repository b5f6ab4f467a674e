//! The audit table: appending an entry to the chain (with the stranger
//! refusals' aggregation, `audit_strangers`) and reading the chain back to
//! verify it. The rules (hashes, windows, verification) are
//! `tuxa_records::audit`'s.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::audit::{
    self, ChainRow, Entry, GENESIS, STRANGER_WINDOW_SECS, StrangerStep, Verdict,
};

/// Appends an entry. Runs on the store thread, so entries are chained in
/// the order they are written, one at a time.
///
/// Stranger-caused refusals (`Action::caused_by_strangers`) are bounded: per
/// window and kind, the first `STRANGER_BURST` are chained as they come,
/// the others are counted in `audit_strangers` (in the same transaction, so
/// a count is never lost) and chained as one summary entry by the first
/// append after the window ends. A refusal naming a consultation that does
/// not exist is filed under no consultation, so made-up room ids cannot
/// multiply the kinds either.
pub fn append(c: &mut Connection, e: &Entry) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    append_in(&tx, e)?;
    tx.commit()
}

/// [`append`] inside the caller's transaction: the entry is chained with
/// the caller's own change or not at all (a recording file's row and its
/// audit entry, `recordings.rs`).
pub fn append_in(tx: &rusqlite::Transaction<'_>, e: &Entry) -> rusqlite::Result<()> {
    flush_strangers(tx, e.at)?;
    if e.action.caused_by_strangers() {
        let mut e = e.clone();
        if let Some(id) = &e.consultation {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM consultations WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if !exists {
                e.consultation = None;
            }
        }
        let detail = e.detail.to_string();
        let consultation = e.consultation.clone().unwrap_or_default();
        let key = audit::stranger_key(e.action, &consultation, &e.actor, &detail);
        let written: Option<i64> = tx
            .query_row(
                "SELECT written FROM audit_strangers WHERE key = ?1",
                [&key],
                |r| r.get(0),
            )
            .optional()?;
        match (audit::stranger_step(written), written) {
            (StrangerStep::Count, _) => {
                tx.execute(
                    "UPDATE audit_strangers SET repeated = repeated + 1,
                         repeated_from = COALESCE(repeated_from, ?2), repeated_to = ?2
                     WHERE key = ?1",
                    params![key, e.at],
                )?;
                return Ok(());
            }
            (StrangerStep::Chain, Some(_)) => {
                tx.execute(
                    "UPDATE audit_strangers SET written = written + 1 WHERE key = ?1",
                    [&key],
                )?;
            }
            (StrangerStep::Chain, None) => {
                tx.execute(
                    "INSERT INTO audit_strangers(key, action, consultation_id, actor, detail,
                         first_at, written, repeated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, 0)",
                    params![key, e.action.as_str(), consultation, e.actor, detail, e.at],
                )?;
            }
        }
        chain(tx, &e)?;
        return Ok(());
    }
    chain(tx, e)
}

/// Chains the summary of every stranger window that is over by `now`, and
/// forgets the windows.
fn flush_strangers(tx: &rusqlite::Transaction<'_>, now: i64) -> rusqlite::Result<()> {
    /// A window that is over, as `audit_strangers` holds it.
    struct Over {
        key: String,
        action: String,
        consultation: String,
        actor: String,
        detail: String,
        repeated: i64,
        from: i64,
        to: i64,
    }
    let due: Vec<Over> = {
        let mut st = tx.prepare(
            "SELECT key, action, consultation_id, actor, detail, repeated,
                    COALESCE(repeated_from, first_at), COALESCE(repeated_to, first_at)
             FROM audit_strangers WHERE first_at <= ?1 ORDER BY first_at, key",
        )?;
        st.query_map([now - STRANGER_WINDOW_SECS], |r| {
            Ok(Over {
                key: r.get(0)?,
                action: r.get(1)?,
                consultation: r.get(2)?,
                actor: r.get(3)?,
                detail: r.get(4)?,
                repeated: r.get(5)?,
                from: r.get(6)?,
                to: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    for w in due {
        if w.repeated > 0 {
            let detail = audit::stranger_summary(&w.detail, w.repeated, w.from, w.to);
            write(tx, w.to, &w.action, &w.consultation, &w.actor, &detail)?;
        }
        tx.execute("DELETE FROM audit_strangers WHERE key = ?1", [w.key])?;
    }
    Ok(())
}

fn chain(tx: &rusqlite::Transaction<'_>, e: &Entry) -> rusqlite::Result<()> {
    write(
        tx,
        e.at,
        e.action.as_str(),
        &e.consultation.clone().unwrap_or_default(),
        &e.actor,
        &e.detail.to_string(),
    )
}

fn write(
    tx: &rusqlite::Transaction<'_>,
    at: i64,
    action: &str,
    consultation: &str,
    actor: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    let (last_id, prev): (i64, String) = tx
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or_else(|| (0, GENESIS.to_owned()));
    let id = last_id + 1;
    let hash = audit::entry_hash(&prev, id, at, action, consultation, actor, detail);
    tx.execute(
        "INSERT INTO audit(id, at, action, consultation_id, actor, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, at, action, consultation, actor, detail, prev, hash],
    )?;
    Ok(())
}

/// Walks the whole chain (`tuxa verify-audit`, the tests).
pub fn verify(c: &Connection) -> rusqlite::Result<Verdict> {
    let mut st = c.prepare(
        "SELECT id, at, action, consultation_id, actor, detail, prev_hash, hash FROM audit ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ChainRow {
            id: r.get(0)?,
            at: r.get(1)?,
            action: r.get(2)?,
            consultation: r.get(3)?,
            actor: r.get(4)?,
            detail: r.get(5)?,
            prev_hash: r.get(6)?,
            hash: r.get(7)?,
        })
    })?;
    audit::verify(rows)
}

/// The last entry of the whole chain: its id and hash (`None`: empty).
pub fn head(c: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    c.query_row(
        "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tuxa_records::audit::{Action, STRANGER_BURST, entry_hash};

    use super::*;

    fn db() -> Connection {
        crate::test_db()
    }

    /// What a tamperer outside tuxa does first.
    fn drop_guards(c: &Connection) {
        c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    fn entry(i: i64) -> Entry {
        Entry {
            at: 1_700_000_000 + i,
            action: Action::Joined,
            consultation: Some("abcdefghijklmnop".into()),
            actor: format!("participant:{i}"),
            detail: serde_json::json!({"role": "doctor"}),
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let mut c = db();
        for i in 0..5 {
            append(&mut c, &entry(i)).unwrap();
        }
        match verify(&c).unwrap() {
            Verdict::Intact { entries, .. } => assert_eq!(entries, 5),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn tampering_names_the_first_broken_entry() {
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &entry(i)).unwrap();
        }
        // Edits through SQLite are refused outright.
        assert!(
            c.execute("UPDATE audit SET actor = 'x' WHERE id = 3", [])
                .is_err()
        );
        assert!(c.execute("DELETE FROM audit WHERE id = 3", []).is_err());
        drop_guards(&c);
        // Altered contents.
        c.execute("UPDATE audit SET actor = 'participant:99' WHERE id = 3", [])
            .unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { entry: 3, .. }
        ));

        // A deleted entry.
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &entry(i)).unwrap();
        }
        drop_guards(&c);
        c.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { entry: 4, .. }
        ));

        // A rewritten entry whose own hash was recomputed: the next link breaks.
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &entry(i)).unwrap();
        }
        drop_guards(&c);
        let prev: String = c
            .query_row("SELECT prev_hash FROM audit WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        let forged = entry_hash(&prev, 2, 1, "joined", "abcdefghijklmnop", "x", "{}");
        c.execute(
            "UPDATE audit SET at = 1, actor = 'x', detail = '{}', hash = ?1 WHERE id = 2",
            [forged],
        )
        .unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { entry: 3, .. }
        ));
    }
    /// 300 forged join-checks against one consultation (each a refusal a
    /// stranger can cause) chain three entries and, once the window is
    /// over, one summary that counts the rest; nothing is lost and the
    /// chain still verifies. Made-up room ids are filed under none.
    #[test]
    fn stranger_refusals_are_aggregated_not_chained_one_by_one() {
        let mut c = db();
        c.execute(
            "INSERT INTO consultations(id, kind, title, status, created_at)
             VALUES ('abcdefghijklmnop', 'visit', 't', 'open', 0)",
            [],
        )
        .unwrap();
        let refused = |at: i64, room: &str| Entry {
            at,
            action: Action::LinkRefused,
            consultation: Some(room.into()),
            actor: "unknown".into(),
            detail: serde_json::json!({"code": "token_invalid", "via": "join-check"}),
        };
        let t0 = 1_700_000_000;
        for i in 0..300 {
            append(&mut c, &refused(t0 + i / 10, "abcdefghijklmnop")).unwrap();
        }
        for i in 0..50 {
            append(&mut c, &refused(t0, &format!("zzzzzzzzzzzzzz{:02}", i))).unwrap();
        }
        let count =
            |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        let room_rows = "SELECT COUNT(*) FROM audit WHERE consultation_id = 'abcdefghijklmnop' AND action = 'link_refused'";
        assert_eq!(count(&c, room_rows), STRANGER_BURST);
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM audit WHERE consultation_id = ''"),
            STRANGER_BURST
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM audit WHERE consultation_id LIKE 'zz%'"
            ),
            0
        );
        // Someone else's ordinary entry after the window closes the window.
        append(&mut c, &entry(0)).unwrap();
        let mut e = entry(1);
        e.at = t0 + 61;
        append(&mut c, &e).unwrap();
        assert_eq!(count(&c, room_rows), STRANGER_BURST + 1);
        let summary: String = c
            .query_row(
                "SELECT detail FROM audit WHERE consultation_id = 'abcdefghijklmnop' AND action = 'link_refused'
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let summary: Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(summary["repeated"], 300 - STRANGER_BURST);
        assert_eq!(summary["repeated_to"], t0 + 29);
        assert_eq!(summary["code"], "token_invalid");
        let unknown: String = c
            .query_row(
                "SELECT detail FROM audit WHERE consultation_id = '' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(unknown.contains("\"repeated\":47"), "{unknown}");
        assert_eq!(count(&c, "SELECT COUNT(*) FROM audit_strangers"), 0);
        // A new window chains again from the first.
        append(&mut c, &refused(t0 + 62, "abcdefghijklmnop")).unwrap();
        assert_eq!(count(&c, room_rows), STRANGER_BURST + 2);
        assert!(matches!(verify(&c).unwrap(), Verdict::Intact { .. }));
        // Entries of staff and participants are never aggregated.
        let before = count(&c, "SELECT COUNT(*) FROM audit");
        for i in 0..10 {
            append(&mut c, &entry(100 + i)).unwrap();
        }
        assert_eq!(count(&c, "SELECT COUNT(*) FROM audit"), before + 10);
    }
}
