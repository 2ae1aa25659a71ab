//! Every resource bound of the proxy, in one documented place. Each is enforced on the byte
//! stream or the connection as it happens, never after buffering.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted from an upstream, checked while it streams in (default 4 MiB,
    /// the size docker/distribution itself caps manifests at).
    pub manifest_max_bytes: u64,
    /// Concurrent client connections across every listener; further connections wait in the
    /// accept queue.
    pub max_connections: usize,
    /// Concurrent connections from one client address; more are closed at once, so one host
    /// cannot take every slot. Raise it when trustgate sits behind a load balancer or NAT that
    /// presents every client as one address.
    pub max_connections_per_peer: usize,
    /// Concurrent requests (streams) on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Bytes of manifests being read from upstreams at once, across every request (each
    /// read reserves its announced length, or `manifest_max_bytes` when none is announced).
    /// A read that cannot reserve within the upstream's request timeout is a 503: memory
    /// stays bounded however many clients ask at once.
    pub max_buffered_bytes: u64,
    /// Largest request head (request line + headers) a client may send; HTTP/1 read buffer
    /// and HTTP/2 header list size. hyper's floor for the HTTP/1 buffer is 8 KiB.
    pub max_header_bytes: usize,
    /// Time a client has to send a request's headers (HTTP/1), also bounding how long an idle
    /// keep-alive connection is held open.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (GOAWAY on HTTP/2);
    /// also how long an HTTP/2 connection may sit without a ping answer, and a bound on a
    /// transfer in which no byte moves.
    pub idle_timeout: Duration,
    /// How long in-flight requests get to finish after shutdown is requested.
    pub shutdown_grace: Duration,
    /// Trust updates (Notary fetches) running at once, across every trust server; more wait,
    /// within their `trust_timeout`, then fail closed (503). Bounds what a burst of pulls of
    /// new repository names can make trustgate send to a trust server (default 32).
    pub max_trust_updates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_max_bytes: 4 * 1024 * 1024,
            max_connections: 1024,
            max_connections_per_peer: 256,
            max_concurrent_streams: 100,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(30),
            max_trust_updates: crate::enforce::DEFAULT_MAX_TRUST_UPDATES,
        }
    }
}
