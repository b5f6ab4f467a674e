//! The authorization gate: every route is declared with the [`Access`] it
//! requires, and one middleware enforces it before the handler runs and
//! before a byte of the body is read. A handler cannot forget it: there is
//! no way to add a route without an `Access` ([`Routes`] is the only way
//! routes are made), and [`route_table`] lists them all for the tests
//! (`tests/tests/permissions.rs` calls every one with every kind of caller).
//!
//! Handlers take the caller as an extractor: [`Actor`] (the admin key or a
//! staff session, authenticated by the gate) or [`SignedIn`] (a staff
//! session). Finer rules — scope, and the per-consultation permissions — are
//! decided on what the handler loads, with `Actor::sees`/`Actor::check`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tuxa_protocol::ErrorCode;

use crate::app::AppState;
use crate::authz::Actor;
use crate::error::ApiError;
use tuxa_records::directory::StaffRole;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the pages, static files, the health check, the WebSocket (its
    /// token comes in the first frame), and the few API calls strangers make
    /// (the link check, the pre-call check, sign-in, sign-out). The handler
    /// checks whatever credential the call carries.
    Public,
    /// A signed-in staff session; the admin key is not one (`/api/v1/me`).
    Session,
    /// The admin key, or a staff session whose role is in the list.
    Roles(&'static [StaffRole]),
}

impl Access {
    /// The admin key or any signed-in staff member.
    pub const STAFF: Access = Access::Roles(&StaffRole::ALL);

    /// How the route table and docs/api.md name it.
    pub fn describe(self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Session => "session".into(),
            Access::Roles(r) if r == StaffRole::ALL => "staff".into(),
            Access::Roles(r) => {
                let names: Vec<&str> = r.iter().map(|r| r.as_str()).collect();
                format!("admin key, {}", names.join(", "))
            }
        }
    }
}

/// One row of the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

/// A router whose every route has its [`Access`].
pub struct Routes {
    router: axum::Router<AppState>,
    table: Vec<RouteRule>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

macro_rules! method {
    ($name:ident, $method:literal, $routing:path) => {
        pub fn $name<H, T>(self, path: &'static str, access: Access, handler: H) -> Routes
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.add($method, path, access, $routing(handler))
        }
    };
}

impl Routes {
    pub fn new() -> Routes {
        Routes {
            router: axum::Router::new(),
            table: Vec::new(),
        }
    }

    method!(get, "GET", axum::routing::get);
    method!(post, "POST", axum::routing::post);
    method!(patch, "PATCH", axum::routing::patch);
    method!(delete, "DELETE", axum::routing::delete);

    /// A route whose method router needs its own layer (the attachment
    /// upload's body limit); `method` must be the one `route` answers.
    pub fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        access: Access,
        route: MethodRouter<AppState>,
    ) -> Routes {
        self.table.push(RouteRule {
            method,
            path,
            access,
        });
        self.router = self.router.route(path, route);
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.table.extend(other.table);
        self.router = self.router.merge(other.router);
        self
    }

    /// A layer over every route so far (e.g. an `Extension`).
    pub fn layer<L>(mut self, layer: L) -> Routes
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as tower::Service<Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    pub fn table(&self) -> &[RouteRule] {
        &self.table
    }

    /// The router with the gate in front of every route.
    pub fn into_router(self, state: &AppState) -> axum::Router<AppState> {
        let mut rules: HashMap<(Method, &'static str), Access> = HashMap::new();
        for r in &self.table {
            let m = Method::from_bytes(r.method.as_bytes()).expect("a method name");
            let old = rules.insert((m, r.path), r.access);
            assert!(old.is_none(), "{} {} declared twice", r.method, r.path);
        }
        let gate_state = GateState {
            app: state.clone(),
            rules: Arc::new(rules),
        };
        self.router
            .route_layer(axum::middleware::from_fn_with_state(gate_state, gate))
    }
}

impl Routes {
    /// [`Routes::into_router`] with its state: a whole app (in tests, a
    /// module's routes alone).
    pub fn with_state(self, state: AppState) -> axum::Router {
        self.into_router(&state).with_state(state)
    }
}

#[derive(Clone)]
struct GateState {
    app: AppState,
    rules: Arc<HashMap<(Method, &'static str), Access>>,
}

/// The middleware: the route's access, checked before the body is read;
/// then the body limits (limits.rs); the caller goes to the handler in the
/// request's extensions.
async fn gate(
    State(gs): State<GateState>,
    route: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = route.as_ref().map(MatchedPath::as_str);
    // HEAD is answered by the GET route.
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let access = path.and_then(|p| gs.rules.get(&(method, p)).copied());
    let public = match access {
        // A path that exists without this method: the router answers 405.
        None => return next.run(req).await,
        Some(Access::Public) => true,
        Some(Access::Session) => match crate::authz::signed_in(&gs.app, req.headers()).await {
            Ok(s) => {
                req.extensions_mut().insert(s);
                false
            }
            Err(e) => return e.into_response(),
        },
        Some(Access::Roles(roles)) => {
            match crate::authz::authenticate(&gs.app, req.headers()).await {
                Ok(actor) => {
                    if let Some(role) = actor.role()
                        && !roles.contains(&role)
                    {
                        return ApiError::new(
                            ErrorCode::Forbidden,
                            format!("a {} may not do this", role.as_str()),
                        )
                        .into_response();
                    }
                    req.extensions_mut().insert(actor);
                    false
                }
                Err(e) => return e.into_response(),
            }
        }
    };
    crate::limits::bodies(public, path, req, next).await
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Actor, ApiError> {
        // Only a route declared with `Access::Roles` has one; taking an
        // actor on any other route is a programming error, refused.
        parts.extensions.remove::<Actor>().ok_or_else(|| {
            tracing::error!("a handler takes an Actor on a route without Access::Roles");
            ApiError::new(ErrorCode::Internal, "internal error; see the server log")
        })
    }
}

impl FromRequestParts<AppState> for tuxa_records::auth::SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<tuxa_records::auth::SignedIn, ApiError> {
        parts
            .extensions
            .remove::<tuxa_records::auth::SignedIn>()
            .ok_or_else(|| {
                tracing::error!("a handler takes SignedIn on a route without Access::Session");
                ApiError::new(ErrorCode::Internal, "internal error; see the server log")
            })
    }
}

#[cfg(test)]
mod tests {
    /// Every route with the access it requires, written out: a route added
    /// or changed without a line here fails, so a new route's access is a
    /// decision someone reads in review. (`tests/tests/permissions.rs` then
    /// calls each one with every kind of caller.)
    const EXPECTED: &[(&str, &str, &str)] = &[
        ("DELETE", "/api/v1/queues/{id}/tickets/{handle}", "staff"),
        ("GET", "/", "public"),
        ("GET", "/api/v1/appointments", "staff"),
        ("GET", "/api/v1/conferences", "staff"),
        ("GET", "/api/v1/conferences/{id}", "staff"),
        (
            "GET",
            "/api/v1/conferences/{id}/attachments/{attachment}",
            "staff",
        ),
        ("GET", "/api/v1/consultations", "staff"),
        ("GET", "/api/v1/consultations/{id}", "staff"),
        (
            "GET",
            "/api/v1/consultations/{id}/record.fhir.json",
            "staff",
        ),
        ("GET", "/api/v1/consultations/{id}/record.json", "staff"),
        ("GET", "/api/v1/facilities", "staff"),
        ("GET", "/api/v1/live", "admin key, admin, coordinator"),
        ("GET", "/api/v1/me", "session"),
        ("GET", "/api/v1/practitioners", "staff"),
        ("GET", "/api/v1/queues", "staff"),
        ("GET", "/api/v1/queues/{id}/public", "public"),
        ("GET", "/api/v1/queues/{id}/roster", "staff"),
        ("GET", "/api/v1/queues/{id}/tickets", "staff"),
        ("GET", "/api/v1/reports/activity", "staff"),
        ("GET", "/api/v1/staff", "staff"),
        ("GET", "/check", "public"),
        ("GET", "/consultations/{id}/minutes", "staff"),
        ("GET", "/consultations/{id}/recordings", "staff"),
        ("GET", "/api/v1/consultations/{id}/recordings", "staff"),
        ("GET", "/api/v1/recordings/{file}", "staff"),
        ("GET", "/healthz", "public"),
        ("GET", "/join/{room}", "public"),
        ("GET", "/livez", "public"),
        ("GET", "/q/{queue}", "public"),
        ("GET", "/q/{queue}/poster", "public"),
        ("GET", "/q/{queue}/qr.svg", "public"),
        ("GET", "/readyz", "public"),
        ("GET", "/staff", "public"),
        ("GET", "/static/{file}", "public"),
        ("GET", "/ws", "public"),
        ("PATCH", "/api/v1/staff/{id}", "staff"),
        ("POST", "/api/v1/appointments", "staff"),
        ("POST", "/api/v1/auth/login", "public"),
        ("POST", "/api/v1/auth/logout", "public"),
        ("POST", "/api/v1/check", "public"),
        ("POST", "/api/v1/conferences", "staff"),
        ("POST", "/api/v1/conferences/{id}/attachments", "staff"),
        ("POST", "/api/v1/conferences/{id}/cancel", "staff"),
        ("POST", "/api/v1/conferences/{id}/conclusion", "staff"),
        ("POST", "/api/v1/conferences/{id}/decline", "staff"),
        ("POST", "/api/v1/conferences/{id}/guest-link", "staff"),
        ("POST", "/api/v1/conferences/{id}/join", "staff"),
        ("POST", "/api/v1/conferences/{id}/reschedule", "staff"),
        ("POST", "/api/v1/conferences/{id}/schedule", "staff"),
        ("POST", "/api/v1/consultations", "staff"),
        ("POST", "/api/v1/consultations/{id}/end", "staff"),
        ("POST", "/api/v1/consultations/{id}/links", "staff"),
        ("POST", "/api/v1/facilities", "staff"),
        ("POST", "/api/v1/join-check", "public"),
        ("POST", "/api/v1/practitioners", "staff"),
        ("POST", "/api/v1/qr", "staff"),
        ("POST", "/api/v1/queues", "staff"),
        ("POST", "/api/v1/queues/{id}/roster", "staff"),
        ("POST", "/api/v1/staff", "staff"),
    ];

    #[test]
    fn every_route_has_the_access_listed_here() {
        let actual: Vec<(String, String, String)> = crate::http::route_table()
            .into_iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned(), r.access.describe()))
            .collect();
        let expected: Vec<(String, String, String)> = EXPECTED
            .iter()
            .map(|(m, p, a)| (m.to_string(), p.to_string(), a.to_string()))
            .collect();
        let mut a = actual.clone();
        let mut e = expected.clone();
        a.sort();
        e.sort();
        if a != e {
            let listing: Vec<String> = a
                .iter()
                .map(|(m, p, x)| format!("        ({m:?}, {p:?}, {x:?}),"))
                .collect();
            panic!(
                "the route table changed; it is now:\n{}",
                listing.join("\n")
            );
        }
    }

    #[test]
    fn a_route_is_declared_once() {
        let table = crate::http::route_table();
        for (i, r) in table.iter().enumerate() {
            assert!(
                !table[i + 1..]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}
