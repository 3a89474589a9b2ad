//! A tenant's own settings (`/v1/tenant`), custom domains (`/v1/tenant/domains`, verified
//! through DNS-over-HTTPS) and usage (`/v1/usage`).

use crate::cx::Member;
use crate::error::{ApiError, Code};
use crate::ports::Platform;
use crate::reply::Reply;

pub async fn get<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn update<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn domains<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn add_domain<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn verify_domain<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn remove_domain<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn usage<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}
