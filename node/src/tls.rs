//! TLS for the HTTP API and mutual TLS between nodes, with rustls and its
//! `ring` crypto provider (the provider reqwest 0.12's `rustls-tls` feature
//! already uses, so no aws-lc-sys is compiled).
//!
//! This module owns:
//! - [`server_config`]: the rustls server configuration. With a peer CA it
//!   *requests* a client certificate, verifies any certificate presented
//!   against that CA, and still admits clients without one (API users).
//! - [`serve_tls`] / [`serve_tls_with`]: the accept loop. It bounds the TLS
//!   handshake with a timeout, serves an axum `Router` over HTTP/1.1 with
//!   hyper-util, puts `ConnectInfo<SocketAddr>` and [`PeerCertificate`] into
//!   every request's extensions, and shuts down gracefully.
//! - [`PeerClientTls`]: what a reqwest 0.12 client needs to call other nodes:
//!   this node's certificate as client identity and only the peer CA as trust
//!   root.
//!
//! Plain HTTP sent to the TLS port fails the TLS handshake (rustls rejects the
//! bytes as not a TLS record) and the connection is closed without an HTTP
//! response. That is the whole "plain HTTP refused" behaviour.
//!
//! [`PeerCertificate`]`(true)` means only "this connection presented a
//! certificate that chains to the peer CA". The peer CA must therefore be
//! dedicated to the cluster, never a public or organisation-wide CA.
//!
//! This module must not: log or print private keys or PEM contents (errors
//! name files, never their bytes), decide authorization (handlers combine
//! [`PeerCertificate`] with their own rules), or install a process-wide
//! rustls crypto provider (every config here names `ring` explicitly).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

/// A TLS setup problem. Messages name the file involved, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: invalid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    /// A certificate file holds no certificate.
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) found", path.display())]
    NoCertificate { path: PathBuf },
    /// A key file holds no private key.
    #[error("{}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoPrivateKey { path: PathBuf },
    /// A CA certificate cannot serve as a trust anchor.
    #[error("{}: unusable CA certificate: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    /// rustls refused the configuration (for example, key and certificate do
    /// not match).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// reqwest refused the identity or CA.
    #[error("HTTP client TLS: {0}")]
    Client(#[source] reqwest::Error),
}

/// Whether the connection presented a client certificate that verified
/// against the peer CA. Present in every request served by [`serve_tls`];
/// as an extractor it yields `PeerCertificate(false)` when absent (for
/// example on a plain HTTP listener), so it fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCertificate(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificate {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<PeerCertificate>().copied().unwrap_or_default())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem { path: path.to_owned(), reason: e.to_string() }
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey { path: path.to_owned() },
        other => pem_error(path, other),
    })
}

fn root_store(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(path, pem)? {
        roots.add(cert).map_err(|e| TlsError::BadCa { path: path.to_owned(), reason: e.to_string() })?;
    }
    Ok(roots)
}

/// Builds the server configuration: `cert_pem` (leaf first, then any
/// intermediates) and `key_pem` (PKCS#8, PKCS#1 or SEC1) are served.
///
/// With `peer_ca`, the server requests a client certificate and verifies it
/// against the CA certificates in that file; clients that send none are
/// still admitted, and [`PeerCertificate`] tells the two apart. A client that
/// sends a certificate that does not verify fails the handshake.
///
/// ALPN offers only `http/1.1`. TLS 1.2 and 1.3 are enabled.
pub fn server_config(cert_pem: &Path, key_pem: &Path, peer_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = parse_certs(cert_pem, &read_file(cert_pem)?)?;
    let key = parse_key(key_pem, &read_file(key_pem)?)?;
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match peer_ca {
        Some(ca) => {
            let roots = root_store(ca, &read_file(ca)?)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Limits for [`serve_tls_with`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// After shutdown is signalled, longest to wait for in-flight requests
    /// before closing the remaining connections.
    pub drain_timeout: Duration,
    /// Most connections open at once; further clients wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// [`serve_tls_with`] with default [`ServeOptions`].
pub async fn serve_tls<F>(listener: TcpListener, config: Arc<ServerConfig>, app: Router, shutdown: F)
where
    F: Future<Output = ()>,
{
    serve_tls_with(listener, config, app, shutdown, ServeOptions::default()).await;
}

/// Accepts TCP connections on `listener`, completes the TLS handshake within
/// `options.handshake_timeout`, and serves `app` over HTTP/1.1.
///
/// Every request carries `ConnectInfo<SocketAddr>` (the TCP peer) and
/// [`PeerCertificate`] in its extensions. Failed or timed-out handshakes,
/// including plain HTTP sent to this port, close the connection.
///
/// When `shutdown` resolves: the listener is closed, connections still in
/// the handshake are dropped, idle keep-alive connections are closed, and
/// in-flight requests get up to `options.drain_timeout` to finish. Returns
/// once every connection is gone.
pub async fn serve_tls_with<F>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: F,
    options: ServeOptions,
) where
    F: Future<Output = ()>,
{
    let acceptor = TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Per-connection errors (reset before accept) are harmless; others
                // (out of file descriptors) need a pause instead of a busy loop.
                if !is_connection_error(&e) {
                    tracing::warn!(error = %e, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        // Best effort; Nagle only adds latency to small responses.
        let _ = tcp.set_nodelay(true);
        conns.spawn(serve_connection(
            tcp,
            remote,
            acceptor.clone(),
            app.clone(),
            stop_rx.clone(),
            options.clone(),
            permit,
        ));
    }

    drop(listener);
    // Receivers outlive this send: they are held by the connection tasks.
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(options.drain_timeout, drain).await.is_err() {
        tracing::warn!(remaining = conns.len(), "closing connections still open after the drain timeout");
        conns.shutdown().await;
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means "stop".
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
    options: ServeOptions,
    _permit: OwnedSemaphorePermit,
) {
    let handshake = tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        outcome = handshake => match outcome {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let peer_cert = PeerCertificate(tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()));

    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut().insert(peer_cert);
        app.clone().oneshot(req)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    let conn = http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error during shutdown");
            }
        }
    }
}

/// TLS material for node-to-node calls with reqwest 0.12: this node's
/// certificate and key as client identity, and the peer CA as the only
/// trust root. Everything is loaded and checked in [`PeerClientTls::load`],
/// so [`PeerClientTls::apply`] cannot fail.
#[derive(Clone)]
pub struct PeerClientTls {
    identity: reqwest::Identity,
    roots: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for PeerClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClientTls").field("roots", &self.roots.len()).finish_non_exhaustive()
    }
}

/// Same as [`PeerClientTls::load`].
pub fn peer_client_tls(ca: &Path, cert: &Path, key: &Path) -> Result<PeerClientTls, TlsError> {
    PeerClientTls::load(ca, cert, key)
}

impl PeerClientTls {
    /// Loads the peer CA (one or more certificates), this node's certificate
    /// chain and its private key, and checks that key and certificate match.
    ///
    /// The node's certificate is used both as server and as client
    /// certificate: if it carries an extended key usage extension, it must
    /// list both serverAuth and clientAuth.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ca_pem = read_file(ca)?;
        let cert_pem = read_file(cert)?;
        let key_pem = read_file(key)?;
        let roots = root_store(ca, &ca_pem)?;
        let certs = parse_certs(cert, &cert_pem)?;
        let private_key = parse_key(key, &key_pem)?;
        // Checks that the key matches the certificate, with the same provider
        // reqwest uses, so a mismatch is reported at startup.
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, private_key)?;

        let mut bundle = Zeroizing::new(Vec::with_capacity(cert_pem.len() + key_pem.len() + 1));
        bundle.extend_from_slice(&cert_pem);
        bundle.push(b'\n');
        bundle.extend_from_slice(&key_pem);
        let identity = reqwest::Identity::from_pem(&bundle).map_err(TlsError::Client)?;
        let roots = reqwest::Certificate::from_pem_bundle(&ca_pem).map_err(TlsError::Client)?;
        Ok(Self { identity, roots })
    }

    /// Configures `builder` to use rustls, present this node's identity,
    /// trust only the peer CA (built-in roots off), and refuse plain-HTTP URLs.
    /// Host names are still verified, so peer URLs must use a name or IP
    /// address that the peer's certificate lists.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut builder =
            builder.use_rustls_tls().tls_built_in_root_certs(false).identity(self.identity.clone()).https_only(true);
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn new_ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// Returns (certificate PEM, key PEM).
    fn leaf(ca: &Ca, names: &[&str], usages: &[ExtendedKeyUsagePurpose]) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    struct Pki {
        _dir: tempfile::TempDir,
        ca: PathBuf,
        server_cert: PathBuf,
        server_key: PathBuf,
        client_cert: PathBuf,
        client_key: PathBuf,
        rogue_cert: PathBuf,
        rogue_key: PathBuf,
        rogue_ca: PathBuf,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = new_ca("raftcron test peer CA");
        let rogue = new_ca("rogue CA");
        let (sc, sk) = leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        );
        let (cc, ck) = leaf(&ca, &["node-2"], &[ExtendedKeyUsagePurpose::ClientAuth]);
        let (rc, rk) = leaf(&rogue, &["node-evil"], &[ExtendedKeyUsagePurpose::ClientAuth]);
        Pki {
            ca: write("ca.pem", &ca.pem),
            server_cert: write("server.pem", &sc),
            server_key: write("server.key", &sk),
            client_cert: write("client.pem", &cc),
            client_key: write("client.key", &ck),
            rogue_cert: write("rogue.pem", &rc),
            rogue_key: write("rogue.key", &rk),
            rogue_ca: write("rogue-ca.pem", &rogue.pem),
            _dir: dir,
        }
    }

    async fn who(ConnectInfo(addr): ConnectInfo<SocketAddr>, PeerCertificate(peer): PeerCertificate) -> String {
        format!("{} {peer}", addr.ip())
    }

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(400)).await;
        "done"
    }

    fn app() -> Router {
        Router::new().route("/who", get(who)).route("/slow", get(slow))
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        async fn start(config: Arc<ServerConfig>, options: ServeOptions) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            let shutdown = async move {
                let _ = rx.await;
            };
            let task = tokio::spawn(serve_tls_with(listener, config, app(), shutdown, options));
            Self { addr, stop: Some(tx), task }
        }

        fn url(&self, path: &str) -> String {
            format!("https://127.0.0.1:{}{path}", self.addr.port())
        }

        async fn stop(mut self) {
            if let Some(tx) = self.stop.take() {
                let _ = tx.send(());
            }
            tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap();
        }
    }

    fn api_client(ca: &Path) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn peer_client(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
        let tls = PeerClientTls::load(ca, cert, key).unwrap();
        tls.apply(reqwest::Client::builder()).timeout(Duration::from_secs(5)).build().unwrap()
    }

    #[tokio::test]
    async fn https_with_and_without_client_certificate() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, Some(&p.ca)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let server = Server::start(config, ServeOptions::default()).await;

        // API client: no certificate.
        let body = api_client(&p.ca).get(server.url("/who")).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "127.0.0.1 false");

        // By host name too.
        let by_name = format!("https://localhost:{}/who", server.addr.port());
        let resp = api_client(&p.ca).get(&by_name).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);
        assert_eq!(resp.text().await.unwrap(), "127.0.0.1 false");

        // Peer: certificate from the peer CA.
        let peer = peer_client(&p.ca, &p.client_cert, &p.client_key);
        let body = peer.get(server.url("/who")).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "127.0.0.1 true");

        server.stop().await;
    }

    #[tokio::test]
    async fn client_certificate_from_another_ca_is_rejected() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, Some(&p.ca)).unwrap();
        let server = Server::start(config, ServeOptions::default()).await;
        // The rogue client trusts the right server CA but presents a rogue certificate.
        let rogue = peer_client(&p.ca, &p.rogue_cert, &p.rogue_key);
        let err = rogue.get(server.url("/who")).send().await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        // The server keeps serving others.
        let body = api_client(&p.ca).get(server.url("/who")).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "127.0.0.1 false");
        server.stop().await;
    }

    #[tokio::test]
    async fn without_peer_ca_client_certificates_are_not_requested() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, None).unwrap();
        let server = Server::start(config, ServeOptions::default()).await;
        let peer = peer_client(&p.ca, &p.client_cert, &p.client_key);
        let body = peer.get(server.url("/who")).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "127.0.0.1 false");
        server.stop().await;
    }

    #[tokio::test]
    async fn untrusted_server_is_rejected_by_peer_client() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, Some(&p.ca)).unwrap();
        let server = Server::start(config, ServeOptions::default()).await;
        // A client that trusts only the rogue CA must not accept this server.
        let client = peer_client(&p.rogue_ca, &p.rogue_cert, &p.rogue_key);
        assert!(client.get(server.url("/who")).send().await.is_err());
        // And https_only refuses plain-HTTP URLs outright.
        let client = peer_client(&p.ca, &p.client_cert, &p.client_key);
        let plain = format!("http://127.0.0.1:{}/who", server.addr.port());
        assert!(client.get(plain).send().await.is_err());
        server.stop().await;
    }

    #[tokio::test]
    async fn plain_http_to_the_tls_port_is_refused() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, Some(&p.ca)).unwrap();
        let server = Server::start(config, ServeOptions::default()).await;

        let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let url = format!("http://127.0.0.1:{}/who", server.addr.port());
        assert!(plain.get(url).send().await.is_err());

        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /who HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await.unwrap();
        // Either a clean close or a reset; never an HTTP response.
        if read.is_ok() {
            assert!(!buf.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&buf));
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn slow_handshake_is_cut_off() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, None).unwrap();
        let options = ServeOptions { handshake_timeout: Duration::from_millis(200), ..ServeOptions::default() };
        let server = Server::start(config, options).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        // The server closes the silent connection after the handshake timeout.
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        server.stop().await;
    }

    #[tokio::test]
    async fn max_connections_bounds_open_connections() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, None).unwrap();
        let options = ServeOptions {
            handshake_timeout: Duration::from_millis(300),
            max_connections: 1,
            ..ServeOptions::default()
        };
        let server = Server::start(config, options).await;
        // A silent client holds the only slot until its handshake times out;
        // the real request then goes through.
        let _silent = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let body = api_client(&p.ca).get(server.url("/who")).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "127.0.0.1 false");
        assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
        server.stop().await;
    }

    #[tokio::test]
    async fn graceful_shutdown_finishes_in_flight_requests() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, Some(&p.ca)).unwrap();
        let server = Server::start(config, ServeOptions::default()).await;
        let client = api_client(&p.ca);
        // Open an idle keep-alive connection too; shutdown must not wait for it.
        client.get(server.url("/who")).send().await.unwrap().text().await.unwrap();

        let in_flight = tokio::spawn({
            let client = client.clone();
            let url = server.url("/slow");
            async move { client.get(url).send().await?.text().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let addr = server.addr;
        let started = std::time::Instant::now();
        server.stop().await;
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(in_flight.await.unwrap().unwrap(), "done");
        // The listener is closed.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn drain_timeout_closes_stuck_connections() {
        let p = pki();
        let config = server_config(&p.server_cert, &p.server_key, None).unwrap();
        let options = ServeOptions { drain_timeout: Duration::from_millis(100), ..ServeOptions::default() };
        let server = Server::start(config, options).await;
        let client = api_client(&p.ca);
        let in_flight = tokio::spawn({
            let url = server.url("/slow");
            async move { client.get(url).send().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        server.stop().await;
        assert!(started.elapsed() < Duration::from_millis(350), "{:?}", started.elapsed());
        assert!(in_flight.await.unwrap().is_err(), "the stuck request was cut off");
    }

    #[tokio::test]
    async fn peer_certificate_extractor_defaults_to_false() {
        let (mut parts, ()) = Request::new(()).into_parts();
        assert_eq!(PeerCertificate::from_request_parts(&mut parts, &()).await, Ok(PeerCertificate(false)));
        parts.extensions.insert(PeerCertificate(true));
        assert_eq!(PeerCertificate::from_request_parts(&mut parts, &()).await, Ok(PeerCertificate(true)));
    }

    #[test]
    fn configuration_errors_name_the_file() {
        let p = pki();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = server_config(&missing, &p.server_key, None).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }) && err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = server_config(&empty, &p.server_key, None).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = server_config(&p.server_cert, &empty, None).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
        // A certificate file given as the key: no key in it.
        let err = server_config(&p.server_cert, &p.server_cert, None).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n").unwrap();
        let err = server_config(&broken, &p.server_key, None).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }) && err.to_string().contains("broken.pem"), "{err}");

        // Key from another certificate.
        let err = server_config(&p.server_cert, &p.client_key, None).unwrap_err();
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");
        let err = PeerClientTls::load(&p.ca, &p.client_cert, &p.server_key).unwrap_err();
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");

        let err = server_config(&p.server_cert, &p.server_key, Some(&empty)).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

        // Errors never carry key material.
        let key_text = std::fs::read_to_string(&p.server_key).unwrap();
        let secret_line = key_text.lines().nth(1).unwrap();
        let err = server_config(&p.server_key, &p.server_key, None).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(secret_line));
        let tls = PeerClientTls::load(&p.ca, &p.client_cert, &p.client_key).unwrap();
        assert!(!format!("{tls:?}").contains("PRIVATE"));
    }
}
