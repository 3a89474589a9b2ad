//! A local S3 that really verifies SigV4 (s3s + s3s-fs), wrapped in a CORS layer so browsers on
//! tenant origins can upload with presigned URLs. Runs inside xtask on a free loopback port.

use std::path::Path;

use anyhow::Result;
use axum::error_handling::HandleError;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

pub struct LocalS3 {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    task: tokio::task::JoinHandle<()>,
}

impl LocalS3 {
    pub async fn start(
        root: &Path,
        bucket: &str,
        access_key_id: &str,
        secret: &str,
    ) -> Result<Self> {
        // s3s-fs maps buckets to directories under its root.
        std::fs::create_dir_all(root.join(bucket))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("local S3: {e:?}"))?;
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(access_key_id, secret));
            b.build()
        };
        let service = HandleError::new(service, |err: s3s::HttpError| async move {
            (http::StatusCode::INTERNAL_SERVER_ERROR, format!("{err:?}"))
        });
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::mirror_request())
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list([http::header::ETAG]))
            .max_age(std::time::Duration::from_secs(600));
        let app = axum::Router::new().fallback_service(service).layer(cors);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("local S3 stopped: {e}");
            }
        });
        Ok(Self {
            endpoint,
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret.to_owned(),
            task,
        })
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
