//! HTTP side of the simulated tenant: routes, auth, validation, and the
//! fault injection that makes it adversarial.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde_json::json;

use super::{Shared, now_ms};

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/audit-logs", get(audit_logs))
        .route("/api/v1/users/{id}", get(user_v1))
        .route("/api/v1/users", get(users_v1))
        .route("/api/users/{id}", get(user_legacy))
        .route("/demo-docs/api/v1/users/{id}", get(user_demo_docs))
        .route(
            "/api/v1/customers/{customer}/users/{id}",
            get(user_customer_scoped),
        )
        .route("/users/{id}", get(user_jsonapi))
        .route("/_sim/truth", get(truth))
        .route("/_sim/stats", get(stats))
        .route("/_sim/freeze", post(freeze))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// How a successful body is delivered.
enum Delivery {
    Whole,
    /// Connection dropped after part of the body.
    Drop,
    /// Body cut short, framing intact.
    Truncate,
    /// The body goes on for ever.
    Endless,
}

/// Auth, rate limit and random faults shared by every API route. `Ok`
/// carries how to deliver a successful body.
async fn gate(shared: &Shared, headers: &HeaderMap) -> Result<Delivery, Response> {
    gate_with(shared, headers, false).await
}

/// The gate with the users API's own error and stall rates.
async fn users_gate(shared: &Shared, headers: &HeaderMap) -> Result<Delivery, Response> {
    gate_with(shared, headers, true).await
}

async fn gate_with(
    shared: &Shared,
    headers: &HeaderMap,
    users: bool,
) -> Result<Delivery, Response> {
    let mut config = shared.config.lock().unwrap().clone();
    if users {
        config.error_rate = config.users_error_rate;
        config.stall_rate = config.users_stall_rate;
    }
    shared.stats.lock().unwrap().requests += 1;
    let expected = format!("Bearer {}", config.api_key);
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if sent != Some(expected.as_str()) {
        shared.stats.lock().unwrap().unauthorized += 1;
        // Like some gateways, quote the credential it refused: the client
        // must never log it.
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &format!(
                "Invalid or missing API key; got Authorization: {}",
                sent.unwrap_or("(none)")
            ),
        ));
    }
    if let Some(limiter) = &shared.limiter
        && let Err(not_until) = limiter.check()
    {
        shared.stats.lock().unwrap().throttled += 1;
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
        );
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Err(response);
    }
    let (latency, fault, retry_after, delivery, stall) = {
        let mut rng = shared.faults.lock().unwrap();
        let latency = if config.latency.is_zero() {
            Duration::ZERO
        } else {
            rng.random_range(Duration::ZERO..=config.latency)
        };
        let roll: f64 = rng.random();
        let mut edge = config.error_rate;
        let fault = if roll < edge {
            Some(
                *[500u16, 502, 503, 504]
                    .get(rng.random_range(0..4))
                    .expect("in range"),
            )
        } else {
            edge += config.throttle_rate;
            if roll < edge { Some(429) } else { None }
        };
        let retry_after = match rng.random_range(0..4) {
            0 => None,
            1 => Some("0".to_string()),
            2 => Some("1".to_string()),
            _ => Some(
                (chrono::Utc::now() + chrono::Duration::seconds(1))
                    .to_rfc2822()
                    .replace("+0000", "GMT"),
            ),
        };
        let roll: f64 = rng.random();
        let delivery = if roll < config.drop_rate {
            Delivery::Drop
        } else if roll < config.drop_rate + config.truncate_rate {
            Delivery::Truncate
        } else if roll < config.drop_rate + config.truncate_rate + config.endless_rate {
            Delivery::Endless
        } else {
            Delivery::Whole
        };
        let stall = rng.random_bool(config.stall_rate.clamp(0.0, 1.0));
        (latency, fault, retry_after, delivery, stall)
    };
    if stall {
        shared.stats.lock().unwrap().stalled += 1;
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(429) => {
            shared.stats.lock().unwrap().throttled += 1;
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Slow down");
            if let Some(v) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&v).expect("ascii"),
                );
            }
            Err(response)
        }
        Some(code) => {
            shared.stats.lock().unwrap().errors += 1;
            let status = StatusCode::from_u16(code).expect("valid status");
            if code == 502 {
                Err((status, "<html><body>502 Bad Gateway</body></html>").into_response())
            } else {
                Err(error(status, "internal_error", "Something went wrong"))
            }
        }
        None => Ok(delivery),
    }
}

fn respond(shared: &Shared, body: impl Into<Vec<u8>>, delivery: Delivery) -> Response {
    let bytes: Vec<u8> = body.into();
    match delivery {
        Delivery::Endless => {
            shared.stats.lock().unwrap().endless += 1;
            // The page, then blanks for ever: only a client that bounds what
            // it reads gets past this.
            let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
            let rest = futures_util::stream::repeat_with(|| Ok(vec![b' '; 64 << 10]));
            let mut response = Response::new(Body::from_stream(futures_util::StreamExt::chain(
                first, rest,
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Delivery::Whole => {
            shared.stats.lock().unwrap().pages_served += 1;
            ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Delivery::Truncate => {
            shared.stats.lock().unwrap().truncated += 1;
            let cut = bytes.len() / 2;
            (
                [(header::CONTENT_TYPE, "application/json")],
                bytes[..cut].to_vec(),
            )
                .into_response()
        }
        Delivery::Drop => {
            shared.stats.lock().unwrap().dropped += 1;
            let cut = bytes.len() / 3;
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
                Ok(bytes[..cut].to_vec()),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated drop",
                )),
            ];
            let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

fn bad_request(shared: &Shared, message: &str) -> Response {
    shared.stats.lock().unwrap().bad_requests += 1;
    error(StatusCode::BAD_REQUEST, "validation_error", message)
}

/// Counts an audit-log request as in progress until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        use std::sync::atomic::Ordering;
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut stats = shared.stats.lock().unwrap();
        stats.max_in_flight = stats.max_in_flight.max(now);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn audit_logs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    shared
        .requests
        .lock()
        .unwrap()
        .push(super::requests::RequestRecord {
            at_ms: now_ms(),
            user_agent: headers
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            since: params.get("since").cloned(),
            offset: params.get("offset").cloned(),
            limit: params.get("limit").cloned(),
        });
    let delivery = match gate(&shared, &headers).await {
        Ok(d) => d,
        Err(response) => return response,
    };
    let limit = match params.get("limit").map(|l| l.parse::<i64>()) {
        None => 20,
        Some(Ok(l)) if (1..=100).contains(&l) => l as usize,
        Some(_) => return bad_request(&shared, "limit must be an integer between 1 and 100"),
    };
    let offset = match params.get("offset").map(|o| o.parse::<u64>()) {
        None => 0,
        Some(Ok(o)) => o as usize,
        Some(Err(_)) => return bad_request(&shared, "offset must be a non-negative integer"),
    };
    let ignore_since = shared.config.lock().unwrap().ignore_since;
    let since = match params.get("since") {
        _ if ignore_since => None,
        None => None,
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.timestamp_millis()),
            Err(_) => return bad_request(&shared, "since must be an ISO-8601 timestamp"),
        },
    };
    let (page, total) = {
        let mut world = shared.world.lock().unwrap();
        world.advance(now_ms());
        world.page(
            since,
            params.get("action").map(String::as_str),
            offset,
            limit,
        )
    };
    let mut body: Vec<u8> =
        Vec::with_capacity(page.iter().map(|e| e.json.len() + 1).sum::<usize>() + 96);
    body.extend_from_slice(b"{\"data\":[");
    for (i, e) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.json);
    }
    let total = total.map(|t| format!("\"total\":{t},")).unwrap_or_default();
    body.extend_from_slice(
        format!("],\"pagination\":{{{total}\"limit\":{limit},\"offset\":{offset}}}}}").as_bytes(),
    );
    let mut response = respond(&shared, body, delivery);
    if shared.config.lock().unwrap().bogus_date {
        response.headers_mut().insert(
            header::DATE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
    }
    response
}

/// Looks up a user for one of the users-API shapes, behind the users gate;
/// `render` turns the user into that shape's JSON.
async fn user_lookup(
    shared: &Shared,
    headers: &HeaderMap,
    id: &str,
    render: impl FnOnce(&super::SimUser) -> serde_json::Value,
) -> Response {
    let delivery = match users_gate(shared, headers).await {
        Ok(d) => d,
        Err(response) => return response,
    };
    shared.stats.lock().unwrap().user_lookups += 1;
    let user = shared
        .world
        .lock()
        .unwrap()
        .users()
        .iter()
        .find(|u| u.id == id)
        .cloned();
    match user {
        Some(u) => respond(shared, render(&u).to_string(), delivery),
        None => error(StatusCode::NOT_FOUND, "not_found", "User not found"),
    }
}

async fn user_v1(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    user_lookup(&shared, &headers, &id, |u| {
        json!({ "id": u.id, "email": u.email, "first_name": u.first_name, "last_name": u.last_name, "role": u.role })
    })
    .await
}

async fn user_legacy(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    user_lookup(&shared, &headers, &id, |u| {
        json!({ "user": {
            "id": u.id, "first_name": u.first_name, "last_name": u.last_name, "email": u.email,
            "company_role": "Software Engineer", "is_enabled": u.enabled,
            "user_preferences": [{ "role": u.role }],
        }})
    })
    .await
}

async fn user_demo_docs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    user_lookup(&shared, &headers, &id, |u| {
        json!({
            "id": u.id, "email": u.email, "name": format!("{} {}", u.first_name, u.last_name), "role": u.role,
            "status": if u.enabled { "active" } else { "inactive" },
            "created_at": "2024-01-15T10:30:00Z", "last_login": "2024-01-20T09:15:00Z",
        })
    })
    .await
}

async fn user_customer_scoped(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((customer, id)): Path<(String, String)>,
) -> Response {
    if customer != shared.config.lock().unwrap().customer_id {
        return error(StatusCode::NOT_FOUND, "not_found", "Customer not found");
    }
    user_lookup(&shared, &headers, &id, |u| {
        json!({
            "_id": u.id, "createdAt": "2022-08-12T20:44:48Z", "updatedAt": "2022-08-12T20:44:48Z",
            "email": u.email, "firstName": u.first_name, "lastName": u.last_name, "jobTitle": u.role,
            "nickname": "", "status": if u.enabled { "active" } else { "inactive" }, "department": "Talent",
        })
    })
    .await
}

async fn user_jsonapi(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    user_lookup(&shared, &headers, &id, |u| {
        json!({ "data": { "id": u.id, "type": "users", "attributes": {
            "firstName": u.first_name, "lastName": u.last_name, "email": u.email, "phoneNumber": "123456789",
            "suspended": !u.enabled, "lastLoginTime": "2023-03-08T10:18:38.501+00:00",
            "lastActionTime": "2023-03-16T13:32:26.056+00:00", "twoFactorEnabled": true,
            "tenantAdmin": u.role == "Administrator",
        }}})
    })
    .await
}

async fn users_v1(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let delivery = match gate(&shared, &headers).await {
        Ok(d) => d,
        Err(response) => return response,
    };
    let users = shared.world.lock().unwrap().users().to_vec();
    let data: Vec<_> = users
        .iter()
        .filter(|u| params.get("email").is_none_or(|e| &u.email == e))
        .map(|u| json!({ "id": u.id, "email": u.email, "first_name": u.first_name, "last_name": u.last_name, "role": u.role }))
        .collect();
    respond(&shared, json!({ "data": data }).to_string(), delivery)
}

async fn truth(State(shared): State<Arc<Shared>>) -> Response {
    let mut world = shared.world.lock().unwrap();
    world.advance(now_ms());
    let events: Vec<_> = world.events().map(|e| e.as_ref().clone()).collect();
    axum::Json(json!({ "frozen": world.is_frozen(), "events": events })).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats.lock().unwrap().clone()).into_response()
}

async fn freeze(State(shared): State<Arc<Shared>>) -> Response {
    let mut world = shared.world.lock().unwrap();
    world.advance(now_ms());
    world.freeze();
    StatusCode::NO_CONTENT.into_response()
}
