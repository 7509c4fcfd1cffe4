//! [`RequireSession`]: middleware that lets only requests with a valid session through.
//!
//! Wrap a scope of any actix-web app that shares the stores (with `web::Data<AuthService>`
//! in its app data, see [`crate::extract`]): requests without a valid session get
//! `401 {"error":{"code":"unauthenticated",...}}` and never reach a handler; the others
//! carry a [`CurrentUser`] in their extensions, which the extractor picks up for free.

use std::rc::Rc;

use actix_web::Error;
use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use futures::future::{LocalBoxFuture, Ready, ready};

use crate::extract::CurrentUser;

/// Middleware factory: `web::scope("/app").wrap(RequireSession)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequireSession;

impl<S, B> Transform<S, ServiceRequest> for RequireSession
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequireSessionMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireSessionMiddleware { service: Rc::new(service) }))
    }
}

/// The service [`RequireSession`] wraps around the inner one.
pub struct RequireSessionMiddleware<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for RequireSessionMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            // Stores the result in the request's extensions on success. A refusal is a
            // response, not an error, so that the middlewares around this one see it.
            match CurrentUser::authenticate(req.request()).await {
                Ok(_) => Ok(service.call(req).await?.map_into_left_body()),
                Err(e) => Ok(req.error_response(e).map_into_right_body()),
            }
        })
    }
}
