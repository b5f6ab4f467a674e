//! The directory through the admin API, and staff sign-ins, for tests that act as staff
//! members: facilities, practitioners with licence numbers, accounts, and a sign-in cookie
//! made with the account's own TOTP secret.

use serde_json::{Value, json};

use crate::{ApiClient, Auth};

/// The password every test account gets.
pub const PASSWORD: &str = "mat-khau-rat-dai";

/// `POST path` with the admin key, expecting `201 Created`; the created JSON.
pub async fn created(api: &ApiClient, path: &str, body: Value) -> anyhow::Result<Value> {
    let (status, v) = api.admin("POST", path, Some(&body)).await?;
    anyhow::ensure!(status == 201, "{path}: {status} {v}");
    Ok(v)
}

/// A facility; `parent` for a district's province.
pub async fn facility(
    api: &ApiClient,
    name: &str,
    tier: &str,
    parent: Option<&Value>,
) -> anyhow::Result<Value> {
    created(
        api,
        "/api/v1/facilities",
        json!({"name": name, "tier": tier, "parent_id": parent.map(|p| p["id"].clone())}),
    )
    .await
}

/// A staff account at `facility` (with a practitioner record when `licence` is given); the
/// staff JSON, with its one-time TOTP secret.
pub async fn staff(
    api: &ApiClient,
    facility: &Value,
    username: &str,
    name: &str,
    role: &str,
    licence: Option<&str>,
) -> anyhow::Result<Value> {
    let practitioner = match licence {
        Some(l) => Some(
            created(
                api,
                "/api/v1/practitioners",
                json!({"name": name, "title": "BS", "licence_number": l,
                       "specialty": "Nội khoa", "facility_id": facility["id"]}),
            )
            .await?["id"]
                .clone(),
        ),
        None => None,
    };
    created(
        api,
        "/api/v1/staff",
        json!({"username": username, "name": name, "role": role, "facility_id": facility["id"],
               "practitioner_id": practitioner, "password": PASSWORD}),
    )
    .await
}

/// Signs in with password and TOTP; the `Cookie` header value.
pub async fn sign_in(api: &ApiClient, s: &Value) -> anyhow::Result<String> {
    let secret = s["totp"]["secret"].as_str().expect("secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let code = tuxa_server::totp_code(secret, now).expect("a code");
    let body = serde_json::to_vec(
        &json!({"username": s["staff"]["username"], "password": PASSWORD, "totp": code}),
    )?;
    let r = api
        .request_raw("POST", "/api/v1/auth/login", Some(&body), Auth::None)
        .await?;
    anyhow::ensure!(r.status == 200, "login: {} {}", r.status, r.body);
    Ok(r.header("set-cookie")
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned())
}

/// The `error.code` of an API answer (empty when there is none).
pub fn code(v: &Value) -> &str {
    v.pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("")
}
