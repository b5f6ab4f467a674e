//! `tuxa load-demo`: a demo province in the SQLite file — a provincial
//! general hospital, a CDC, three district health centres with their
//! commune stations, doctors and nurses with licence numbers and
//! specialties, coordinators and an administrator, each with a staff
//! account.
//!
//! Idempotent: facilities are matched by name and parent, practitioners by
//! licence number, accounts by username; what exists is left as it is.
//! Every demo account has the password [`DEMO_PASSWORD`]; its TOTP secret is
//! random, made on the first load, and printed on every load for accounts
//! that still have the demo password (an account whose password was changed
//! is listed without its secret).
//!
//! The province, its places and its people are invented.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::Connection;
use serde_json::json;

use crate::audit::{self, Action};
use crate::auth::{self, TotpSecret};
use crate::directory::{
    self, FacilityId, NewFacility, NewPractitioner, NewStaff, PractitionerId, StaffRole, Tier,
    Username,
};

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "demo-tuxa-2025";

struct DemoFacility {
    key: &'static str,
    name: &'static str,
    tier: Tier,
    parent: Option<&'static str>,
}

const fn facility(
    key: &'static str,
    name: &'static str,
    tier: Tier,
    parent: Option<&'static str>,
) -> DemoFacility {
    DemoFacility {
        key,
        name,
        tier,
        parent,
    }
}

/// Parents come before their children.
#[rustfmt::skip]
const FACILITIES: &[DemoFacility] = &[
    facility("bvdk", "Bệnh viện Đa khoa tỉnh An Hòa", Tier::Province, None),
    facility("tl", "Trung tâm Y tế huyện Tân Lập", Tier::District, Some("bvdk")),
    facility("tl.tt", "Trạm Y tế xã Tân Tiến", Tier::CommuneStation, Some("tl")),
    facility("tl.hb", "Trạm Y tế xã Hòa Bình", Tier::CommuneStation, Some("tl")),
    facility("sh", "Trung tâm Y tế huyện Sơn Hà", Tier::District, Some("bvdk")),
    facility("sh.st", "Trạm Y tế xã Sơn Thủy", Tier::CommuneStation, Some("sh")),
    facility("sh.sk", "Trạm Y tế xã Sơn Kỳ", Tier::CommuneStation, Some("sh")),
    facility("pl", "Trung tâm Y tế huyện Phước Long", Tier::District, Some("bvdk")),
    facility("pl.pt", "Trạm Y tế xã Phước Thành", Tier::CommuneStation, Some("pl")),
    facility("pl.lh", "Trạm Y tế xã Long Hưng", Tier::CommuneStation, Some("pl")),
    facility("cdc", "Trung tâm Kiểm soát bệnh tật tỉnh An Hòa", Tier::Cdc, None),
];

struct DemoPerson {
    username: &'static str,
    name: &'static str,
    role: StaffRole,
    facility: &'static str,
    /// (title, licence number, specialty) for clinical staff.
    practice: Option<(&'static str, &'static str, &'static str)>,
}

const fn person(
    username: &'static str,
    name: &'static str,
    role: StaffRole,
    facility: &'static str,
    practice: Option<(&'static str, &'static str, &'static str)>,
) -> DemoPerson {
    DemoPerson {
        username,
        name,
        role,
        facility,
        practice,
    }
}

use StaffRole::{Admin, Coordinator, Doctor, Nurse};

#[rustfmt::skip]
const PEOPLE: &[DemoPerson] = &[
    // Bệnh viện Đa khoa tỉnh: specialists, the provincial coordinator, the administrator.
    person("bs.minh", "Lê Hoàng Minh", Doctor, "bvdk", Some(("BSCKII", "000125/AH-CCHN", "Nội khoa"))),
    person("bs.ngoc", "Trần Thị Bích Ngọc", Doctor, "bvdk", Some(("ThS.BS", "000214/AH-CCHN", "Nhi khoa"))),
    person("bs.thang", "Hoàng Đức Thắng", Doctor, "bvdk", Some(("BSCKI", "000331/AH-CCHN", "Sản khoa"))),
    person("bs.bao", "Đặng Quốc Bảo", Doctor, "bvdk", Some(("BSCKII", "000402/AH-CCHN", "Ngoại khoa"))),
    person("bs.diep", "Tạ Thị Ngọc Diệp", Doctor, "bvdk", Some(("BSCKI", "000517/AH-CCHN", "Chẩn đoán hình ảnh"))),
    person("dd.nhung", "Bùi Thị Hồng Nhung", Nurse, "bvdk", Some(("CNĐD", "001208/AH-CCHN", "Điều dưỡng"))),
    person("dp.ha", "Phạm Thu Hà", Coordinator, "bvdk", None),
    person("qt.son", "Đinh Công Sơn", Admin, "bvdk", None),
    // CDC.
    person("bs.khanh", "Dương Văn Khánh", Doctor, "cdc", Some(("BSCKI", "000611/AH-CCHN", "Y học dự phòng"))),
    // Trung tâm Y tế huyện Tân Lập and its stations.
    person("bs.an", "Nguyễn Văn An", Doctor, "tl", Some(("BSCKI", "000733/AH-CCHN", "Nội khoa"))),
    person("bs.oanh", "Phan Thị Kim Oanh", Doctor, "tl", Some(("BS", "000748/AH-CCHN", "Nhi khoa"))),
    person("dd.mai", "Lý Thị Mai", Nurse, "tl", Some(("ĐD", "001315/AH-CCHN", "Điều dưỡng"))),
    person("dp.lam", "Trịnh Văn Lâm", Coordinator, "tl", None),
    person("ys.lananh", "Vũ Thị Lan Anh", Doctor, "tl.tt", Some(("YS", "002101/AH-CCHN", "Y sĩ đa khoa"))),
    person("nhs.nga", "Nông Thị Nga", Nurse, "tl.tt", Some(("NHS", "002302/AH-CCHN", "Hộ sinh"))),
    person("bs.quang", "Trương Minh Quang", Doctor, "tl.hb", Some(("BS", "002118/AH-CCHN", "Đa khoa"))),
    // Trung tâm Y tế huyện Sơn Hà and its stations.
    person("bs.hung", "Đỗ Mạnh Hùng", Doctor, "sh", Some(("BSCKI", "000802/AH-CCHN", "Nội khoa"))),
    person("bs.huong", "Ngô Thị Thanh Hương", Doctor, "sh", Some(("BS", "000819/AH-CCHN", "Sản khoa"))),
    person("nhs.yen", "Cao Thị Yến", Nurse, "sh", Some(("NHS", "001402/AH-CCHN", "Hộ sinh"))),
    person("ys.thao", "Hà Thị Thảo", Doctor, "sh.st", Some(("YS", "002135/AH-CCHN", "Y sĩ đa khoa"))),
    person("ys.dung", "Kiều Văn Dũng", Doctor, "sh.sk", Some(("YS", "002152/AH-CCHN", "Y sĩ đa khoa"))),
    // Trung tâm Y tế huyện Phước Long and its stations.
    person("bs.tuan", "Hồ Sỹ Tuấn", Doctor, "pl", Some(("BSCKI", "000905/AH-CCHN", "Nội khoa"))),
    person("bs.phuong", "Mai Thị Phương", Doctor, "pl", Some(("BS", "000921/AH-CCHN", "Nhi khoa"))),
    person("dd.phuc", "Lương Văn Phúc", Nurse, "pl", Some(("ĐD", "001477/AH-CCHN", "Điều dưỡng"))),
    person("dp.khoa", "Lâm Đăng Khoa", Coordinator, "pl", None),
    person("ys.hanh", "Lò Thị Hạnh", Doctor, "pl.pt", Some(("YS", "002169/AH-CCHN", "Y sĩ đa khoa"))),
    person("ys.vinh", "Triệu Văn Vinh", Doctor, "pl.lh", Some(("YS", "002186/AH-CCHN", "Y sĩ đa khoa"))),
];

/// One demo account, as printed.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub username: String,
    pub name: String,
    pub role: &'static str,
    pub facility: String,
    /// `None` when the account no longer has the demo password.
    pub totp_secret: Option<String>,
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct Report {
    pub database: PathBuf,
    pub facilities: (usize, usize),
    pub practitioners: (usize, usize),
    pub accounts: (usize, usize),
    /// On-call queues: (created now, in all).
    pub queues: (usize, usize),
    /// Facility names, indented by depth, in the order of [`FACILITIES`].
    pub tree: Vec<(usize, String, Tier)>,
    pub staff: Vec<DemoAccount>,
}

/// Loads the demo province into `data_dir/tuxa.sqlite3` (created if
/// missing), TOTP secrets sealed under the master key `keys` names. Safe to
/// run again, and while the server runs.
pub fn load(data_dir: &Path, keys: &crate::secrets::KeysConfig) -> anyhow::Result<Report> {
    let path = data_dir.join("tuxa.sqlite3");
    let (mut c, keys) = crate::store::open_connection(&path, keys)?;
    let mut report = load_into(&mut c, crate::clock::unix_now() as i64, &keys)?;
    report.database = path;
    Ok(report)
}

fn failed(e: tuxa_records::Error) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.public_message(), e.code().as_str())
}

/// The load itself, on an open, migrated connection.
pub(crate) fn load_into(
    c: &mut Connection,
    now: i64,
    keys: &crate::secrets::Keyring,
) -> anyhow::Result<Report> {
    // argon2 is slow on purpose: hash for the accounts to create before
    // taking the write lock, and check existing ones after releasing it.
    let mut hashes: HashMap<&str, String> = HashMap::new();
    for p in PEOPLE {
        let username = Username::parse(p.username).context("a demo username")?;
        if directory::staff_by_username(c, &username)?.is_none() {
            hashes.insert(p.username, auth::hash_password(DEMO_PASSWORD));
        }
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut entries = Vec::new();
    let mut new_entry = |action, detail| {
        entries.push(audit::Entry {
            at: now,
            action,
            consultation: None,
            actor: "system".into(),
            detail,
        });
    };

    let mut ids: HashMap<&str, (FacilityId, String)> = HashMap::new();
    let mut depth: HashMap<&str, usize> = HashMap::new();
    let mut tree = Vec::new();
    let mut facilities_new = 0;
    for (n, f) in FACILITIES.iter().enumerate() {
        let parent = f.parent.map(|p| ids[p].0);
        let d = f.parent.map_or(0, |p| depth[p] + 1);
        let id = match directory::facility_named(&tx, f.name, parent)? {
            Some(existing) => existing.id,
            None => {
                let new = NewFacility {
                    name: f.name.to_owned(),
                    tier: f.tier,
                    parent,
                };
                let made = directory::insert_facility(&tx, &new, now).map_err(failed)?;
                // A made-up number in the demo province's area code, for
                // the end screen's "Liên hệ".
                tuxa_store::directory::set_facility_phone(
                    &tx,
                    made.id,
                    &format!("0210 3800 {:03}", 100 + n),
                )?;
                facilities_new += 1;
                new_entry(
                    Action::FacilityCreated,
                    json!({"facility_id": made.id, "tier": made.tier, "parent_id": made.parent_id, "via": "load-demo"}),
                );
                made.id
            }
        };
        ids.insert(f.key, (id, f.name.to_owned()));
        depth.insert(f.key, d);
        tree.push((d, f.name.to_owned(), f.tier));
    }

    let mut practitioners_new = 0;
    let mut practitioners_total = 0;
    let mut accounts_new = 0;
    let mut staff = Vec::new();
    let mut to_check = Vec::new();
    // (facility, specialty, doctor): every doctor is on call for their
    // specialty's queue at their facility, all day every day (a demo).
    let mut on_call: Vec<(FacilityId, &str, directory::StaffId)> = Vec::new();
    for p in PEOPLE {
        let (facility_id, facility_name) = ids[p.facility].clone();
        let practitioner: Option<PractitionerId> = match p.practice {
            None => None,
            Some((title, licence, specialty)) => {
                practitioners_total += 1;
                match directory::practitioner_by_licence(&tx, licence)? {
                    Some(existing) => Some(existing.id),
                    None => {
                        let new = NewPractitioner {
                            name: p.name.to_owned(),
                            title: title.to_owned(),
                            licence_number: licence.to_owned(),
                            specialty: specialty.to_owned(),
                            facility: facility_id,
                        };
                        let made =
                            directory::insert_practitioner(&tx, &new, now).map_err(failed)?;
                        practitioners_new += 1;
                        new_entry(
                            Action::PractitionerCreated,
                            json!({"practitioner_id": made.id, "facility_id": made.facility_id, "via": "load-demo"}),
                        );
                        Some(made.id)
                    }
                }
            }
        };
        let username = Username::parse(p.username).context("a demo username")?;
        let existing_id = directory::staff_by_username(&tx, &username)?.map(|s| s.id);
        let secret = match directory::staff_by_username(&tx, &username)? {
            Some(_) => {
                let stored = tuxa_store::auth::credentials(&tx, &username)?
                    .context("a demo account read back")?;
                to_check.push((staff.len(), stored.password_hash));
                keys.open(crate::secrets::Purpose::TotpSecret, &stored.totp_sealed)
                    .ok()
                    .and_then(|s| TotpSecret::from_slice(&s))
            }
            None => {
                let new = NewStaff {
                    username: username.clone(),
                    name: p.name.to_owned(),
                    role: p.role,
                    facility: facility_id,
                    practitioner,
                };
                let secret = auth::new_totp_secret();
                let hash = hashes
                    .remove(p.username)
                    .unwrap_or_else(|| auth::hash_password(DEMO_PASSWORD));
                let made = directory::insert_staff(&tx, &new, &hash, &secret, keys, now)
                    .map_err(failed)?;
                accounts_new += 1;
                if let (Some((_, _, specialty)), StaffRole::Doctor) = (p.practice, p.role) {
                    on_call.push((facility_id, specialty, made.id));
                }
                new_entry(
                    Action::StaffCreated,
                    json!({"staff_id": made.id, "role": made.role, "facility_id": made.facility_id, "via": "load-demo"}),
                );
                Some(secret)
            }
        };
        if let (Some(id), Some((_, _, specialty)), StaffRole::Doctor) =
            (existing_id, p.practice, p.role)
        {
            on_call.push((facility_id, specialty, id));
        }
        staff.push(DemoAccount {
            username: username.to_string(),
            name: match p.practice {
                Some((title, ..)) => format!("{title} {}", p.name),
                None => p.name.to_owned(),
            },
            role: p.role.as_str(),
            facility: facility_name,
            totp_secret: secret.map(|s| s.base32()),
        });
    }
    let mut queues_new = 0;
    for (facility, specialty, doctor) in &on_call {
        let before = crate::queues::queues(&tx)?.len();
        let Some(q) = crate::queues::create_queue(&tx, *facility, specialty, None)? else {
            continue;
        };
        let after = crate::queues::queues(&tx)?.len();
        if after > before {
            queues_new += 1;
            new_entry(
                Action::QueueCreated,
                json!({"queue": q.id, "facility": q.facility_id, "specialty": q.specialty, "via": "load-demo"}),
            );
        }
        let rostered = crate::queues::roster(&tx, q.id)?
            .iter()
            .any(|r| r.staff_id == *doctor);
        if !rostered {
            crate::queues::add_roster(&tx, q.id, *doctor, None, 0, 24 * 60)?;
        }
    }
    let queues_total = crate::queues::queues(&tx)?.len();
    tx.commit()?;
    // Secrets of accounts that existed are shown only while they still have
    // the demo password (never a real account's).
    for (i, hash) in to_check {
        if !auth::verify_password(&hash, DEMO_PASSWORD) {
            staff[i].totp_secret = None;
        }
    }

    // The audit entries, each chained in its own transaction (as the
    // server's store thread writes them).
    for e in &entries {
        audit::append(c, e)?;
    }

    Ok(Report {
        database: PathBuf::new(),
        facilities: (facilities_new, FACILITIES.len()),
        practitioners: (practitioners_new, practitioners_total),
        accounts: (accounts_new, PEOPLE.len()),
        queues: (queues_new, queues_total),
        tree,
        staff,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |(new, total): (usize, usize), what: &str| format!("{total} {what} ({new} new)");
        writeln!(
            f,
            "Demo province loaded into {}: {}, {}, {}, {}.",
            self.database.display(),
            count(self.facilities, "facilities"),
            count(self.practitioners, "practitioners"),
            count(self.accounts, "staff accounts"),
            count(self.queues, "on-call queues"),
        )?;
        writeln!(f)?;
        writeln!(f, "Cơ sở / facilities:")?;
        for (depth, name, tier) in &self.tree {
            writeln!(f, "  {}{name}  [{}]", "  ".repeat(*depth), tier.as_str())?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Tài khoản / staff accounts — mật khẩu / password for every demo account: {DEMO_PASSWORD}"
        )?;
        let width = |get: fn(&DemoAccount) -> &str| {
            self.staff
                .iter()
                .map(|a| get(a).chars().count())
                .max()
                .unwrap_or(0)
        };
        let (wu, wn, wr, wf) = (
            width(|a| &a.username),
            width(|a| &a.name),
            width(|a| a.role),
            width(|a| &a.facility),
        );
        let mut line = String::new();
        let _ = write!(
            line,
            "  {:wu$}  {:wn$}  {:wr$}  {:wf$}  TOTP secret (base32)",
            "username", "name", "role", "facility"
        );
        writeln!(f, "{}", line.trim_end())?;
        for a in &self.staff {
            let secret = a
                .totp_secret
                .as_deref()
                .unwrap_or("(password changed: not shown)");
            writeln!(
                f,
                "  {:wu$}  {:wn$}  {:wr$}  {:wf$}  {secret}",
                a.username, a.name, a.role, a.facility
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Sign in with username, password and the 6-digit code: add the secret to an authenticator \
             app (TOTP, SHA-1, 6 digits, 30 s), or `oathtool --totp -b SECRET`."
        )?;
        writeln!(
            f,
            "These accounts are for trying tuxa out: do not load the demo into a production database."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &Connection, table: &str) -> i64 {
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn demo_loads_once_and_again_without_duplicates() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::store::migrate(&mut c).unwrap();
        let keys = crate::secrets::Keyring::new(
            crate::secrets::MasterKey::from_bytes(&[1; 32]),
            Vec::new(),
        );

        let first = load_into(&mut c, 1_764_000_000, &keys).unwrap();
        assert_eq!(first.facilities, (11, 11));
        assert_eq!(first.accounts, (PEOPLE.len(), PEOPLE.len()));
        assert!(first.staff.iter().all(|a| a.totp_secret.is_some()));
        // A queue per (facility, specialty) with a doctor; every doctor on a roster.
        assert!(
            first.queues.0 >= 10 && first.queues.0 == first.queues.1,
            "{:?}",
            first.queues
        );
        let doctors = PEOPLE
            .iter()
            .filter(|p| p.role == StaffRole::Doctor)
            .count() as i64;
        assert_eq!(count(&c, "rosters"), doctors);
        let counts = |c: &Connection| {
            [
                "facilities",
                "practitioners",
                "staff",
                "audit",
                "queues",
                "rosters",
            ]
            .map(|t| count(c, t))
        };
        let after_first = counts(&c);
        assert_eq!(after_first[0], 11);
        assert_eq!(after_first[2], PEOPLE.len() as i64);

        let second = load_into(&mut c, 1_764_000_100, &keys).unwrap();
        assert_eq!(second.facilities, (0, 11));
        assert_eq!(second.practitioners.0, 0);
        assert_eq!(second.accounts, (0, PEOPLE.len()));
        assert_eq!(second.queues, (0, first.queues.1));
        assert_eq!(
            counts(&c),
            after_first,
            "nothing duplicated, nothing audited"
        );
        // The same secrets are printed again.
        for (a, b) in first.staff.iter().zip(&second.staff) {
            assert_eq!(a.totp_secret, b.totp_secret);
        }
        // An account whose password changed is listed without its secret.
        c.execute(
            "UPDATE staff SET password_hash = ?1 WHERE username = 'bs.minh'",
            [auth::hash_password("a different password")],
        )
        .unwrap();
        let third = load_into(&mut c, 1_764_000_200, &keys).unwrap();
        let minh = third
            .staff
            .iter()
            .find(|a| a.username == "bs.minh")
            .unwrap();
        assert_eq!(minh.totp_secret, None);

        assert!(matches!(
            audit::verify(&c).unwrap(),
            audit::Verdict::Intact { .. }
        ));
        let created: i64 = c
            .query_row(
                "SELECT count(*) FROM audit WHERE action = 'staff_created'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(created, PEOPLE.len() as i64);

        let text = third.to_string();
        assert!(text.contains("Bệnh viện Đa khoa tỉnh An Hòa"), "{text}");
        assert!(text.contains(DEMO_PASSWORD));
    }

    #[test]
    fn demo_province_has_the_shape_the_issue_asks_for() {
        let tiers = |t: Tier| FACILITIES.iter().filter(|f| f.tier == t).count();
        assert_eq!(tiers(Tier::Province), 1);
        assert_eq!(tiers(Tier::District), 3);
        assert_eq!(tiers(Tier::Cdc), 1);
        assert!(tiers(Tier::CommuneStation) >= 3);
        for role in StaffRole::ALL {
            assert!(PEOPLE.iter().any(|p| p.role == role), "{role:?}");
        }
        for p in PEOPLE {
            assert!(Username::parse(p.username).is_some(), "{}", p.username);
            assert_eq!(
                p.practice.is_some(),
                p.role.needs_practitioner(),
                "{}",
                p.username
            );
            assert!(FACILITIES.iter().any(|f| f.key == p.facility));
        }
        for specialty in ["Nội khoa", "Nhi khoa", "Sản khoa"] {
            assert!(
                PEOPLE
                    .iter()
                    .any(|p| p.practice.is_some_and(|(_, _, s)| s == specialty))
            );
        }
    }
}
