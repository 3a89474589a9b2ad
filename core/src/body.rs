//! Response bodies: whole, or streamed (server-sent events) with the work that produces them.

use bytes::{Bytes, BytesMut};
use futures_channel::mpsc;
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;

pub enum Body<'a> {
    Full(Bytes),
    /// `chunks` arrive as `driver` produces them. The adapter must drive `driver` to completion
    /// even when the client goes away (then `chunks` is dropped, and the driver notices and
    /// finishes its bookkeeping, such as releasing quota): on Workers through `waitUntil`, on
    /// Spin by polling it beside the body writer.
    Stream {
        chunks: mpsc::UnboundedReceiver<Bytes>,
        driver: LocalBoxFuture<'a, ()>,
    },
}

impl Body<'_> {
    pub fn empty() -> Self {
        Self::Full(Bytes::new())
    }

    /// Runs the driver and gathers every chunk (tests, and runtimes that cannot stream).
    pub async fn collect(self) -> Bytes {
        match self {
            Self::Full(b) => b,
            Self::Stream { chunks, driver } => {
                let gather = chunks.fold(BytesMut::new(), |mut acc, c| async move {
                    acc.extend_from_slice(&c);
                    acc
                });
                let ((), all) = futures_util::future::join(driver, gather).await;
                all.freeze()
            }
        }
    }
}

impl From<Bytes> for Body<'_> {
    fn from(b: Bytes) -> Self {
        Self::Full(b)
    }
}
