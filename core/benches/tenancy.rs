//! Host → tenant target, the work every request does before any I/O.
#![allow(clippy::unwrap_used)] // Benchmark set-up, not a request path.
use criterion::{criterion_group, criterion_main, Criterion};
use edgefront_core::config::DEFAULT_RESERVED;
use edgefront_core::tenancy::{classify, request_host};
use http::{header, HeaderMap, HeaderValue, Uri};
use std::hint::black_box;

fn host_resolution(c: &mut Criterion) {
    let reserved: Vec<String> = DEFAULT_RESERVED.iter().map(|s| s.to_string()).collect();
    let uri = Uri::from_static("/v1/catalog");
    let mut g = c.benchmark_group("host_resolution");
    for host in [
        "acme.example.com:443",
        "shop.acme-store.co.uk",
        "www.example.com",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        g.bench_function(host, |b| {
            b.iter(|| {
                let h = request_host(black_box(&headers), &uri, false);
                h.map(|h| classify(&h, "example.com", &reserved).is_ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, host_resolution);
criterion_main!(benches);
