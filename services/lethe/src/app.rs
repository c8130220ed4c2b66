//! The HTTP application: binds a listener (port 0 allowed), serves the routes, stops on demand.

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpResponse, HttpServer};
use lethe_collect::CollectState;
use lethe_decide::DecideState;
use lethe_eventlog::EventStore;
use lethe_privacy::Privacy;
use serde_json::json;

/// What the HTTP application needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST:PORT`; port 0 picks a free port.
    pub listen: String,
    pub workers: usize,
    /// The parts of Lethe this process serves (health, metrics and the API description always).
    pub parts: Vec<Part>,
    /// The consent SDK's settings (always served) and whether the demo shop is.
    pub web: lethe_web::WebOptions,
    /// How long a request's body may go without delivering bytes before the request fails with
    /// 408 ([`crate::guard`]).
    pub body_idle_timeout: std::time::Duration,
}

/// A part of the API that a process can serve on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The consent ledger and behavior ingestion.
    Collect,
    /// Subject rights, the request log and the DPO's audit trail.
    Privacy,
    /// Decisions for the CMS, outcomes, recommendations and the Personalizer-compatible API.
    Decide,
}

impl Part {
    /// Every part.
    pub const ALL: [Part; 3] = [Part::Collect, Part::Privacy, Part::Decide];
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            workers: 2,
            parts: Part::ALL.to_vec(),
            web: lethe_web::WebOptions::default(),
            body_idle_timeout: crate::guard::BODY_IDLE_TIMEOUT,
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub collect: CollectState,
    pub privacy: Option<Arc<Privacy>>,
    pub decide: Option<Arc<DecideState>>,
    pub parts: Vec<Part>,
}

/// A bound, not yet running, HTTP application.
pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listener and builds the server. The privacy part is served when `privacy` is given
    /// and the settings list it.
    ///
    /// # Errors
    /// The address does not parse or cannot be bound.
    pub fn build(settings: &Settings, collect: CollectState, privacy: Option<Arc<Privacy>>) -> anyhow::Result<Self> {
        Self::build_with_decisions(settings, collect, privacy, None)
    }

    /// [`Application::build`], also serving decisions when `decide` is given and the settings list
    /// [`Part::Decide`].
    ///
    /// # Errors
    /// The address does not parse or cannot be bound.
    pub fn build_with_decisions(
        settings: &Settings,
        collect: CollectState,
        privacy: Option<Arc<Privacy>>,
        decide: Option<Arc<DecideState>>,
    ) -> anyhow::Result<Self> {
        let decide = decide.filter(|_| settings.parts.contains(&Part::Decide));
        // The SDK waits for a slot as long as the mounted decision service may take, and no more.
        let slots: Vec<lethe_web::SlotTiming> = decide
            .iter()
            .flat_map(|d| d.engine.slots.all())
            .map(|s| lethe_web::SlotTiming {
                id: s.id.clone(),
                deadline: s.deadline,
                default_variant: s.default_variant().id.clone(),
            })
            .collect();
        let web_state = web::Data::new(lethe_web::WebState::new(&collect, &settings.web, &slots)?);
        let demo = settings.web.demo;
        let listener = TcpListener::bind(&settings.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            store: Arc::clone(&collect.store),
            collect: collect.clone(),
            privacy: privacy.clone(),
            decide: decide.clone(),
            parts: settings.parts.clone(),
        });
        let decide = decide.map(web::Data::from);
        let collect = web::Data::new(collect);
        let with_collect = settings.parts.contains(&Part::Collect);
        let privacy = privacy.filter(|_| settings.parts.contains(&Part::Privacy)).map(web::Data::from);
        let idle = settings.body_idle_timeout;
        let routes = web::Data::new(Routes::of(&openapi(&state.served_parts())));
        let server =
            HttpServer::new(move || {
                App::new()
                    .wrap_fn({
                        let routes = routes.clone().into_inner();
                        move |req, srv| crate::guard::request(req, srv, idle, &routes)
                    })
                    .wrap_fn(cors)
                    .wrap(ErrorHandlers::new().default_handler(json_errors))
                    .app_data(state.clone())
                    .app_data(collect.clone())
                    // The decision routes first: actix-web tries the routes in order, and `/v1/decide` is
                    // the busiest (no other route's pattern overlaps theirs).
                    .configure(|cfg| {
                        if let Some(d) = &decide {
                            cfg.app_data(d.clone());
                            lethe_decide::configure(cfg);
                        }
                    })
                    .configure(|cfg| {
                        if let Some(p) = &privacy {
                            cfg.app_data(p.clone());
                            lethe_privacy::configure(cfg);
                        }
                    })
                    // Bodies are read as bytes and checked by each endpoint against its own limit.
                    .app_data(web::PayloadConfig::new(4 * lethe_collect::MAX_BATCH_BYTES))
                    // A query string that does not fit its endpoint says why (unknown or repeated
                    // parameter, a value of the wrong type), as a body that does not fit does.
                    .app_data(web::QueryConfig::default().error_handler(|e, _| {
                        lethe_collect::ApiError::bad_request("invalid_query", e.to_string()).into()
                    }))
                    .route("/healthz", web::get().to(healthz))
                    .route("/readyz", web::get().to(readyz))
                    .route("/metrics", web::get().to(metrics))
                    .route("/openapi.json", web::get().to(openapi_json))
                    .app_data(web_state.clone())
                    .configure(lethe_web::configure)
                    .configure(|cfg| {
                        if demo {
                            lethe_web::configure_demo(cfg);
                        }
                    })
                    .configure(|cfg| {
                        if with_collect {
                            lethe_collect::configure(cfg);
                        }
                    })
                    .app_data(routes.clone())
                    .default_service(web::to(not_found))
            })
            .workers(settings.workers.max(1))
            .listen(listener)?
            .run();
        Ok(Self { port, server })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server, to be awaited by a caller that runs its own actix system.
    pub fn into_server(self) -> Server {
        self.server
    }

    /// Runs until the server is stopped (Ctrl-C or SIGTERM).
    ///
    /// # Errors
    /// Server errors.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// CORS for browsers calling the API from a site. A preflight is answered for any origin: it carries
/// no credentials and decides nothing. The actual request is authorized by its token, whose origin
/// list it must match (a site token used from another origin gets 403); only an authorized answer
/// carries `Access-Control-Allow-Origin`, so a page on another origin cannot read anything.
fn cors<S>(req: ServiceRequest, srv: &S) -> Pin<Box<dyn Future<Output = Result<ServiceResponse, actix_web::Error>>>>
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = actix_web::Error>,
    S::Future: 'static,
{
    let origin = req.headers().get(header::ORIGIN).cloned();
    if let (true, Some(origin)) = (req.method() == Method::OPTIONS, &origin) {
        let res = req.into_response(
            HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, PUT, DELETE"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type, sec-gpc"))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .insert_header((header::VARY, "Origin"))
                .finish(),
        );
        return Box::pin(async move { Ok(res) });
    }
    let fut = srv.call(req);
    Box::pin(async move {
        let mut res = fut.await?;
        if let Some(origin) = origin {
            let status = res.status();
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                res.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
        Ok(res)
    })
}

/// Errors raised by actix itself (unknown method, body over the transport limit, …) get the same JSON
/// shape, with a stable code, as the errors of the handlers.
fn json_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        s if s >= 500 => "internal",
        _ => "request_refused",
    };
    let (req, _) = res.into_parts();
    let body = HttpResponse::build(status)
        .json(json!({ "code": code, "message": status.canonical_reason().unwrap_or("error").to_lowercase() }));
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, body).map_into_right_body()))
}

/// The service's own endpoints; [`openapi`] merges in those of every mounted part.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Lethe", description = "Privacy-first, event-sourced personalization"),
    paths(healthz, readyz, metrics, openapi_json)
)]
struct ServiceDoc;

/// The API description of a process serving `parts`, generated from the handlers.
pub fn openapi(parts: &[Part]) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = ServiceDoc::openapi();
    doc.merge(lethe_web::ApiDoc::openapi());
    if parts.contains(&Part::Collect) {
        doc.merge(lethe_collect::ApiDoc::openapi());
    }
    if parts.contains(&Part::Privacy) {
        doc.merge(lethe_privacy::ApiDoc::openapi());
    }
    if parts.contains(&Part::Decide) {
        doc.merge(lethe_decide::ApiDoc::openapi());
    }
    doc
}

#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, description = "this document", body = Object)))]
async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(openapi(&state.served_parts()))
}

impl AppState {
    /// The parts whose routes are mounted: those asked for whose state was given.
    fn served_parts(&self) -> Vec<Part> {
        let given =
            |p: &Part| (*p != Part::Privacy || self.privacy.is_some()) && (*p != Part::Decide || self.decide.is_some());
        self.parts.iter().copied().filter(given).collect()
    }
}

#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "the process is up", body = Object)))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, description = "the log takes writes", body = Object), (status = 503, description = "the log stopped taking writes", body = Object)))]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.store.writable() {
        HttpResponse::Ok().json(json!({ "status": "ready", "log_head": state.store.head().0 }))
    } else {
        HttpResponse::ServiceUnavailable().json(
            json!({ "code": "log_not_writable", "message": "the event log stopped accepting writes: restart lethe; if it still refuses, run `lethe log verify`" }),
        )
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.collect.metrics.render();
    body.push_str(&format!("# TYPE lethe_log_head gauge\nlethe_log_head {}\n", state.store.head().0));
    if let Some(n) = state.store.runs_waiting_for_index() {
        body.push_str(&format!(
            "# HELP lethe_log_runs_waiting_for_index Receipts written but not yet in the stream index \
             (bounded by --max-unindexed-runs; read back at every start).\n\
             # TYPE lethe_log_runs_waiting_for_index gauge\nlethe_log_runs_waiting_for_index {n}\n"
        ));
    }
    if let Some(i) = state.store.waiting_runs_indexed() {
        body.push_str(&format!(
            "# HELP lethe_log_waiting_runs_indexed_total Receipts indexed after waiting (since start).\n\
             # TYPE lethe_log_waiting_runs_indexed_total counter\nlethe_log_waiting_runs_indexed_total {}\n\
             # HELP lethe_log_waiting_runs_index_entries_total Index entries written for them: a subject's waiting \
             receipts share one, so fewer entries a receipt is what waiting saves.\n\
             # TYPE lethe_log_waiting_runs_index_entries_total counter\n\
             lethe_log_waiting_runs_index_entries_total {}\n",
            i.runs, i.entries
        ));
    }
    if let Some(p) = &state.privacy {
        body.push_str(&lethe_privacy::schedule::metrics(p));
    }
    if let Some(d) = &state.decide {
        let (position, failed) = d.engine.views().with(|p| (p.position().0, p.stats().failed));
        body.push_str(&format!(
            "# HELP lethe_feature_views_position The last log position the feature views applied: they follow \
             lethe_log_head every second, reading at a low CPU priority, so under a sustained overload they fall \
             behind and catch up once it ends.\n\
             # TYPE lethe_feature_views_position gauge\nlethe_feature_views_position {}\n",
            position
        ));
        body.push_str(&format!(
            "# HELP lethe_feature_views_failed_events_total Events whose application to the feature views panicked \
             (a defect): passed over, with their subjects' features dropped until their next grant. The log says \
             where.\n\
             # TYPE lethe_feature_views_failed_events_total counter\nlethe_feature_views_failed_events_total {}\n",
            failed
        ));
        body.push_str(&d.engine.metrics());
        body.push_str(&lethe_personalize::drift::drift_metrics(d.engine.personalizer(), d.engine.views()));
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}

/// The documented endpoints' paths (`{param}` segments match any one segment), each with its
/// methods and the query parameters each method takes: what tells a wrong method (405) from an
/// unknown path (404), and an unknown query parameter from a documented one.
#[derive(Debug)]
pub(crate) struct Routes(Vec<(Vec<String>, Vec<Operation>)>);

/// A documented method of a path, with the query parameters it takes.
type Operation = (&'static str, Vec<String>);

impl Routes {
    fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc.paths.paths.iter().map(|(path, item)| {
            let methods = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            let methods = methods
                .into_iter()
                .filter_map(|(m, op)| {
                    let query = op
                        .as_ref()?
                        .parameters
                        .iter()
                        .flatten()
                        .filter(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
                    Some((m, query.map(|p| p.name.clone()).collect()))
                })
                .collect();
            (path.split('/').map(str::to_owned).collect(), methods)
        });
        Self(routes.collect())
    }

    /// The documented operations whose path pattern `path` matches.
    fn matching<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Operation> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter(move |(pattern, _)| {
                pattern.len() == segments.len()
                    && pattern.iter().zip(&segments).all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
            })
            .flat_map(|(_, methods)| methods)
    }

    /// The methods `path` takes, if it is a documented endpoint's.
    fn allowed(&self, path: &str) -> Option<String> {
        let mut methods: Vec<&str> = self.matching(path).map(|(m, _)| *m).collect();
        methods.sort_unstable();
        methods.dedup();
        (!methods.is_empty()).then(|| methods.join(", "))
    }

    /// The parameters of `query` that the documented operation `method` `path` does not take, and
    /// those it takes; `None` when it takes them all, or when no documented operation is asked.
    pub(crate) fn unknown_query(&self, method: &str, path: &str, query: &str) -> Option<(Vec<String>, Vec<String>)> {
        let asked: Vec<&Operation> = self.matching(path).filter(|(m, _)| *m == method).collect();
        if asked.is_empty() {
            return None;
        }
        let mut takes: Vec<String> = asked.iter().flat_map(|(_, q)| q.iter().cloned()).collect();
        takes.sort_unstable();
        takes.dedup();
        let mut unknown: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .map(|(name, _)| name.into_owned())
            .filter(|name| !takes.contains(name))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        (!unknown.is_empty()).then_some((unknown, takes))
    }
}

/// Answers what no route took: 405 with `Allow` for a documented path asked with another method,
/// 404 otherwise.
async fn not_found(req: actix_web::HttpRequest, routes: web::Data<Routes>) -> HttpResponse {
    if let Some(allow) = routes.allowed(req.path()) {
        return HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow.clone())).json(json!({
            "code": "method_not_allowed",
            "message": format!("this endpoint takes {allow}"),
        }));
    }
    HttpResponse::NotFound().json(json!({ "code": "not_found", "message": "no such endpoint" }))
}
