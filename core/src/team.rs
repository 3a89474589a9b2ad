//! The team: a tenant's members and their roles, and invitations (`/v1/members`,
//! `/v1/invitations/{token}/accept`). Membership lives in `tenant_members`; every change here
//! forgets the member's cached role, so it applies from the next request.

use crate::cx::{Member, SignedIn};
use crate::error::{ApiError, Code};
use crate::ports::Platform;
use crate::reply::Reply;

pub async fn list<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn invitations<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn invite<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn revoke<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn update<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn remove<P: Platform>(_cx: Member<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}

pub async fn accept<P: Platform>(_cx: SignedIn<'_, P>) -> Result<Reply, ApiError> {
    Err(ApiError::new(Code::Misconfigured, "not implemented yet"))
}
