//! The directory's rows: facilities, practitioners, staff accounts. Reads
//! return `rusqlite::Result`; writes check the directory's rules against
//! what is stored (a unique name, a practitioner at the right facility)
//! and refuse with `tuxa_records::Error`.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::directory::{
    Facility, NewFacility, NewPractitioner, NewStaff, Practitioner, Profile, Staff, StaffRole,
    Username,
};
use tuxa_records::{Error, FacilityId, PractitionerId, Result, StaffId};

fn row_to_facility(r: &rusqlite::Row<'_>) -> rusqlite::Result<Facility> {
    Ok(Facility {
        id: r.get(0)?,
        name: r.get(1)?,
        tier: r.get(2)?,
        parent_id: r.get(3)?,
        phone: r.get(4)?,
    })
}

const FACILITY_COLS: &str = "id, name, tier, parent_id, phone";

pub fn facilities(c: &Connection) -> rusqlite::Result<Vec<Facility>> {
    let mut st = c.prepare(&format!(
        "SELECT {FACILITY_COLS} FROM facilities ORDER BY id"
    ))?;
    st.query_map([], row_to_facility)?.collect()
}

pub fn facility(c: &Connection, id: FacilityId) -> rusqlite::Result<Option<Facility>> {
    c.query_row(
        &format!("SELECT {FACILITY_COLS} FROM facilities WHERE id = ?1"),
        [id],
        row_to_facility,
    )
    .optional()
}

/// The facility called `name` under `parent`, if there is one.
pub fn facility_named(
    c: &Connection,
    name: &str,
    parent: Option<FacilityId>,
) -> rusqlite::Result<Option<Facility>> {
    c.query_row(
        &format!("SELECT {FACILITY_COLS} FROM facilities WHERE name = ?1 AND parent_id IS ?2"),
        params![name, parent],
        row_to_facility,
    )
    .optional()
}

pub fn insert_facility(c: &Connection, f: &NewFacility, now: i64) -> Result<Facility> {
    let parent_tier = match f.parent {
        Some(p) => Some(
            facility(c, p)?
                .ok_or_else(|| Error::bad_request(format!("no facility with id {p}")))?
                .tier,
        ),
        None => None,
    };
    if !f.tier.parent_allowed(parent_tier) {
        return Err(Error::bad_request(f.tier.parent_rule()));
    }
    if facility_named(c, &f.name, f.parent)?.is_some() {
        return Err(Error::conflict(
            "a facility with this name already exists there",
        ));
    }
    c.execute(
        "INSERT INTO facilities(name, tier, parent_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![f.name, f.tier, f.parent, now],
    )?;
    Ok(Facility {
        id: FacilityId(c.last_insert_rowid()),
        name: f.name.clone(),
        tier: f.tier,
        parent_id: f.parent,
        phone: None,
    })
}

/// Sets the phone number patients call for facility `id`.
pub fn set_facility_phone(c: &Connection, id: FacilityId, phone: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE facilities SET phone = ?1 WHERE id = ?2",
        params![phone, id],
    )?;
    Ok(())
}

/// [`insert_facility`], with its phone number if it has one.
pub fn insert_facility_with_phone(
    c: &Connection,
    f: &NewFacility,
    phone: Option<String>,
    now: i64,
) -> Result<Facility> {
    let mut made = insert_facility(c, f, now)?;
    if let Some(p) = phone {
        set_facility_phone(c, made.id, &p)?;
        made.phone = Some(p);
    }
    Ok(made)
}

fn row_to_practitioner(r: &rusqlite::Row<'_>) -> rusqlite::Result<Practitioner> {
    Ok(Practitioner {
        id: r.get(0)?,
        name: r.get(1)?,
        title: r.get(2)?,
        licence_number: r.get(3)?,
        specialty: r.get(4)?,
        facility_id: r.get(5)?,
    })
}

const PRACTITIONER_COLS: &str = "id, name, title, licence_number, specialty, facility_id";

pub fn practitioners(c: &Connection) -> rusqlite::Result<Vec<Practitioner>> {
    let mut st = c.prepare(&format!(
        "SELECT {PRACTITIONER_COLS} FROM practitioners ORDER BY id"
    ))?;
    st.query_map([], row_to_practitioner)?.collect()
}

pub fn practitioner(c: &Connection, id: PractitionerId) -> rusqlite::Result<Option<Practitioner>> {
    c.query_row(
        &format!("SELECT {PRACTITIONER_COLS} FROM practitioners WHERE id = ?1"),
        [id],
        row_to_practitioner,
    )
    .optional()
}

pub fn practitioner_by_licence(
    c: &Connection,
    licence_number: &str,
) -> rusqlite::Result<Option<Practitioner>> {
    c.query_row(
        &format!("SELECT {PRACTITIONER_COLS} FROM practitioners WHERE licence_number = ?1"),
        [licence_number],
        row_to_practitioner,
    )
    .optional()
}

pub fn insert_practitioner(c: &Connection, p: &NewPractitioner, now: i64) -> Result<Practitioner> {
    if facility(c, p.facility)?.is_none() {
        return Err(Error::bad_request(format!(
            "no facility with id {}",
            p.facility
        )));
    }
    if practitioner_by_licence(c, &p.licence_number)?.is_some() {
        return Err(Error::conflict(
            "a practitioner with this licence number already exists",
        ));
    }
    c.execute(
        "INSERT INTO practitioners(name, title, licence_number, specialty, facility_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            p.name,
            p.title,
            p.licence_number,
            p.specialty,
            p.facility,
            now
        ],
    )?;
    Ok(Practitioner {
        id: PractitionerId(c.last_insert_rowid()),
        name: p.name.clone(),
        title: p.title.clone(),
        licence_number: p.licence_number.clone(),
        specialty: p.specialty.clone(),
        facility_id: p.facility,
    })
}

fn row_to_staff(r: &rusqlite::Row<'_>) -> rusqlite::Result<Staff> {
    Ok(Staff {
        id: r.get(0)?,
        username: r.get(1)?,
        name: r.get(2)?,
        role: r.get(3)?,
        facility_id: r.get(4)?,
        practitioner_id: r.get(5)?,
        disabled: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const STAFF_COLS: &str =
    "id, username, display_name, role, facility_id, practitioner_id, disabled, created_at";

pub fn staff_list(c: &Connection) -> rusqlite::Result<Vec<Staff>> {
    let mut st = c.prepare(&format!("SELECT {STAFF_COLS} FROM staff ORDER BY id"))?;
    st.query_map([], row_to_staff)?.collect()
}

pub fn staff(c: &Connection, id: StaffId) -> rusqlite::Result<Option<Staff>> {
    c.query_row(
        &format!("SELECT {STAFF_COLS} FROM staff WHERE id = ?1"),
        [id],
        row_to_staff,
    )
    .optional()
}

pub fn staff_by_username(c: &Connection, username: &Username) -> rusqlite::Result<Option<Staff>> {
    c.query_row(
        &format!("SELECT {STAFF_COLS} FROM staff WHERE username = ?1"),
        [username],
        row_to_staff,
    )
    .optional()
}

/// A staff member with their facility and practitioner record.
pub fn profile(c: &Connection, id: StaffId) -> rusqlite::Result<Option<Profile>> {
    let Some(staff) = staff(c, id)? else {
        return Ok(None);
    };
    let Some(facility) = facility(c, staff.facility_id)? else {
        return Ok(None);
    };
    let practitioner = match staff.practitioner_id {
        Some(p) => practitioner(c, p)?,
        None => None,
    };
    Ok(Some(Profile {
        staff,
        facility,
        practitioner,
    }))
}

/// Checks that `role` fits `practitioner` at `facility`.
fn check_practitioner(
    c: &Connection,
    role: StaffRole,
    facility: FacilityId,
    linked: Option<PractitionerId>,
    this_account: Option<StaffId>,
) -> Result<()> {
    match linked {
        None if role.needs_practitioner() => Err(Error::bad_request(format!(
            "a {} account needs practitioner_id (the practitioner record with the licence number)",
            role.as_str()
        ))),
        None => Ok(()),
        Some(p) => {
            let rec = practitioner(c, p)?
                .ok_or_else(|| Error::bad_request(format!("no practitioner with id {p}")))?;
            if rec.facility_id != facility {
                return Err(Error::bad_request(
                    "the practitioner belongs to another facility",
                ));
            }
            let taken: Option<StaffId> = c
                .query_row(
                    "SELECT id FROM staff WHERE practitioner_id = ?1",
                    [p],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some_and(|s| Some(s) != this_account) {
                return Err(Error::conflict(
                    "this practitioner already has a staff account",
                ));
            }
            Ok(())
        }
    }
}

/// Inserts a staff account. `password_hash` is a PHC string;
/// `totp_sealed` the TOTP secret as the caller sealed it (the store never
/// sees it in the clear).
pub fn insert_staff(
    c: &Connection,
    s: &NewStaff,
    password_hash: &str,
    totp_sealed: &[u8],
    now: i64,
) -> Result<Staff> {
    if facility(c, s.facility)?.is_none() {
        return Err(Error::bad_request(format!(
            "no facility with id {}",
            s.facility
        )));
    }
    check_practitioner(c, s.role, s.facility, s.practitioner, None)?;
    if staff_by_username(c, &s.username)?.is_some() {
        return Err(Error::conflict("this username is taken"));
    }
    c.execute(
        "INSERT INTO staff(username, display_name, password_hash, totp_secret, role,
                           facility_id, practitioner_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            s.username,
            s.name,
            password_hash,
            totp_sealed,
            s.role,
            s.facility,
            s.practitioner,
            now
        ],
    )?;
    Ok(Staff {
        id: StaffId(c.last_insert_rowid()),
        username: s.username.clone(),
        name: s.name.clone(),
        role: s.role,
        facility_id: s.facility,
        practitioner_id: s.practitioner,
        disabled: false,
        created_at: now,
    })
}

/// Changes a staff member's role. Returns the account before and after.
pub fn set_role(c: &Connection, id: StaffId, role: StaffRole) -> Result<(Staff, Staff)> {
    let before = staff(c, id)?.ok_or_else(|| Error::not_found("no such staff member"))?;
    check_practitioner(
        c,
        role,
        before.facility_id,
        before.practitioner_id,
        Some(id),
    )?;
    c.execute(
        "UPDATE staff SET role = ?1 WHERE id = ?2",
        params![role, id],
    )?;
    let after = Staff {
        role,
        ..before.clone()
    };
    Ok((before, after))
}

/// Disables or re-enables an account. Disabling ends its sessions.
pub fn set_disabled(c: &Connection, id: StaffId, disabled: bool) -> Result<(Staff, Staff)> {
    let before = staff(c, id)?.ok_or_else(|| Error::not_found("no such staff member"))?;
    c.execute(
        "UPDATE staff SET disabled = ?1 WHERE id = ?2",
        params![disabled, id],
    )?;
    if disabled {
        c.execute("DELETE FROM staff_sessions WHERE staff_id = ?1", [id])?;
    }
    let after = Staff {
        disabled,
        ..before.clone()
    };
    Ok((before, after))
}

/// Changes a role, the disabled flag, or both, in one transaction. Returns
/// the account before and after; refuses (changing nothing) when neither
/// is given or a rule forbids it.
pub fn update_staff(
    c: &mut Connection,
    id: StaffId,
    role: Option<StaffRole>,
    disabled: Option<bool>,
) -> Result<(Staff, Staff)> {
    if role.is_none() && disabled.is_none() {
        return Err(Error::bad_request("give role, disabled, or both"));
    }
    let tx = c.transaction()?;
    let mut before = None;
    let mut after = None;
    if let Some(role) = role {
        let (b, a) = set_role(&tx, id, role)?;
        before.get_or_insert(b);
        after = Some(a);
    }
    if let Some(d) = disabled {
        let (b, a) = set_disabled(&tx, id, d)?;
        before.get_or_insert(b);
        after = Some(a);
    }
    tx.commit()?;
    match (before, after) {
        (Some(b), Some(a)) => Ok((b, a)),
        _ => Err(Error::internal("update_staff: nothing was updated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuxa_records::directory::Tier;

    fn conn() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::schema::migrate(&mut c).unwrap();
        c
    }

    fn fac(name: &str, tier: Tier, parent: Option<FacilityId>) -> NewFacility {
        NewFacility {
            name: name.into(),
            tier,
            parent,
        }
    }

    #[test]
    fn facilities_nest_and_names_are_unique_under_a_parent() {
        let c = conn();
        let p = insert_facility_with_phone(
            &c,
            &fac("BVĐK tỉnh", Tier::Province, None),
            Some("0210 3812 345".into()),
            1,
        )
        .unwrap();
        assert_eq!(facility(&c, p.id).unwrap(), Some(p.clone()));
        assert_eq!(p.phone.as_deref(), Some("0210 3812 345"));
        let d = insert_facility(&c, &fac("TTYT Tân Lập", Tier::District, Some(p.id)), 2).unwrap();
        assert!(matches!(
            insert_facility(&c, &fac("TTYT Tân Lập", Tier::District, Some(p.id)), 3),
            Err(Error::Conflict(_))
        ));
        for (bad, parent) in [
            (fac("X", Tier::CommuneStation, Some(p.id)), "tier"),
            (fac("X", Tier::District, Some(FacilityId(99))), "missing"),
        ] {
            assert!(
                matches!(insert_facility(&c, &bad, 3), Err(Error::BadRequest(_))),
                "{parent}"
            );
        }
        assert_eq!(
            facilities(&c)
                .unwrap()
                .iter()
                .map(|f| f.id)
                .collect::<Vec<_>>(),
            [p.id, d.id],
            "nothing refused was written"
        );
    }

    #[test]
    fn staff_accounts_follow_their_practitioner_and_change_in_one_transaction() {
        let mut c = conn();
        let f = insert_facility(&c, &fac("BVĐK tỉnh", Tier::Province, None), 1).unwrap();
        let other = insert_facility(&c, &fac("CDC", Tier::Cdc, None), 1).unwrap();
        let pr = insert_practitioner(
            &c,
            &NewPractitioner {
                name: "Nguyễn Văn An".into(),
                title: "BSCKI".into(),
                licence_number: "000733/AH-CCHN".into(),
                specialty: "Nội khoa".into(),
                facility: f.id,
            },
            1,
        )
        .unwrap();
        let new = |username: &str, role, facility, practitioner| NewStaff {
            username: Username::parse(username).unwrap(),
            name: "A".into(),
            role,
            facility,
            practitioner,
        };
        // A doctor needs a practitioner record at their facility.
        for bad in [
            new("bs.a", StaffRole::Doctor, f.id, None),
            new("bs.a", StaffRole::Doctor, other.id, Some(pr.id)),
        ] {
            assert!(matches!(
                insert_staff(&c, &bad, "h", b"t", 1),
                Err(Error::BadRequest(_))
            ));
        }
        let doc = insert_staff(
            &c,
            &new("bs.a", StaffRole::Doctor, f.id, Some(pr.id)),
            "h",
            b"t",
            1,
        )
        .unwrap();
        assert!(matches!(
            insert_staff(
                &c,
                &new("bs.b", StaffRole::Doctor, f.id, Some(pr.id)),
                "h",
                b"t",
                1
            ),
            Err(Error::Conflict(_))
        ));
        let coord = insert_staff(
            &c,
            &new("dp.c", StaffRole::Coordinator, f.id, None),
            "h",
            b"t",
            1,
        )
        .unwrap();
        assert!(matches!(
            insert_staff(&c, &new("DP.C", StaffRole::Admin, f.id, None), "h", b"t", 1),
            Err(Error::Conflict(_))
        ));
        assert_eq!(profile(&c, doc.id).unwrap().unwrap().practitioner, Some(pr));

        // A coordinator cannot become a doctor without a practitioner: and
        // the disabling asked for with it is not written either.
        assert!(matches!(
            update_staff(&mut c, coord.id, Some(StaffRole::Doctor), Some(true)),
            Err(Error::BadRequest(_))
        ));
        assert_eq!(staff(&c, coord.id).unwrap(), Some(coord.clone()));
        let (before, after) =
            update_staff(&mut c, coord.id, Some(StaffRole::Admin), Some(true)).unwrap();
        assert_eq!(before, coord);
        assert_eq!((after.role, after.disabled), (StaffRole::Admin, true));
        assert_eq!(staff(&c, coord.id).unwrap(), Some(after));
        assert!(matches!(
            update_staff(&mut c, StaffId(99), None, Some(true)),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            update_staff(&mut c, coord.id, None, None),
            Err(Error::BadRequest(_))
        ));
    }
}
