//! `salestalk serve`: the built-in dashboards (`/sre`, `/product`, `/billing`), their data
//! (`GET /api/dashboards/<id>?range=24h&tenant=...`), the billing CSV
//! (`GET /api/billing/export.csv?month=YYYY-MM`), the alerts firing now (`GET /api/alerts`) and
//! `GET /health` (ready) and `GET /health/live`; and, beside them, the alert evaluator, until
//! SIGTERM or Ctrl-C.
//!
//! Every `/api/` route needs a key (`Authorization: Bearer stk_...`): an admin key reads every
//! tenant; a reader key reads its tenants only, enforced in each query (the panels' tenant
//! filter, the CSV's tenant condition), and never the panels about the whole pipeline (lag,
//! alerts) nor another tenant's alert. The pages and assets hold no data and need none; the
//! page asks for the key once and keeps it for the browser session.
//!
//! Panels are defined in the `salestalk-dashboards` crate; this module expands their macros,
//! runs them in ClickHouse and serves the pages and Chart.js from the binary (no CDN).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::future::join_all;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use salestalk_dashboards::panels::Source;
use salestalk_dashboards::{Dashboard, PanelRange, Tenants, dashboards, expand};
use salestalk_kafka::admin;
use salestalk_store::Endpoint;
use salestalk_store::billing::Month;
use salestalk_store::tables::window_state::task_name;
use serde_json::{Value, json};

use salestalk_http::access::{Access, ClientAddress, KeyCache, readable};
use salestalk_http::probes::{Probes, Started, until_started};
use salestalk_http::rate::TenantRates;
use salestalk_http::server::respond;

pub use self::settings::ServeSettings;
use crate::serve::alerts::{Evaluator, Firing};
use crate::settings::Settings;

pub mod alerts;
pub mod settings;
pub mod stalls;
pub mod webhook;

const PAGE: &str = include_str!("../../../dashboards/web/dashboard.html");
const APP_JS: &str = include_str!("../../../dashboards/web/app.js");
const STYLE: &str = include_str!("../../../dashboards/web/style.css");
const CHART_JS: &str = include_str!("../../../dashboards/web/vendor/chart.umd.min.js");

/// Ranges the pages offer, in seconds.
const RANGES: [(&str, i64); 4] = [
    ("1h", 3_600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
];

/// What every request handler reads.
struct App {
    settings: Settings,
    endpoint: Endpoint,
    firing: Firing,
    dashboards: Vec<Dashboard>,
    keys: KeyCache,
    /// Each key's request budget (`serve.key_requests_per_second`).
    budgets: TenantRates,
}

/// Serves and evaluates until `shutdown` completes.
///
/// The listener is bound first: while ClickHouse is away at start-up the process answers
/// `/health/live` and, not ready, `/health`, and every other route 503.
pub async fn serve(settings: &Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let probes = Probes::starting();
    let started: Started = Arc::default();
    let listen = settings.serve.listen()?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, http) = salestalk_http::server::serve(
        listen,
        until_started(Arc::clone(&probes), Arc::clone(&started)),
        async {
            let _ = http_stopped.await;
        },
    )
    .await
    .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(address = %bound, "listening; starting");
    tokio::pin!(shutdown);
    let evaluator = tokio::select! {
        evaluator = start(settings, &probes, &started) => Some(evaluator?),
        () = &mut shutdown => None,
    };
    if let Some(mut evaluator) = evaluator {
        probes.ready();
        tracing::info!(address = %bound, rules = settings.alerts.rules.len(), "serving");
        let mut every =
            tokio::time::interval(Duration::from_millis(settings.alerts.evaluate_every_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    evaluator.evaluate(chrono::Utc::now()).await;
                }
                () = &mut shutdown => break,
            }
        }
    }
    // Requests in flight are answered before the process ends.
    let _ = stop_http.send(());
    let _ = http.await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for ClickHouse and the schema, builds the pages' state and hands the router to
/// `started`; returns the alert evaluator.
async fn start(
    settings: &Settings,
    probes: &Probes,
    started: &Started,
) -> anyhow::Result<Evaluator> {
    crate::run::migrate(settings, probes).await?;
    crate::run::record_versions(settings).await;
    let profile = settings
        .clickhouse
        .probe()
        .await
        .context("probing ClickHouse")?;
    let reading = settings
        .clickhouse
        .for_readers(&settings.serve.reader_limits(), &profile);
    probes.wait_for("the alerts that were firing");
    let evaluator = Evaluator::start(
        settings.clickhouse.clone(),
        crate::serve::stalls::WatchedSources::new(
            &settings.pipeline.source_kinds(),
            &settings.kafka,
            &settings.kinesis,
        ),
        &settings.alerts,
    )
    .await
    .context("reading the alerts that were firing")?;
    let app = Arc::new(App {
        settings: settings.clone(),
        endpoint: reading,
        firing: evaluator.firing(),
        dashboards: dashboards(),
        keys: KeyCache::new(settings.clickhouse.clone(), settings.serve.key_cache_ms),
        budgets: TenantRates::new(settings.serve.key_requests_per_second),
    });
    // Set once: this is the only start.
    let _ = started.set(router(app));
    Ok(evaluator)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

fn bad_request(message: String) -> Response<Full<Bytes>> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

type Shared = State<Arc<App>>;

/// The address of a request's client, when the server set it.
type Client = Option<Extension<ClientAddress>>;

/// What the request's key may read, or the answer refusing it.
async fn access(
    app: &App,
    headers: &HeaderMap,
    client: Client,
) -> Result<Tenants, Response<Full<Bytes>>> {
    let refused = |status, message: &str| json_response(status, &json!({ "error": message }));
    match app.keys.from_headers(headers, client.map(|c| c.0)).await {
        Ok(Access::Granted(key)) => {
            if !app.budgets.allow(&key.id, std::time::Instant::now()) {
                let mut response = refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "this key is over {} requests a second; try again shortly",
                        app.settings.serve.key_requests_per_second
                    ),
                );
                response.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                return Err(response);
            }
            readable(&key).ok_or_else(|| {
                refused(
                    StatusCode::FORBIDDEN,
                    "a publisher key only publishes: a reader or admin key is needed",
                )
            })
        }
        Ok(Access::Refused) => Err(refused(
            StatusCode::UNAUTHORIZED,
            "a reader or admin key is needed: Authorization: Bearer stk_...",
        )),
        Ok(Access::Throttled(wait)) => Err(salestalk_http::access::too_many_failures(wait)),
        Err(error) => {
            tracing::warn!(%error, "checking an API key");
            Err(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "keys cannot be checked now; try again",
            ))
        }
    }
}
type Params = Query<BTreeMap<String, String>>;

/// Every route of `serve`; other methods on them answer 405, other paths 404.
fn router(app: Arc<App>) -> Router {
    let asset = |content_type: &'static str, body: &'static str| {
        get(move || async move { respond(StatusCode::OK, content_type, body) })
    };
    let page = || asset("text/html; charset=utf-8", PAGE);
    Router::new()
        .route(
            "/",
            get(|| async {
                let mut response = respond(StatusCode::FOUND, "text/plain", "see /sre\n");
                response.headers_mut().insert(
                    hyper::header::LOCATION,
                    hyper::header::HeaderValue::from_static("/sre"),
                );
                response
            }),
        )
        .route("/sre", page())
        .route("/product", page())
        .route("/billing", page())
        .route(
            "/assets/app.js",
            asset("text/javascript; charset=utf-8", APP_JS),
        )
        .route("/assets/style.css", asset("text/css; charset=utf-8", STYLE))
        .route(
            "/assets/chart.umd.min.js",
            asset("text/javascript; charset=utf-8", CHART_JS),
        )
        .route(
            "/api/alerts",
            get(|State(app): Shared, headers: HeaderMap, client: Client| async move {
                match access(&app, &headers, client).await {
                    Ok(tenants) => {
                        json_response(StatusCode::OK, &firing_json(&app.firing, &tenants))
                    }
                    Err(refused) => refused,
                }
            }),
        )
        .route(
            "/api/billing/export.csv",
            get(
                |State(app): Shared,
                 headers: HeaderMap,
                 client: Client,
                 Query(query): Params| async move {
                    match access(&app, &headers, client).await {
                        Ok(tenants) => billing_csv(&app, &query, &tenants).await,
                        Err(refused) => refused,
                    }
                },
            ),
        )
        .route(
            "/api/dashboards/{id}",
            get(
                |State(app): Shared,
                 headers: HeaderMap,
                 client: Client,
                 Path(id): Path<String>,
                 Query(query): Params| async move {
                    match access(&app, &headers, client).await {
                        Ok(tenants) => dashboard_data(&app, &id, &query, tenants).await,
                        Err(refused) => refused,
                    }
                },
            ),
        )
        // `/health` and `/health/live` are answered in front of this router
        // (`salestalk_http::probes`).
        .fallback(|| async {
            respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "try /sre, /product, /billing, /api/alerts or /health\n",
            )
        })
        .with_state(app)
}

/// The alerts firing now that `tenants` may see (empty if the evaluator's lock was
/// poisoned): a reader sees only alerts about one of its tenants.
fn firing_now(firing: &Firing, tenants: &Tenants) -> Vec<salestalk_alerting::Notification> {
    let mut alerts = firing
        .lock()
        .map(|alerts| alerts.clone())
        .unwrap_or_default();
    if *tenants != Tenants::All {
        alerts.retain(|alert| {
            alert
                .labels
                .get("tenant_id")
                .is_some_and(|tenant| tenants.allows(tenant))
        });
    }
    alerts
}

fn firing_json(firing: &Firing, tenants: &Tenants) -> Value {
    firing_now(firing, tenants)
        .iter()
        .map(|a| json!({"fingerprint": a.fingerprint(), "summary": a.summary(), "alert": a}))
        .collect()
}

/// Every panel of dashboard `id` for the query's range and tenant, within `tenants`.
async fn dashboard_data(
    app: &App,
    id: &str,
    query: &BTreeMap<String, String>,
    tenants: Tenants,
) -> Response<Full<Bytes>> {
    let Some(dashboard) = app.dashboards.iter().find(|d| d.id == id) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no dashboard '{id}' (sre, product, billing)")}),
        );
    };
    let range = query.get("range").map_or("24h", String::as_str);
    let Some((_, seconds)) = RANGES.iter().find(|(name, _)| *name == range) else {
        return bad_request(format!(
            "range must be one of 1h, 24h, 7d, 30d, not '{range}'"
        ));
    };
    let tenant = query.get("tenant").cloned().unwrap_or_default();
    if !tenant.is_empty() && !tenants.allows(&tenant) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "this key does not read that tenant"}),
        );
    }
    let now = salestalk_operators::time::now_s();
    let scope = PanelRange {
        from: now - seconds,
        to: now,
        tenant,
        tenants,
    };
    // Panels are queried together: most are short, so waiting on them one by one would add
    // up their round trips (ClickHouse runs them side by side).
    let whole = scope.tenants == Tenants::All;
    let panels = join_all(dashboard.panels.iter().map(|panel| async {
        let restricted = !whole && !panel.is_per_tenant();
        let result = match &panel.source {
            _ if restricted => Err("about the whole pipeline: admin keys only".to_string()),
            Source::Sql(sql) => app
                .endpoint
                .query_json(&expand(sql, &scope))
                .await
                .map_err(|e| e.to_string()),
            Source::ActiveAlerts(_) => Ok(active_alerts(&app.firing, &scope.tenants)),
            Source::Lag { .. } => lag(app).await,
        };
        let chart = match panel.chart {
            salestalk_dashboards::Chart::Timeseries => "timeseries",
            salestalk_dashboards::Chart::Bar => "bar",
            salestalk_dashboards::Chart::Stat => "stat",
            salestalk_dashboards::Chart::Table => "table",
        };
        let columns: serde_json::Map<String, serde_json::Value> = panel
            .columns
            .iter()
            .map(|(name, unit)| (name.to_string(), unit.id().into()))
            .collect();
        // The contract's target and alert threshold where they apply (the page draws them).
        let marks: Vec<serde_json::Value> = panel
            .marks
            .iter()
            .map(|mark| {
                json!({
                    "column": mark.column,
                    "comparison": mark.objective.comparison.as_ref(),
                    "target": mark.objective.target,
                    "alert": mark.objective.alert,
                })
            })
            .collect();
        let mut entry = json!({
            "id": panel.id, "title": panel.title, "chart": chart, "unit": panel.unit.id(),
            "columns": columns, "restricted": restricted, "marks": marks,
        });
        match result {
            Ok(result) => entry["result"] = result,
            Err(error) => entry["error"] = error.into(),
        }
        entry
    }))
    .await;
    json_response(
        StatusCode::OK,
        &json!({
            "id": dashboard.id,
            "title": dashboard.title,
            "from": scope.from,
            "to": scope.to,
            "tenant": scope.tenant,
            "tenants": match &scope.tenants {
                Tenants::All => Value::Null,
                Tenants::Only(tenants) => json!(tenants),
            },
            "panels": panels,
        }),
    )
}

/// The alerts firing now, shaped like a ClickHouse result.
fn active_alerts(firing: &Firing, tenants: &Tenants) -> Value {
    let rows: Vec<Value> = firing_now(firing, tenants)
        .iter()
        .map(|a| {
            json!([
                a.rule,
                a.severity.as_ref(),
                a.summary(),
                a.starts_at.to_rfc3339()
            ])
        })
        .collect();
    json!({
        "meta": [{"name": "rule"}, {"name": "severity"}, {"name": "summary"}, {"name": "starts_at"}],
        "data": rows,
        "rows": rows.len(),
    })
}

/// Messages not yet durable per topic: each partition's high watermark (from the brokers)
/// minus its checkpoint (from ClickHouse), shaped like a ClickHouse result.
async fn lag(app: &App) -> Result<Value, String> {
    let checkpoints = app
        .endpoint
        .checkpoints()
        .await
        .map_err(|e| e.to_string())?;
    let next: BTreeMap<String, i64> = checkpoints
        .into_iter()
        .map(|(task, checkpoint, _)| (task, checkpoint.next_offset))
        .collect();
    let kafka = app.settings.kafka.clone();
    let ends = tokio::task::spawn_blocking(move || admin::high_watermarks(&kafka, &kafka.topics))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut per_topic: BTreeMap<String, i64> = BTreeMap::new();
    for ((topic, partition), high) in ends {
        let done = next
            .get(&task_name(&topic, partition))
            .copied()
            .unwrap_or(0);
        *per_topic.entry(topic).or_default() += (high - done).max(0);
    }
    let rows: Vec<Value> = per_topic
        .into_iter()
        .map(|(t, lag)| json!([t, lag]))
        .collect();
    Ok(json!({"meta": [{"name": "label"}, {"name": "value"}], "data": rows, "rows": rows.len()}))
}

/// The month's per-tenant CSV, as `salestalk billing export` writes it, of `tenants` only.
async fn billing_csv(
    app: &App,
    query: &BTreeMap<String, String>,
    tenants: &Tenants,
) -> Response<Full<Bytes>> {
    let month: Month = match query.get("month").map(|m| m.parse()) {
        Some(Ok(month)) => month,
        Some(Err(error)) => return bad_request(error),
        None => return bad_request("month=YYYY-MM is needed".into()),
    };
    let only = match tenants {
        Tenants::All => None,
        Tenants::Only(tenants) => Some(tenants.as_slice()),
    };
    let horizon = app.settings.corrections.horizon_ms;
    let billing = match crate::tools::billing::BillingMonth::read(
        &app.endpoint,
        month,
        only,
        horizon,
    )
    .await
    {
        Ok(billing) => billing,
        Err(error) => {
            return json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": error.to_string()}),
            );
        }
    };
    let mut body = Vec::new();
    if let Err(error) = crate::tools::billing::write_csv(&billing, &mut body) {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": error.to_string()}),
        );
    }
    let mut response = respond(StatusCode::OK, "text/csv; charset=utf-8", body);
    if let Ok(value) = hyper::header::HeaderValue::from_str(&format!(
        "attachment; filename=\"salestalk-billing-{month}.csv\""
    )) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_DISPOSITION, value);
    }
    response
}
