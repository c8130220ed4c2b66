//! What every request passes before any handler sees it: its URL's escapes must decode to UTF-8,
//! its query may name only the parameters its endpoint documents, and its body must keep arriving.
//!
//! - **URL escapes.** actix-web and `serde_urlencoded` decode `%xx` escapes that are not UTF-8 by
//!   replacing them with U+FFFD, so `/v1/consent/%ff` and `/v1/consent/%fe` would name the same
//!   subject. A path or query whose escapes do not decode to UTF-8 is refused with 400
//!   `invalid_utf8`, as bodies that are not UTF-8 are.
//! - **Query parameters.** An API endpoint (`/v1/…`, `/personalizer/…`) documented in
//!   `/openapi.json` takes the query parameters its description lists and no other: a misspelt or
//!   unknown one is refused with 400 `invalid_query` naming it (in Azure's error shape on the
//!   Personalizer routes), where the endpoints without query parameters used to pass it over
//!   unnoticed. The SDK's files, health and metrics pass over any query (a cache buster).
//! - **Stalled bodies.** actix-web times out a request's head, not its body: a client that announces
//!   50 kB and sends three bytes holds its connection open for as long as it likes. Each request's
//!   body must deliver its next bytes within the idle timeout ([`crate::app::Settings`]); a body
//!   that stalls longer fails, and the answer is 408 `request_timeout` (in Azure's error shape on the
//!   Personalizer routes), after which the connection closes. A request without a body is not
//!   wrapped; the timer is armed only while a read waits.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_core::Stream;
use lethe_collect::ApiError;
use lethe_decide::personalizer_api::PersonalizerError;

use crate::app::Routes;

/// How long a request's body may go without delivering bytes, unless the settings say otherwise.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

type Answer = Pin<Box<dyn Future<Output = Result<ServiceResponse, actix_web::Error>>>>;

/// Where a body that stalled is kept once it failed: until its 408 is written.
type Stalled = Rc<RefCell<Option<Payload>>>;

/// The middleware (`App::wrap_fn`): refuses URLs whose escapes are not UTF-8 and query parameters
/// the endpoint does not document, and bounds how long the body may stall.
pub(crate) fn request<S>(mut req: ServiceRequest, srv: &S, idle: Duration, routes: &Routes) -> Answer
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = actix_web::Error>,
    S::Future: 'static,
{
    if !escapes_are_utf8(req.path()) || !escapes_are_utf8(req.query_string()) {
        let refused = ApiError::bad_request(
            "invalid_utf8",
            "the URL's path or query holds %-escapes that do not decode to UTF-8",
        );
        let res = req.into_response(refused.error_response());
        return Box::pin(async move { Ok(res) });
    }
    let azure = req.path().starts_with("/personalizer/");
    if let Some(refused) = undocumented_query(&req, routes) {
        let res = req.into_response(refusal(azure, &refused));
        return Box::pin(async move { Ok(res) });
    }
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return Box::pin(srv.call(req));
    }
    let stalled: Stalled = Rc::default();
    let limited: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(IdleLimited { inner: payload, idle, timer: None, stalled: Rc::clone(&stalled) });
    req.set_payload(Payload::from(limited));
    let fut = srv.call(req);
    Box::pin(async move {
        let res = fut.await?;
        let Some(body) = stalled.borrow_mut().take() else { return Ok(res) };
        let error = ApiError::new(
            408,
            "request_timeout",
            format!("the request body stalled for more than {} ms", idle.as_millis()),
        );
        let mut answer =
            refusal(azure, &error).map_body(|_, json| Closing { json, _stalled: body }).map_into_boxed_body();
        answer.head_mut().set_connection_type(ConnectionType::Close);
        Ok(res.into_response(answer))
    })
}

/// `error` as answered on its route: in Azure's shape on the Personalizer routes, Lethe's elsewhere.
fn refusal(azure: bool, error: &ApiError) -> actix_web::HttpResponse {
    if azure {
        PersonalizerError(error.clone()).error_response()
    } else {
        error.error_response()
    }
}

/// The refusal of a query that names a parameter its API endpoint does not document.
fn undocumented_query(req: &ServiceRequest, routes: &Routes) -> Option<ApiError> {
    let (path, query) = (req.path(), req.query_string());
    if query.is_empty() || !(path.starts_with("/v1/") || path.starts_with("/personalizer/")) {
        return None;
    }
    let (unknown, takes) = routes.unknown_query(req.method().as_str(), path, query)?;
    let takes = if takes.is_empty() { "none".to_owned() } else { format!("`{}`", takes.join("`, `")) };
    Some(ApiError::bad_request(
        "invalid_query",
        format!("unknown query parameter `{}`: this endpoint takes {takes}", unknown.join("`, `")),
    ))
}

/// Whether every `%xx` escape of `s` (already ASCII: a URI holds no other bytes) decodes, with the
/// bytes around it, to UTF-8. A `%` not followed by two hex digits is a literal `%`, as the
/// decoders of actix-web and `serde_urlencoded` take it.
fn escapes_are_utf8(s: &str) -> bool {
    !s.contains('%') || percent_encoding::percent_decode_str(s).decode_utf8().is_ok()
}

/// A body that fails once it waited for more than `idle` for its next bytes. The timer is armed
/// when a read has to wait and disarmed when bytes (or the end) arrive.
struct IdleLimited {
    inner: Payload,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Takes `inner` when it stalled.
    stalled: Stalled,
}

impl Stream for IdleLimited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let timed_out =
            || PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body stalled"));
        if this.stalled.borrow().is_some() {
            return Poll::Ready(Some(Err(timed_out())));
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            this.timer = None;
            return Poll::Ready(item);
        }
        let idle = this.idle;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Kept, unread, until the 408 is written: actix then closes the connection instead of
        // draining a body that may never come (it would drain a chunked one it saw dropped).
        *this.stalled.borrow_mut() = Some(std::mem::replace(&mut this.inner, Payload::None));
        Poll::Ready(Some(Err(timed_out())))
    }
}

/// The 408's body: its JSON, and the stalled request body, held until the answer is written.
struct Closing {
    json: BoxBody,
    _stalled: Payload,
}

impl MessageBody for Closing {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.json.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().json).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_to_utf8_or_are_refused() {
        for ok in ["", "/v1/decide", "/v1/consent/caf%C3%A9", "anonymousId=a%20b&count=5", "a=%", "a=%zz", "100%"] {
            assert!(escapes_are_utf8(ok), "{ok}");
        }
        for bad in ["/v1/consent/%ff", "/v1/consent/%C0", "anonymousId=%fe", "a=%C3", "x=%ED%A0%80"] {
            assert!(!escapes_are_utf8(bad), "{bad}");
        }
    }
}
