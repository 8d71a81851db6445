//! A small HTTP/1.1 server for the agent's operational endpoints (health, healthCheckNodePorts,
//! metrics), on hyper's server half: hyper is already compiled into the agent for kube's
//! client, and it gets keep-alive, pipelining, `HEAD` and header limits right, which a
//! load balancer's health checker and a Prometheus scraper both rely on (DESIGN-NOTES 120).
//!
//! A server is a task that owns its listener and its connections: aborting the task (dropping
//! [`Server`]) closes the port and every open connection at once, which is how a
//! healthCheckNodePort is closed when its Service goes.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long a client may take to send its request headers: a slow or idle client must not
/// hold connections open forever on a port every load balancer probes.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a handler answers: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn json(status: StatusCode, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404 page not found\n")
    }
}

/// Answers a request's path. Called on the runtime's threads; must not block.
pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A running server; dropping it closes the port and its connections.
#[derive(Debug)]
pub struct Server {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr`. An unspecified address (`0.0.0.0` or `::`) binds `[::]`, which Linux makes
/// dual-stack (as Go's listener in kube-proxy does), falling back to `0.0.0.0` where IPv6
/// is disabled.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if addr.ip().is_unspecified() {
        let any6 = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), addr.port());
        match TcpListener::bind(any6).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => {
                let any4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
                return TcpListener::bind(any4).await;
            }
        }
    }
    TcpListener::bind(addr).await
}

/// Serves `handler` on `listener` until the returned [`Server`] is dropped. Only `GET` and
/// `HEAD` are answered (others get 405), as net/http's mux effectively does for kube-proxy's
/// probes and scrapes.
pub fn serve(listener: TcpListener, handler: Handler) -> Server {
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let handler = handler.clone();
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let handler = handler.clone();
                                async move { Ok::<_, Infallible>(answer(&handler, &req)) }
                            });
                            let mut builder = hyper::server::conn::http1::Builder::new();
                            builder
                                .timer(hyper_util::rt::TokioTimer::new())
                                .header_read_timeout(HEADER_READ_TIMEOUT);
                            // A client that hangs up mid-request is its own problem.
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Server { task }
}

fn answer(handler: &Handler, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = if req.method() == Method::GET || req.method() == Method::HEAD {
        handler(req.uri().path())
    } else {
        Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        conn.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn get_head_and_other_methods() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler: Handler = Arc::new(|path| match path {
            "/hi" => Reply::text(StatusCode::OK, "hello"),
            _ => Reply::not_found(),
        });
        let server = serve(listener, handler);
        let get = exchange(
            addr,
            "GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            get.starts_with("HTTP/1.1 200 OK\r\n") && get.ends_with("\r\n\r\nhello"),
            "{get}"
        );
        assert!(get.contains("x-content-type-options: nosniff"), "{get}");
        let head = exchange(
            addr,
            "HEAD /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let post = exchange(
            addr,
            "POST /hi HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let missing = exchange(
            addr,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        // Keep-alive: two requests on one connection.
        let two = exchange(
            addr,
            "GET /hi HTTP/1.1\r\nHost: x\r\n\r\nGET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(two.matches("HTTP/1.1 200 OK").count(), 2, "{two}");
        // Dropping the server closes the port.
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
