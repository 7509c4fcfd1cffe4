//! [`CurrentUser`]: an actix-web extractor that requires a valid session.
//!
//! Any actix-web app that shares the stores can use it: put an [`auth::AuthService`] in
//! the app data as `web::Data<AuthService>` (and the deployment's
//! [`CookiePolicy`] as `web::Data<CookiePolicy>`; without it the secure `__Host-session`
//! cookie is expected), then take `CurrentUser` as a handler argument. A request without a
//! valid session is answered `401 {"error":{"code":"unauthenticated",...}}` before the
//! handler runs. `Option<CurrentUser>` makes the session optional.
//!
//! Validation includes sliding renewal. When [`crate::middleware::RequireSession`] already
//! validated the request, the extractor reuses its result instead of asking the stores again.
//! Without the middleware, the extractor hands its result to the handler without keeping a
//! copy: take one `CurrentUser` per handler.
//!
//! [`JsonObject`] is the JSON body extractor of every handler: `web::Json` that accepts
//! only a JSON object.

use std::future::{Ready, ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use auth::{AuthError, AuthService, Authenticated, ClientInfo, UserId};
use futures::future::{Either, LocalBoxFuture};

use crate::cookies::CookiePolicy;
use crate::error::ApiError;

/// The user and session of an authenticated request.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Authenticated);

impl CurrentUser {
    /// The user's profile.
    pub fn user(&self) -> &auth::User {
        &self.0.user
    }

    /// The session making the request (after renewal, if it was renewed).
    pub fn session(&self) -> &auth::Session {
        &self.0.session
    }

    /// The validation result, as the flows take it.
    pub fn authenticated(&self) -> &Authenticated {
        &self.0
    }

    /// Validates the session cookie of `req`: the work behind the extractor and the
    /// middleware. The result is also stored in the request's extensions, where the
    /// extractor finds it.
    pub async fn authenticate(req: &HttpRequest) -> Result<CurrentUser, ApiError> {
        if let Some(found) = req.extensions().get::<CurrentUser>() {
            return Ok(found.clone());
        }
        let found = Self::validate(req).await?;
        req.extensions_mut().insert(found.clone());
        Ok(found)
    }

    /// Validates the session cookie of `req` and marks the request with its user
    /// ([`SessionUser`]), without keeping a copy of the result.
    async fn validate(req: &HttpRequest) -> Result<CurrentUser, ApiError> {
        let service = req.app_data::<web::Data<AuthService>>().cloned().ok_or_else(|| {
            ApiError::internal("CurrentUser needs web::Data<AuthService> in the app data")
        })?;
        let policy = cookie_policy(req);
        let token = policy.read(req).ok_or(AuthError::Unauthenticated)?;
        let found = match service.validate(&token, &client_info(req)).await {
            Ok(found) => CurrentUser(found),
            // A dead cookie: cleared in the answer, so the browser stops sending it.
            Err(AuthError::Unauthenticated) => return Err(ApiError::SessionEnded(policy)),
            Err(e) => return Err(e.into()),
        };
        req.extensions_mut().insert(SessionUser(found.user.id));
        Ok(found)
    }
}

/// The user whose session a request carried, in the request's extensions once the
/// session was validated (by [`CurrentUser`] or [`crate::middleware::RequireSession`]):
/// what the HTTP metrics middleware reads to mark the user active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionUser(pub UserId);

impl Deref for CurrentUser {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        if let Some(found) = req.extensions().get::<CurrentUser>() {
            return Either::Left(ready(Ok(found.clone())));
        }
        // Validated here for this handler alone: the result is moved to it, not copied
        // into the extensions (the middleware stores it, for the extractor to reuse).
        let req = req.clone();
        Either::Right(Box::pin(async move { CurrentUser::validate(&req).await }))
    }
}

/// The deployment's cookie policy from the app data, or the secure default.
pub fn cookie_policy(req: &HttpRequest) -> CookiePolicy {
    req.app_data::<web::Data<CookiePolicy>>().map(|p| *p.get_ref()).unwrap_or_default()
}

/// The client's user agent and address. The address is the TCP peer (a trusted-proxy
/// policy for `X-Forwarded-For` is not configured yet).
pub fn client_info(req: &HttpRequest) -> ClientInfo {
    ClientInfo {
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ip: req.peer_addr().map(|a| a.ip()),
    }
}

/// A JSON request body that must be an object: `web::Json<T>` (same `JsonConfig`: size
/// limit, content type, error mapping), except that a top-level array is refused.
/// serde's derived structs also deserialize from a sequence of their fields in order
/// (`[true]` for `{"keep_current": true}`), a form the API does not document and must
/// not accept: the body is read as a map first, then into `T`.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for JsonObject<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let map =
            web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, payload);
        Box::pin(async move {
            let map = map.await?.into_inner();
            // Only data errors are left (missing, unknown or mistyped fields): the same
            // `invalid_input` answer `web::Json<T>` gives them.
            serde_json::from_value(serde_json::Value::Object(map)).map(JsonObject).map_err(|e| {
                ApiError::InvalidInput(crate::error::strip_position(&e.to_string())).into()
            })
        })
    }
}
