//! The platform API on the platform host (`/v1/platform/tenants`, platform admins only) and
//! self-service sign-up (`/v1/signup`).

mod purge;

pub use purge::purge_prefix;

use crate::cx::{Account, PlatformAdmin};
use crate::error::{ApiError, Code};
use crate::ports::Platform;
use crate::reply::Reply;

pub async fn create<P: Platform>(_cx: PlatformAdmin<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn list<P: Platform>(_cx: PlatformAdmin<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn get<P: Platform>(_cx: PlatformAdmin<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn update<P: Platform>(_cx: PlatformAdmin<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn delete<P: Platform>(_cx: PlatformAdmin<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn signup<P: Platform>(_cx: Account<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}
