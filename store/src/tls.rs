//! The HTTP clients an endpoint talks to ClickHouse with, made once and shared by its clones so
//! their connections (and TLS sessions) are reused: a new client per query opened a new
//! connection per query (docs/performance.md, "Issue 28"). Over https the client trusts the
//! system's CA certificates and, when `clickhouse.ca_file` names one, the certificates of that
//! PEM file too (a company CA, or the one a test makes). rustls with ring: no OpenSSL to build
//! or link.

use std::sync::{Arc, OnceLock};

use clickhouse::Client;
pub use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
pub use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The endpoint's HTTP clients, each built on first use and shared by every clone of it.
#[derive(Clone, Default)]
pub struct SharedTransport {
    https: Arc<OnceLock<Result<Client, String>>>,
    plain: Arc<OnceLock<Client>>,
}

impl SharedTransport {
    /// The https client trusting `ca_file` (if not empty) besides the system's CAs.
    pub fn https(&self, ca_file: &str) -> Result<Client, String> {
        self.https.get_or_init(|| https_client(ca_file)).clone()
    }

    /// The plain http client.
    pub fn plain(&self) -> Client {
        self.plain.get_or_init(Client::default).clone()
    }
}

/// Every endpoint's client is alike: it does not tell endpoints apart.
impl PartialEq for SharedTransport {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SharedTransport {}

/// The certificates of `ca_file`, or why there are none (for the start-up check).
pub fn read_ca_file(ca_file: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read '{ca_file}': {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("'{ca_file}' is not PEM certificates: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("'{ca_file}' holds no certificate"));
    }
    Ok(certificates)
}

/// The TLS settings of every client we make: the system's CAs and those of `ca_file`.
fn tls_config(ca_file: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    // The system's CAs, as far as they load; a custom CA alone is enough.
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    if !ca_file.is_empty() {
        for certificate in read_ca_file(ca_file)? {
            roots
                .add(certificate)
                .map_err(|e| format!("'{ca_file}': {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connector for `https://` URLs (trusting the system's CAs and `ca_file`'s) and plain
/// `http://` ones: alert webhooks may be either.
pub fn https_or_http(ca_file: &str) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_file)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

fn https_client(ca_file: &str) -> Result<Client, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_file)?)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    // Idle connections close before the server's keep-alive (3 s by default) closes them
    // under a request, as the clickhouse crate's own plain client does.
    let hyper = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build(connector);
    Ok(Client::with_http_client(hyper))
}
