//! The minutes page (biên bản hội chẩn / tư vấn từ xa, after TT49/2017's
//! Appendix forms): the record's facts in Vietnamese, laid out by
//! `records/templates/minutes.html`, a MiniJinja template. Printable on A4
//! and readable on a phone; nothing on it runs or loads.
//!
//! MiniJinja rather than askama: the page is one template rendered per
//! export, so compile-time templates buy little, and MiniJinja brings no
//! proc macros (its one dependency is serde). Every value goes through
//! [`html_escape`](crate::minutes::html_escape) on its way into the page (the template's formatter), the
//! same escaping the page had before it had a template, so the output is
//! unchanged.

use serde::Serialize;
use serde_json::Value;

use crate::dates::{vietnam, vn_date, vn_datetime, vn_time};
use crate::record::ConsultationStatus;
use crate::record::{Attendance, Record};

const MINUTES_TEMPLATE: &str = include_str!("../templates/minutes.html");

fn role_vi(role: &str) -> Option<&'static str> {
    Some(match role {
        "doctor" => "Bác sĩ",
        "nurse" => "Điều dưỡng",
        "patient" => "Bệnh nhân",
        "guest" => "Khách mời",
        _ => return None,
    })
}

pub(crate) fn kind_vi(kind: &str) -> &'static str {
    match kind {
        "conference" => "Hội chẩn từ xa",
        _ => "Khám, tư vấn từ xa",
    }
}

fn leave_reason_vi(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "left" => "Tự rời phòng",
        "disconnected" => "Mất kết nối",
        "ended" => "Kết thúc phiên",
        "server_restart" => "Máy chủ khởi động lại",
        _ => return None,
    })
}

/// Whether an attendance row is the staff member named `name` (with licence
/// `licence`, when known). Attendance keeps no staff id: a staff member's
/// link names them "<title> <name>" with their licence number, so the
/// licence decides when both sides have one, the name otherwise.
pub(crate) fn same_person(p: &Attendance, name: &str, licence: Option<&str>) -> bool {
    if name.is_empty() {
        return false;
    }
    if let (Some(a), Some(b)) = (p.licence_number.as_deref(), licence) {
        return a == b;
    }
    p.name == name || p.name.ends_with(&format!(" {name}"))
}

/// The chair and the secretary of a conference: (name, licence number).
fn chair_and_secretary(r: &Record) -> [Option<(String, Option<String>)>; 2] {
    let Some(conf) = &r.conference else {
        return [None, None];
    };
    [&conf["schedule"]["chair"], &conf["secretary"]].map(|v| {
        v["name"].as_str().map(|n| {
            (
                n.to_owned(),
                v["licence_number"].as_str().map(str::to_owned),
            )
        })
    })
}

fn sex_vi(sex: &str) -> &'static str {
    match sex {
        "male" => "Nam",
        "female" => "Nữ",
        _ => "Khác",
    }
}

/// Escapes text for HTML element content and quoted attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A size in bytes the Vietnamese way: `1.234.567 byte`.
fn vn_bytes(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(ch);
    }
    format!("{out} byte")
}

/// A line of the attendance table (section II).
#[derive(Serialize)]
struct Line {
    name: String,
    role: String,
    /// `Chủ trì`, `Thư ký`: who chaired, who kept the minutes.
    marks: Vec<&'static str>,
    facility: String,
    licence: String,
    joined: String,
    left: String,
    note: String,
}

/// A name under the signatures, with a licence number when known.
#[derive(Serialize)]
struct Signer {
    name: String,
    licence: Option<String>,
}

/// The patient's identity (section III): `class` is `facts`, or
/// `facts patient` for a conference's patient as the requester gave them.
#[derive(Serialize)]
struct Patient {
    class: &'static str,
    items: Vec<(&'static str, String)>,
}

/// A conference request's case (section IV), each text as its paragraphs.
#[derive(Serialize)]
struct Case {
    from_facility: String,
    specialty: String,
    summary: Vec<String>,
    question: Vec<String>,
}

#[derive(Serialize)]
struct File {
    name: String,
    content_type: String,
    size: String,
    sha256: String,
}

#[derive(Serialize)]
struct Conclusion {
    text: Vec<String>,
    by: String,
    at: String,
}

#[derive(Serialize)]
struct Head {
    id: i64,
    hash: String,
}

#[derive(Serialize)]
struct Signed {
    day: String,
    month: String,
    year: i16,
}

/// Everything the template shows, as text: the template lays it out, and
/// escapes every value.
#[derive(Serialize)]
struct Page {
    title: String,
    id: String,
    kind: &'static str,
    date: String,
    time_from: String,
    time_to: String,
    status: &'static str,
    ended_at: String,
    department: Option<String>,
    facility: Option<String>,
    participants: Vec<Line>,
    patient: Option<Patient>,
    conference: Option<Case>,
    visit_reason: Option<Vec<String>>,
    attachments: Vec<File>,
    conclusion: Option<Conclusion>,
    plan: Option<Vec<String>>,
    signed: Signed,
    secretary: Option<Signer>,
    chair: Option<Signer>,
    exported_at: String,
    audit_head: Option<Head>,
}

/// A text's paragraphs: its non-blank lines.
fn paragraphs(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The template, parsed once per process.
fn environment() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_keep_trailing_newline(true);
        // Our escaping, not MiniJinja's (which also escapes `/`): the page
        // reads as it did before it had a template. Nothing is marked safe.
        env.set_formatter(|out, _state, value| {
            if !value.is_none() && !value.is_undefined() {
                let text = value.to_string();
                out.write_str(&html_escape(&text))?;
            }
            Ok(())
        });
        env.add_template("minutes.html", MINUTES_TEMPLATE)
            .expect("records/templates/minutes.html parses");
        env
    })
}

/// The minutes page of a record, as HTML.
pub fn render_minutes(r: &Record) -> String {
    environment()
        .get_template("minutes.html")
        .and_then(|t| t.render(page(r)))
        // The template is fixed and its values are plain data: a failure
        // here is a bug in this file, found by the tests.
        .expect("the minutes template renders")
}

fn page(r: &Record) -> Page {
    let c = &r.consultation;
    let (start, end) = r.period();
    let date = vn_date(start);
    let to = match end {
        Some(e) if vn_date(e) == date => vn_time(e),
        Some(e) => vn_datetime(e),
        None => "………".to_owned(),
    };
    let [chair, secretary] = chair_and_secretary(r);
    let marks = |p: &Attendance| -> Vec<&'static str> {
        [(&chair, "Chủ trì"), (&secretary, "Thư ký")]
            .into_iter()
            .filter(|(who, _)| {
                who.as_ref().is_some_and(|(name, lic)| {
                    p.role != "patient" && same_person(p, name, lic.as_deref())
                })
            })
            .map(|(_, label)| label)
            .collect()
    };
    // The time alone on the meeting's day; with the date otherwise.
    let when = |t: i64| {
        if vn_date(t) == date {
            vn_time(t)
        } else {
            format!("{} {}", vn_time(t), vn_date(t))
        }
    };
    let participants = r
        .participants
        .iter()
        .map(|p| Line {
            name: p.name.clone(),
            role: role_vi(&p.role)
                .map(str::to_owned)
                .unwrap_or_else(|| p.role.clone()),
            marks: marks(p),
            facility: p.facility.clone().unwrap_or_default(),
            licence: p.licence_number.clone().unwrap_or_default(),
            joined: when(p.joined_at),
            left: p.left_at.map(when).unwrap_or_default(),
            note: match (&p.leave_reason, p.left_at) {
                (Some(reason), _) => leave_reason_vi(reason)
                    .map(str::to_owned)
                    .unwrap_or_else(|| reason.clone()),
                (None, None) if c.status == ConsultationStatus::Open => "Đang tham dự".to_owned(),
                _ => String::new(),
            },
        })
        .collect();
    let signer =
        |who: Option<(String, Option<String>)>| who.map(|(name, licence)| Signer { name, licence });
    let day = vietnam(start).date();
    Page {
        title: c.title.clone(),
        id: c.id.clone(),
        kind: kind_vi(c.kind.as_str()),
        time_from: vn_time(start),
        date,
        time_to: to,
        status: if c.status == ConsultationStatus::Ended {
            "Đã kết thúc"
        } else {
            "Đang mở"
        },
        ended_at: match c.ended_at {
            Some(e) => vn_datetime(e),
            None => "(chưa kết thúc)".to_owned(),
        },
        department: r.department.as_deref().map(str::to_uppercase),
        facility: r.facility.as_deref().map(str::to_uppercase),
        participants,
        patient: patient(r),
        conference: r.conference.as_ref().map(|conf| Case {
            from_facility: text(&conf["from_facility"]["name"]),
            specialty: text(&conf["specialty"]),
            summary: paragraphs(&text(&conf["summary"])),
            question: paragraphs(&text(&conf["question"])),
        }),
        visit_reason: r.visit_reason.as_deref().map(paragraphs),
        attachments: attachments(r),
        conclusion: r
            .conference
            .as_ref()
            .map(|c| &c["conclusion"])
            .filter(|c| !c.is_null())
            .map(|c| Conclusion {
                text: paragraphs(c["text"].as_str().unwrap_or_default()),
                by: text(&c["by"]["name"]),
                at: c["at"].as_i64().map(vn_datetime).unwrap_or_default(),
            }),
        plan: r
            .conference
            .as_ref()
            .and_then(|c| c["conclusion"]["management_plan"].as_str())
            .map(paragraphs),
        signed: Signed {
            day: format!("{:02}", day.day()),
            month: format!("{:02}", day.month()),
            year: day.year(),
        },
        secretary: signer(secretary),
        chair: signer(chair),
        exported_at: vn_datetime(r.exported_at),
        audit_head: r.chain_head.as_ref().map(|(id, hash)| Head {
            id: *id,
            hash: hash.clone(),
        }),
    }
}

/// The patient's identity as the requester gave it (a conference), or as
/// the patient's link named them (a visit); `None`: lines to write on.
fn patient(r: &Record) -> Option<Patient> {
    let Some(conf) = &r.conference else {
        return r
            .participants
            .iter()
            .find(|p| p.role == "patient")
            .map(|p| p.name.clone())
            .or_else(|| {
                r.links
                    .iter()
                    .find(|l| l.role == "patient")
                    .map(|l| l.name.clone())
            })
            .map(|n| Patient {
                class: "facts",
                items: vec![("Họ và tên", n)],
            });
    };
    let p = &conf["patient"];
    let mut items = vec![("Họ và tên", text(&p["name"]))];
    if let Some(s) = p["sex"].as_str() {
        items.push(("Giới tính", sex_vi(s).to_owned()));
    }
    if let Some(y) = p["birth_year"].as_i64() {
        items.push(("Năm sinh", y.to_string()));
    }
    if let Some(a) = p["address"].as_str() {
        items.push(("Địa chỉ", a.to_owned()));
    }
    if let Some(n) = p["citizen_id"].as_str() {
        items.push(("Số định danh cá nhân (CCCD)", n.to_owned()));
    }
    if let Some(n) = p["record_number"].as_str() {
        items.push(("Số hồ sơ tại cơ sở đề nghị", n.to_owned()));
    }
    Some(Patient {
        class: "facts patient",
        items,
    })
}

/// The files the conference reviewed, each with its SHA-256 as stored at
/// upload: anyone holding a copy can check it is the one reviewed.
fn attachments(r: &Record) -> Vec<File> {
    r.conference
        .as_ref()
        .and_then(|c| c["attachments"].as_array())
        .map(|files| {
            files
                .iter()
                .map(|a| File {
                    name: text(&a["name"]),
                    content_type: text(&a["content_type"]),
                    size: vn_bytes(a["size"].as_i64().unwrap_or(0)),
                    sha256: text(&a["sha256"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_never_read_as_template() {
        assert_eq!(
            html_escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
        let mut env = minijinja::Environment::new();
        env.set_formatter(|out, _state, value| {
            out.write_str(&html_escape(&value.to_string()))?;
            Ok(())
        });
        env.add_template("t", "<h1>{{ title }}</h1>{{ body }}")
            .unwrap();
        let out = env
            .get_template("t")
            .unwrap()
            .render(serde_json::json!({"title": "{{ body }}", "body": "<b>"}))
            .unwrap();
        assert_eq!(out, "<h1>{{ body }}</h1>&lt;b&gt;");
    }
}
