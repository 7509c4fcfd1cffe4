//! `/v1/admin/*`: a user's sessions (list, revoke all) and the IP block list. Every
//! handler takes [`AdminAuth`] first: the admin bearer token, never a user session.

use actix_web::{HttpResponse, web};
use auth::AuthService;
use cache_core::{BlockReason, Cidr, IpBlock, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{RevokedResponse, SessionListResponse};
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::security::{AdminAuth, Security};

/// Longest block the API accepts with a TTL (ten years); omit `ttl_secs` for a block
/// that lasts until it is lifted.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::InvalidInput("invalid user id".to_owned()))
}

fn security(security: Option<web::Data<Security>>) -> Result<web::Data<Security>, ApiError> {
    security.ok_or_else(|| ApiError::internal("the admin API needs web::Data<Security>"))
}

/// A user's live sessions, most recently used first.
#[utoipa::path(
    get, path = "/v1/admin/users/{id}/sessions", tag = "admin",
    params(("id" = i64, Path, description = "User id (decimal)", minimum = 1)),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Live sessions", body = SessionListResponse),
        (status = 400, description = "Not a user id", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Admin API disabled (no admin token configured)", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn user_sessions(
    _admin: AdminAuth,
    service: web::Data<AuthService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sessions = service.user_sessions(user_id(&id)?).await?;
    Ok(HttpResponse::Ok()
        .json(SessionListResponse { sessions: sessions.into_iter().map(Into::into).collect() }))
}

/// End every session of a user (in every tier and on every instance).
#[utoipa::path(
    delete, path = "/v1/admin/users/{id}/sessions", tag = "admin",
    params(("id" = i64, Path, description = "User id (decimal)", minimum = 1)),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Sessions ended", body = RevokedResponse),
        (status = 400, description = "Not a user id", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Admin API disabled (no admin token configured)", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn revoke_user_sessions(
    _admin: AdminAuth,
    service: web::Data<AuthService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&id)?;
    let revoked = service.revoke_user_sessions(user).await?;
    tracing::info!(user = %user, revoked, "admin ended every session of a user");
    Ok(HttpResponse::Ok().json(RevokedResponse { revoked }))
}

/// One blocked address or range.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IpBlockBody {
    /// `network/prefix`, e.g. `192.0.2.7/32`, `198.51.100.0/24`, `2001:db8::/32`.
    #[schema(example = "198.51.100.0/24")]
    pub net: String,
    /// When the block ends; `null` until lifted.
    pub expires_at: Option<DateTime<Utc>>,
    /// `credential_stuffing`, `token_guessing` or `manual`.
    #[schema(example = "manual")]
    pub reason: String,
    /// When the block was put in place.
    pub created_at: DateTime<Utc>,
}

impl From<IpBlock> for IpBlockBody {
    fn from(b: IpBlock) -> Self {
        Self {
            net: b.net.to_string(),
            expires_at: b.expires_at,
            reason: b.reason.as_str().to_owned(),
            created_at: b.created_at,
        }
    }
}

/// `GET /v1/admin/ip-blocks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IpBlockListResponse {
    /// Active blocks, most recent first.
    pub blocks: Vec<IpBlockBody>,
}

/// `POST /v1/admin/ip-blocks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// An address or a CIDR range (host bits are cleared).
    #[schema(example = "198.51.100.0/24", schema_with = net_schema)]
    pub net: String,
    /// How long the block lasts, in seconds (1 to ten years); omitted or `null`: until
    /// lifted.
    #[schema(minimum = 1, maximum = 315_360_000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub ttl_secs: Option<u64>,
}

/// A whole number as JSON Schema's `integer` counts them: `29523.0` is one (found by
/// the contract check: serde's `u64` refuses it, the documented schema accepts it).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    if let Some(n) = n.as_u64() {
        return Ok(Some(n));
    }
    match n.as_f64() {
        // Below 2^64 and without a fraction: exactly representable as a u64.
        Some(f) if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) => {
            Ok(Some(f as u64))
        }
        _ => Err(serde::de::Error::custom(format!(
            "invalid value: {n}, expected a whole number of seconds"
        ))),
    }
}

/// `DELETE /v1/admin/ip-blocks?net=...`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockQuery {
    /// The blocked address or range, exactly as listed.
    pub net: String,
}

/// An IPv4 address of `Ipv4Addr::from_str` (no leading zeros).
const IPV4: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}";

/// What [`Cidr`] parses, as far as a portable schema spells it: an IPv4 or IPv6
/// address, or an IPv4 range `a.b.c.d/0..32`. IPv6 ranges (`2001:db8::/32`) are accepted
/// too; every compressed and IPv4-embedding IPv6 form followed by a prefix makes a
/// pattern nobody could check, so the description says it instead. What the schema
/// admits, the server accepts.
pub fn net_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let format = |f| {
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(f)))
    };
    OneOfBuilder::new()
        .item(format(KnownFormat::Ipv4))
        .item(format(KnownFormat::Ipv6))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^{IPV4}/(?:3[0-2]|[12]?[0-9])$"))),
        )
        .description(Some(
            "An IPv4 or IPv6 address, or an IPv4 range (`198.51.100.0/24`). IPv6 ranges \
             (`2001:db8::/32`) are accepted too, though this schema does not spell them.",
        ))
        .into()
}

fn cidr(raw: &str) -> Result<Cidr, ApiError> {
    raw.parse()
        .map_err(|e: cache_core::abuse::InvalidCidr| ApiError::InvalidInput(format!("net: {e}")))
}

/// The active IP blocks.
#[utoipa::path(
    get, path = "/v1/admin/ip-blocks", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Active blocks", body = IpBlockListResponse),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Admin API disabled (no admin token configured)", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn list_blocks(
    _admin: AdminAuth,
    security: Option<web::Data<Security>>,
) -> Result<HttpResponse, ApiError> {
    let blocks = self::security(security)?.abuse().active_blocks().await?;
    Ok(HttpResponse::Ok()
        .json(IpBlockListResponse { blocks: blocks.into_iter().map(Into::into).collect() }))
}

/// Block an address or a range, on every instance (within a second) and across
/// restarts. Replaces any block of exactly that range.
#[utoipa::path(
    post, path = "/v1/admin/ip-blocks", tag = "admin",
    request_body = BlockRequest,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Blocked", body = IpBlockBody),
        (status = 400, description = "Not an address or range, or a TTL out of range", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Admin API disabled (no admin token configured)", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn block(
    _admin: AdminAuth,
    security: Option<web::Data<Security>>,
    body: JsonObject<BlockRequest>,
) -> Result<HttpResponse, ApiError> {
    let net = cidr(&body.net)?;
    let ttl = match body.ttl_secs {
        Some(secs) if !(1..=MAX_TTL_SECS).contains(&secs) => {
            return Err(ApiError::InvalidInput(format!(
                "ttl_secs: must be between 1 and {MAX_TTL_SECS} (omit it to block until lifted)"
            )));
        }
        secs => secs.map(std::time::Duration::from_secs),
    };
    let block = self::security(security)?.abuse().block(net, ttl, BlockReason::Manual).await?;
    tracing::warn!(net = %block.net, expires_at = ?block.expires_at, "admin blocked an address range");
    Ok(HttpResponse::Created().json(IpBlockBody::from(block)))
}

/// Lift the block of exactly this address or range (and, for one address, reset its
/// rate-limit counters).
#[utoipa::path(
    delete, path = "/v1/admin/ip-blocks", tag = "admin",
    params(("net" = String, Query, description = "The blocked address or range")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Lifted"),
        (status = 400, description = "Not an address or range", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such block, or admin API disabled", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn unblock(
    _admin: AdminAuth,
    security: Option<web::Data<Security>>,
    query: web::Query<UnblockQuery>,
) -> Result<HttpResponse, ApiError> {
    let net = cidr(&query.net)?;
    if !self::security(security)?.abuse().unblock(&net).await? {
        return Err(ApiError::NotFound);
    }
    tracing::warn!(net = %net, "admin lifted an address block");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_secs_is_any_whole_number() {
        let ttl = |body: &str| {
            serde_json::from_str::<BlockRequest>(body)
                .map(|b| b.ttl_secs)
                .map_err(|e| e.to_string())
        };
        assert_eq!(ttl(r#"{"net": "192.0.2.1"}"#), Ok(None));
        assert_eq!(ttl(r#"{"net": "192.0.2.1", "ttl_secs": null}"#), Ok(None));
        assert_eq!(ttl(r#"{"net": "192.0.2.1", "ttl_secs": 60}"#), Ok(Some(60)));
        assert_eq!(ttl(r#"{"net": "192.0.2.1", "ttl_secs": 29523.0}"#), Ok(Some(29523)));
        assert_eq!(ttl(r#"{"net": "192.0.2.1", "ttl_secs": 6e2}"#), Ok(Some(600)));
        for bad in ["1.5", "-1", "-1.0", "1e30", "\"60\"", "true"] {
            let body = format!(r#"{{"net": "192.0.2.1", "ttl_secs": {bad}}}"#);
            assert!(ttl(&body).is_err(), "{bad}");
        }
        // The documented maximum is the enforced one.
        assert_eq!(MAX_TTL_SECS, 315_360_000);
    }
}
