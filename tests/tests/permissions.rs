//! The permission matrix: every HTTP route the server has, called by every kind of caller, with
//! the answer each must get (docs/api.md, "Who may call what"; docs/security.md).
//!
//! The callers are the admin key; a patient and a guest holding their join links (sent as if
//! they were keys); anonymous strangers; and signed-in staff of the three places a case
//! conference concerns: the provincial hospital that was asked (which owns the conference and a
//! visit), the district that asked for it, and another district — one of whose doctors is
//! invited, one of whose nurses is not.
//!
//! Each row says who is let through; everyone else is refused: staff with `403 forbidden` (or
//! `404 not_found`, where the server does not even say the thing exists), callers without a
//! sign-in with `401 unauthorized`. "Let through" means the answer is neither of those nor a
//! server error: the call itself may still be refused for its content (a conflict, a body out
//! of range), which is not what this test is about.
//!
//! The list of routes is read from the server's source (`.route("…", get(…).post(…))`), so a
//! route added without a row here fails the test, and so does a row for a route that is gone.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tuxa_protocol::RoomId;
use tuxa_tests::staff::{code, facility, sign_in, staff};
use tuxa_tests::{ApiClient, Auth, TestServer};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    AdminKey,
    /// A patient's join link, sent as `Authorization: Bearer <token>`.
    Patient,
    /// A guest's join link, likewise.
    Guest,
    /// The asked (owning) provincial hospital: its administrator, coordinator, the doctor named
    /// to chair the conference, a nurse.
    OwnerAdmin,
    OwnerCoordinator,
    OwnerDoctorChair,
    OwnerNurse,
    /// The district that asked for the conference: its coordinator, the doctor who asked, a nurse.
    RequesterCoordinator,
    RequesterDoctor,
    RequesterNurse,
    /// A doctor of another district, invited to the conference.
    Invitee,
    /// A nurse of another district, not invited.
    OtherDistrictNurse,
}

use Who::*;

const EVERYONE: &[Who] = &[
    Anonymous,
    AdminKey,
    Patient,
    Guest,
    OwnerAdmin,
    OwnerCoordinator,
    OwnerDoctorChair,
    OwnerNurse,
    RequesterCoordinator,
    RequesterDoctor,
    RequesterNurse,
    Invitee,
    OtherDistrictNurse,
];
const STAFF: &[Who] = &[
    OwnerAdmin,
    OwnerCoordinator,
    OwnerDoctorChair,
    OwnerNurse,
    RequesterCoordinator,
    RequesterDoctor,
    RequesterNurse,
    Invitee,
    OtherDistrictNurse,
];

impl Who {
    fn signed_in(self) -> bool {
        STAFF.contains(&self)
    }
}

/// One call and who may make it.
struct Row {
    method: &'static str,
    /// The route as the server declares it, e.g. `/api/v1/conferences/{id}/join`.
    route: &'static str,
    /// The concrete path called.
    path: String,
    body: Option<Body>,
    may: Vec<Who>,
    /// For public routes whose answer does not depend on who calls: the statuses it may be.
    everyone_gets: Option<&'static [u16]>,
    /// Callers whose answer is a particular status, not the row's rule.
    answers: Vec<(Who, u16)>,
}

enum Body {
    Json(Value),
    File(&'static [u8], &'static str),
}

fn row(method: &'static str, route: &'static str, path: String, may: &[Who]) -> Row {
    Row {
        method,
        route,
        path,
        body: None,
        may: may.to_vec(),
        everyone_gets: None,
        answers: Vec::new(),
    }
}

impl Row {
    fn json(mut self, body: Value) -> Row {
        self.body = Some(Body::Json(body));
        self
    }
    fn everyone_gets(mut self, statuses: &'static [u16]) -> Row {
        self.everyone_gets = Some(statuses);
        self
    }
    fn answers(mut self, who: Who, status: u16) -> Row {
        self.answers.push((who, status));
        self
    }
}

/// `(method, route)` of every route the server declares, with the access the gate requires,
/// from the server's own route table (`tuxa_server::gate::route_table`): no route can be
/// added to the server without an access, and none without a row here.
fn declared_routes() -> BTreeSet<(String, String)> {
    tuxa_server::route_table()
        .into_iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect()
}

/// The gate's access of a route.
fn access_of(method: &str, route: &str) -> Option<tuxa_server::gate::Access> {
    tuxa_server::route_table()
        .into_iter()
        .find(|r| r.method == method && r.path == route)
        .map(|r| r.access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_matrix_says() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();

    // The province, the district that asks, another district.
    let province = facility(&api, "BVĐK tỉnh An Hòa", "province", None).await?;
    let district = facility(&api, "TTYT huyện Tân Lập", "district", Some(&province)).await?;
    let other = facility(&api, "TTYT huyện Sơn Hà", "district", Some(&province)).await?;
    let mut accounts = Vec::new();
    for (who, place, user, name, role, licence) in [
        (
            OwnerAdmin,
            &province,
            "qt.tinh",
            "Quản trị Tỉnh",
            "admin",
            None,
        ),
        (
            OwnerCoordinator,
            &province,
            "dp.tinh",
            "Phạm Thu Hà",
            "coordinator",
            None,
        ),
        (
            OwnerDoctorChair,
            &province,
            "bs.tinh",
            "Lê Hoàng Minh",
            "doctor",
            Some("000125/AH-CCHN"),
        ),
        (
            OwnerNurse,
            &province,
            "dd.tinh",
            "Vũ Thị Lan",
            "nurse",
            Some("000126/AH-CCHN"),
        ),
        (
            RequesterCoordinator,
            &district,
            "dp.huyen",
            "Hà Văn Bình",
            "coordinator",
            None,
        ),
        (
            RequesterDoctor,
            &district,
            "bs.huyen",
            "Nguyễn Văn An",
            "doctor",
            Some("000733/AH-CCHN"),
        ),
        (
            RequesterNurse,
            &district,
            "dd.huyen",
            "Lò Thị Mai",
            "nurse",
            Some("000734/AH-CCHN"),
        ),
        (
            Invitee,
            &other,
            "bs.sonha",
            "Đinh Công Sơn",
            "doctor",
            Some("004409/AH-CCHN"),
        ),
        (
            OtherDistrictNurse,
            &other,
            "dd.sonha",
            "Đỗ Thị Hoa",
            "nurse",
            Some("004410/AH-CCHN"),
        ),
    ] {
        accounts.push((who, staff(&api, place, user, name, role, licence).await?));
    }
    // Not a caller: the account that PATCH /staff/{id} changes.
    let spare = staff(
        &api,
        &other,
        "dd.du",
        "Dự Phòng",
        "nurse",
        Some("004411/AH-CCHN"),
    )
    .await?;
    let staff_id = |w: Who| -> Value {
        accounts
            .iter()
            .find(|(x, _)| *x == w)
            .expect("an account")
            .1["staff"]["id"]
            .clone()
    };
    let mut cookies = Vec::new();
    for (who, s) in &accounts {
        cookies.push((*who, sign_in(&api, s).await?));
    }

    // A visit of the province's, with a patient's link and a guest's.
    let (s, visit) = api
        .request(
            "POST",
            "/api/v1/consultations",
            Some(&json!({"kind": "visit", "title": "Khám từ xa"})),
            Auth::Cookie(&cookies[2].1),
        )
        .await?;
    anyhow::ensure!(s == 201, "visit: {s} {visit}");
    let visit = visit["id"].as_str().expect("id").to_owned();
    let (_, patient_link) = api
        .admin(
            "POST",
            &format!("/api/v1/consultations/{visit}/links"),
            Some(&json!({"role": "patient", "name": "Nguyễn Thị Hồng"})),
        )
        .await?;
    let (_, guest_link) = api
        .admin(
            "POST",
            &format!("/api/v1/consultations/{visit}/links"),
            Some(&json!({"role": "guest", "name": "Người nhà"})),
        )
        .await?;
    let patient_token = patient_link["token"].as_str().expect("token").to_owned();
    let guest_token = guest_link["token"].as_str().expect("token").to_owned();

    // A conference: the district asks, the province's coordinator schedules it with its doctor
    // in the chair and the other district's doctor invited.
    let asker = cookie(&cookies, RequesterDoctor);
    let (s, request) = api
        .request(
            "POST",
            "/api/v1/conferences",
            Some(&conference_request(&province)),
            Auth::Cookie(asker),
        )
        .await?;
    anyhow::ensure!(s == 201, "request: {s} {request}");
    let conf = request["id"].as_i64().expect("id");
    let r = api
        .request_typed(
            "POST",
            &format!("/api/v1/conferences/{conf}/attachments?name=xq.pdf"),
            Some(b"%PDF-1.4\n"),
            "application/pdf",
            Auth::Cookie(asker),
        )
        .await?;
    anyhow::ensure!(r.status == 201, "attachment: {} {}", r.status, r.body);
    let attachment = r.json["id"].as_i64().expect("attachment id");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let plan = json!({"starts_at": now, "duration_min": 60,
                      "chair_staff_id": staff_id(OwnerDoctorChair),
                      "invite_staff_ids": [staff_id(Invitee)]});
    let (s, v) = api
        .request(
            "POST",
            &format!("/api/v1/conferences/{conf}/schedule"),
            Some(&plan),
            Auth::Cookie(cookie(&cookies, OwnerCoordinator)),
        )
        .await?;
    anyhow::ensure!(s == 200, "schedule: {s} {v}");
    let (s, v) = api
        .request(
            "POST",
            &format!("/api/v1/conferences/{conf}/join"),
            None,
            Auth::Cookie(cookie(&cookies, OwnerDoctorChair)),
        )
        .await?;
    anyhow::ensure!(s == 200, "the chair's join: {s} {v}");
    let room = link_room(v["url"].as_str().expect("url"));
    // A recording of the conference, as the recorder leaves one (issue 13).
    let recorded = tuxa_tests::recordings::seed(&server.data_dir, room.as_str(), &[7u8; 3000])?
        .file
        .0;
    let queue = tuxa_tests::staff::created(
        &api,
        "/api/v1/queues",
        json!({"facility_id": province["id"], "specialty": "Nội khoa"}),
    )
    .await?;
    let queue = queue["id"].clone();

    // The owning facility's managers; everyone the conference concerns.
    let owner_managers = [AdminKey, OwnerAdmin, OwnerCoordinator];
    let owner_care = [AdminKey, OwnerAdmin, OwnerCoordinator, OwnerDoctorChair];
    let owner_all = [
        AdminKey,
        OwnerAdmin,
        OwnerCoordinator,
        OwnerDoctorChair,
        OwnerNurse,
    ];
    let concerned = [
        AdminKey,
        OwnerAdmin,
        OwnerCoordinator,
        OwnerDoctorChair,
        OwnerNurse,
        RequesterCoordinator,
        RequesterDoctor,
        RequesterNurse,
        Invitee,
    ];
    let coordination = [AdminKey, OwnerAdmin, OwnerCoordinator, RequesterCoordinator];
    let care = [
        AdminKey,
        OwnerAdmin,
        OwnerCoordinator,
        OwnerDoctorChair,
        RequesterCoordinator,
        RequesterDoctor,
        Invitee,
    ];
    let c = format!("/api/v1/conferences/{conf}");
    let rows = vec![
        // Pages and public calls: the same for everyone.
        row("GET", "/", "/".into(), EVERYONE),
        row("GET", "/join/{room}", format!("/join/{visit}"), EVERYONE),
        row("GET", "/q/{queue}", format!("/q/{queue}"), EVERYONE),
        // Issue 12: a queue link's QR code and poster are as public as its page.
        row(
            "GET",
            "/q/{queue}/qr.svg",
            format!("/q/{queue}/qr.svg"),
            EVERYONE,
        ),
        row(
            "GET",
            "/q/{queue}/poster",
            format!("/q/{queue}/poster"),
            EVERYONE,
        ),
        // Any signed-in staff member (or the key) may draw a link's QR code.
        row(
            "POST",
            "/api/v1/qr",
            "/api/v1/qr".into(),
            &[&[AdminKey][..], STAFF].concat(),
        )
        .json(json!({"url": format!("https://127.0.0.1/join/{visit}#v1.x")})),
        row("GET", "/staff", "/staff".into(), EVERYONE),
        row("GET", "/static/{file}", "/static/app.js".into(), EVERYONE),
        row("GET", "/healthz", "/healthz".into(), EVERYONE),
        row("GET", "/livez", "/livez".into(), EVERYONE).everyone_gets(&[200]),
        // Ready once the monitor's first probe is in (well before the rows run).
        row("GET", "/readyz", "/readyz".into(), EVERYONE).everyone_gets(&[200]),
        row("GET", "/check", "/check".into(), EVERYONE),
        // Without an upgrade it is a plain bad request, for everyone.
        row("GET", "/ws", "/ws".into(), EVERYONE),
        row(
            "POST",
            "/api/v1/join-check",
            "/api/v1/join-check".into(),
            EVERYONE,
        )
        .json(json!({"room": visit, "token": patient_token})),
        // The pre-call check: anyone, with no body (check.rs); all 13 callers come from one
        // address, so its per-address budget (6, then one per 10 s) runs out on the way.
        row("POST", "/api/v1/check", "/api/v1/check".into(), EVERYONE).everyone_gets(&[200, 429]),
        row(
            "GET",
            "/api/v1/queues/{id}/public",
            format!("/api/v1/queues/{queue}/public"),
            EVERYONE,
        ),
        row(
            "POST",
            "/api/v1/auth/login",
            "/api/v1/auth/login".into(),
            EVERYONE,
        )
        .json(json!({"username": "bs.tinh", "password": "sai", "totp": "000000"}))
        // A stranger's sign-in is refused, or slowed down after a few.
        .everyone_gets(&[401, 429]),
        // One's own account.
        // The admin key is no account.
        row("GET", "/api/v1/me", "/api/v1/me".into(), STAFF).answers(AdminKey, 401),
        // The directory.
        row(
            "GET",
            "/api/v1/facilities",
            "/api/v1/facilities".into(),
            &coordination_and_admins(),
        ),
        row(
            "POST",
            "/api/v1/facilities",
            "/api/v1/facilities".into(),
            &[AdminKey, OwnerAdmin],
        )
        .json(
            json!({"name": "TYT xã Mới", "tier": "commune_station", "parent_id": district["id"]}),
        ),
        row(
            "GET",
            "/api/v1/practitioners",
            "/api/v1/practitioners".into(),
            &coordination_and_admins(),
        ),
        row(
            "POST",
            "/api/v1/practitioners",
            "/api/v1/practitioners".into(),
            &[AdminKey, OwnerAdmin],
        )
        .json(
            json!({"name": "BS. Mới", "title": "BS", "licence_number": "009999/AH-CCHN",
                         "specialty": "Nhi", "facility_id": other["id"]}),
        ),
        row(
            "GET",
            "/api/v1/staff",
            "/api/v1/staff".into(),
            &coordination_and_admins(),
        ),
        row(
            "POST",
            "/api/v1/staff",
            "/api/v1/staff".into(),
            &[AdminKey, OwnerAdmin],
        )
        .json(
            json!({"username": "dd.moi", "name": "Điều phối Mới", "role": "coordinator",
                         "facility_id": other["id"], "password": tuxa_tests::staff::PASSWORD}),
        ),
        row(
            "PATCH",
            "/api/v1/staff/{id}",
            format!("/api/v1/staff/{}", spare["staff"]["id"]),
            &[AdminKey, OwnerAdmin],
        )
        .json(json!({"role": "nurse"})),
        // On-call queues (the province's).
        row(
            "GET",
            "/api/v1/queues",
            "/api/v1/queues".into(),
            &[&[AdminKey][..], STAFF].concat(),
        ),
        row(
            "POST",
            "/api/v1/queues",
            "/api/v1/queues".into(),
            &owner_managers,
        )
        .json(json!({"facility_id": province["id"], "specialty": "Nhi khoa"})),
        row(
            "GET",
            "/api/v1/queues/{id}/roster",
            format!("/api/v1/queues/{queue}/roster"),
            &owner_managers,
        ),
        row(
            "POST",
            "/api/v1/queues/{id}/roster",
            format!("/api/v1/queues/{queue}/roster"),
            &owner_managers,
        )
        .json(json!({"staff_id": staff_id(OwnerDoctorChair), "start": "07:00", "end": "17:00"})),
        row(
            "GET",
            "/api/v1/queues/{id}/tickets",
            format!("/api/v1/queues/{queue}/tickets"),
            &owner_care,
        ),
        row(
            "DELETE",
            "/api/v1/queues/{id}/tickets/{handle}",
            format!("/api/v1/queues/{queue}/tickets/nosuch"),
            &owner_care,
        ),
        // Appointments, the report, the live view.
        row(
            "GET",
            "/api/v1/appointments",
            "/api/v1/appointments".into(),
            &care,
        ),
        row(
            "POST",
            "/api/v1/appointments",
            "/api/v1/appointments".into(),
            &care,
        )
        .json(
            json!({"starts_at": now + 86_400, "patient": {"name": "Bệnh nhân Hẹn"},
                         "doctor": {"name": "BS. Hẹn"}}),
        ),
        row(
            "GET",
            "/api/v1/reports/activity",
            "/api/v1/reports/activity".into(),
            &coordination,
        ),
        row("GET", "/api/v1/live", "/api/v1/live".into(), &coordination),
        // Consultations: the visit (the province's) and the conference's.
        row(
            "GET",
            "/api/v1/consultations",
            "/api/v1/consultations".into(),
            &[&[AdminKey][..], STAFF].concat(),
        ),
        row(
            "POST",
            "/api/v1/consultations",
            "/api/v1/consultations".into(),
            &care,
        )
        .json(json!({"kind": "visit", "title": "Khám"})),
        row(
            "GET",
            "/api/v1/consultations/{id}",
            format!("/api/v1/consultations/{visit}"),
            &owner_all,
        ),
        row(
            "GET",
            "/api/v1/consultations/{id}",
            format!("/api/v1/consultations/{room}"),
            &concerned,
        ),
        row(
            "POST",
            "/api/v1/consultations/{id}/links",
            format!("/api/v1/consultations/{visit}/links"),
            &owner_care,
        )
        .json(json!({"role": "patient", "name": "Bệnh nhân"})),
        // A conference's links are its coordinators' to give; invitees join, the chair
        // invites guests.
        row(
            "POST",
            "/api/v1/consultations/{id}/links",
            format!("/api/v1/consultations/{room}/links"),
            &owner_managers,
        )
        .json(json!({"role": "doctor", "name": "BS. Khách"})),
        row(
            "GET",
            "/api/v1/consultations/{id}/record.json",
            format!("/api/v1/consultations/{visit}/record.json"),
            &owner_all,
        ),
        row(
            "GET",
            "/api/v1/consultations/{id}/record.json",
            format!("/api/v1/consultations/{room}/record.json"),
            &concerned,
        ),
        row(
            "GET",
            "/api/v1/consultations/{id}/record.fhir.json",
            format!("/api/v1/consultations/{room}/record.fhir.json"),
            &concerned,
        ),
        row(
            "GET",
            "/consultations/{id}/minutes",
            format!("/consultations/{room}/minutes"),
            &concerned,
        ),
        // Recordings (issue 13): read by the record's readers; the player page holds nothing.
        row(
            "GET",
            "/consultations/{id}/recordings",
            format!("/consultations/{room}/recordings"),
            &[&[AdminKey][..], STAFF].concat(),
        ),
        row(
            "GET",
            "/api/v1/consultations/{id}/recordings",
            format!("/api/v1/consultations/{room}/recordings"),
            &concerned,
        ),
        row(
            "GET",
            "/api/v1/recordings/{file}",
            format!("/api/v1/recordings/{recorded}"),
            &concerned,
        ),
        // Conference requests.
        row(
            "GET",
            "/api/v1/conferences",
            "/api/v1/conferences".into(),
            &[&[AdminKey][..], STAFF].concat(),
        ),
        row("GET", "/api/v1/conferences/{id}", c.clone(), &concerned),
        row(
            "GET",
            "/api/v1/conferences/{id}/attachments/{attachment}",
            format!("{c}/attachments/{attachment}"),
            &concerned,
        ),
        Row {
            body: Some(Body::File(b"%PDF-1.4\n", "application/pdf")),
            ..row(
                "POST",
                "/api/v1/conferences/{id}/attachments",
                format!("{c}/attachments?name=kq.pdf"),
                &[
                    AdminKey,
                    OwnerAdmin,
                    OwnerCoordinator,
                    OwnerDoctorChair,
                    RequesterCoordinator,
                    RequesterDoctor,
                    RequesterNurse,
                ],
            )
        },
        row(
            "POST",
            "/api/v1/conferences/{id}/join",
            format!("{c}/join"),
            &[OwnerDoctorChair, RequesterDoctor, Invitee],
        ),
        row(
            "POST",
            "/api/v1/conferences/{id}/guest-link",
            format!("{c}/guest-link"),
            &[OwnerDoctorChair],
        )
        .json(json!({"role": "patient", "name": "Trần Thị B"})),
        row(
            "POST",
            "/api/v1/conferences/{id}/conclusion",
            format!("{c}/conclusion"),
            &[OwnerDoctorChair],
        )
        .json(json!({"text": "Kết luận."})),
        row(
            "POST",
            "/api/v1/conferences/{id}/schedule",
            format!("{c}/schedule"),
            &[AdminKey, OwnerAdmin, OwnerCoordinator, OwnerDoctorChair],
        )
        .json(plan.clone()),
        row(
            "POST",
            "/api/v1/conferences/{id}/reschedule",
            format!("{c}/reschedule"),
            &[AdminKey, OwnerAdmin, OwnerCoordinator, OwnerDoctorChair],
        )
        .json(json!({"starts_at": now + 2 * 86_400, "duration_min": 45})),
        row(
            "POST",
            "/api/v1/conferences",
            "/api/v1/conferences".into(),
            // Asked by a clinician (the province's own get `400` for the body: no facility
            // above theirs, which is not a refusal of who they are).
            &[
                OwnerDoctorChair,
                OwnerNurse,
                RequesterDoctor,
                RequesterNurse,
                Invitee,
                OtherDistrictNurse,
            ],
        )
        .json(conference_request(&province)),
        // What changes state for good comes last.
        row(
            "POST",
            "/api/v1/conferences/{id}/decline",
            format!("{c}/decline"),
            &[AdminKey, OwnerAdmin, OwnerCoordinator, OwnerDoctorChair],
        )
        .json(json!({"reason": "Không cần."})),
        row(
            "POST",
            "/api/v1/conferences/{id}/cancel",
            format!("{c}/cancel"),
            &[AdminKey, OwnerAdmin, OwnerCoordinator, OwnerDoctorChair],
        )
        .json(json!({"reason": "Bệnh nhân đã chuyển viện."})),
        row(
            "POST",
            "/api/v1/consultations/{id}/end",
            format!("/api/v1/consultations/{room}/end"),
            &[AdminKey, OwnerAdmin, OwnerCoordinator, OwnerDoctorChair],
        ),
        row(
            "POST",
            "/api/v1/consultations/{id}/end",
            format!("/api/v1/consultations/{visit}/end"),
            &owner_care,
        ),
        row(
            "POST",
            "/api/v1/auth/logout",
            "/api/v1/auth/logout".into(),
            EVERYONE,
        ),
    ];

    // Every declared route has a row, and every row a route.
    let declared = declared_routes();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_owned(), r.route.to_owned()))
        .collect();
    let missing: Vec<_> = declared.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&declared).collect();
    // What the gate lets through without a credential agrees with the rows: a route a stranger
    // may call is public, and a public route's row lets strangers through.
    let gate_disagrees: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let public = access_of(r.method, r.route)? == tuxa_server::gate::Access::Public;
            let anonymous_through = r.may.contains(&Anonymous) || r.everyone_gets.is_some();
            (public != anonymous_through).then(|| {
                format!("{} {}: gate public = {public}, row lets strangers through = {anonymous_through}", r.method, r.route)
            })
        })
        .collect();

    let mut wrong = Vec::new();
    let mut seen = 0;
    for r in &rows {
        for &who in EVERYONE {
            let auth = match who {
                Anonymous => Auth::None,
                AdminKey => Auth::Bearer(api.admin_key()),
                Patient => Auth::Bearer(&patient_token),
                Guest => Auth::Bearer(&guest_token),
                w => Auth::Cookie(cookie(&cookies, w)),
            };
            let (status, body) = call(&api, r, auth).await?;
            seen += 1;
            let special = r.answers.iter().find(|(w, _)| *w == who).map(|&(_, s)| s);
            let ok = match (special, r.everyone_gets) {
                (Some(s), _) => status == s,
                (None, Some(s)) => s.contains(&status),
                _ if r.may.contains(&who) => !matches!(status, 401 | 403) && status < 500,
                _ if who.signed_in() || who == AdminKey => matches!(status, 403 | 404),
                _ => status == 401,
            };
            if !ok {
                wrong.push(format!(
                    "{who:?} {} {} → {status} {} (expected {})",
                    r.method,
                    r.path,
                    code(&body),
                    match (special, r.everyone_gets) {
                        (Some(s), _) => s.to_string(),
                        (None, Some(s)) => format!("{s:?}"),
                        _ if r.may.contains(&who) => "let through".into(),
                        _ if who.signed_in() || who == AdminKey => "403/404".into(),
                        _ => "401".into(),
                    }
                ));
            }
        }
    }
    assert!(
        missing.is_empty() && stale.is_empty() && wrong.is_empty() && gate_disagrees.is_empty(),
        "routes without a row in the permission matrix: {missing:?}\nrows for no route: \
         {stale:?}\nthe gate's access and the rows disagree: {gate_disagrees:#?}\n{} of {seen} \
         answers differ from the matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    server.shutdown().await?;
    Ok(())
}

/// Directory reads: the admin key, administrators and coordinators (in their scope).
fn coordination_and_admins() -> Vec<Who> {
    vec![AdminKey, OwnerAdmin, OwnerCoordinator, RequesterCoordinator]
}

fn cookie(cookies: &[(Who, String)], who: Who) -> &str {
    &cookies
        .iter()
        .find(|(w, _)| *w == who)
        .expect("signed in")
        .1
}

fn link_room(url: &str) -> RoomId {
    let (path, _) = url.split_once('#').expect("a token after #");
    RoomId::parse(path.rsplit('/').next().expect("room")).expect("room id")
}

fn conference_request(to: &Value) -> Value {
    json!({"to_facility_id": to["id"], "specialty": "Nội khoa", "urgency": "urgent",
           "patient": {"name": "Trần Thị B", "birth_year": 1958, "sex": "female"},
           "summary": "Khó thở tăng dần 3 ngày.", "question": "Có cần chuyển tuyến?",
           "consent": {"text_version": "vi-2026-11", "remote_examination": true,
                       "third_parties": true, "recording": false}})
}

async fn call(api: &ApiClient, r: &Row, auth: Auth<'_>) -> anyhow::Result<(u16, Value)> {
    let resp = match &r.body {
        Some(Body::Json(v)) => {
            let b = serde_json::to_vec(v)?;
            api.request_raw(r.method, &r.path, Some(&b), auth).await?
        }
        Some(Body::File(bytes, ctype)) => {
            api.request_typed(r.method, &r.path, Some(bytes), ctype, auth)
                .await?
        }
        None => api.request_raw(r.method, &r.path, None, auth).await?,
    };
    Ok((resp.status, resp.json))
}
