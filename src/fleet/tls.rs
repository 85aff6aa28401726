//! TLS for the fleet clients: rustls on ring. Trusted: the system's CA
//! bundle and `ca_file`; optionally a client certificate (etcd's
//! `--client-cert-auth`). Errors name the file, never its contents.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub use crate::config::TlsFiles;

/// The system bundle: `SSL_CERT_FILE` if set (as OpenSSL does), else the
/// first of these that exists (Yocto's and Debian's ca-certificates write
/// the first).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

pub(super) struct Tls {
    /// `ca_file`'s certificates.
    extra: RootCertStore,
    client: Option<Arc<CertifiedKey>>,
    bundles: Vec<PathBuf>,
    /// Made at the first https request, so that a client that only
    /// speaks http never holds (or reads) the system's roots.
    config: OnceLock<Arc<ClientConfig>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("{}: {e}", path.display()),
        _ => format!("{}: not a valid PEM file", path.display()),
    }
}

/// Every certificate in a PEM file; none is an error.
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (PEM \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(certs)
}

fn client_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{}: no private key in it (PEM \"BEGIN PRIVATE KEY\", RSA or EC)",
            key_file.display()
        ),
        e => pem_error(key_file, e),
    })?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "{} is not the key of the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
            e => format!("{}: {e}", key_file.display()),
        })
}

impl Tls {
    pub(super) fn new(files: &TlsFiles) -> Result<Tls, String> {
        let bundles = match std::env::var_os("SSL_CERT_FILE") {
            Some(f) if !f.is_empty() => vec![PathBuf::from(f)],
            _ => SYSTEM_BUNDLES.iter().map(PathBuf::from).collect(),
        };
        Tls::with_bundles(files, bundles)
    }

    pub(super) fn with_bundles(files: &TlsFiles, bundles: Vec<PathBuf>) -> Result<Tls, String> {
        // ca_file's certificates, each one webpki can use (refused now
        // rather than at the first request).
        let mut extra = RootCertStore::empty();
        if let Some(f) = &files.ca_file {
            for (i, c) in certs(f)?.into_iter().enumerate() {
                extra
                    .add(c)
                    .map_err(|e| format!("{}: certificate {}: {e}", f.display(), i + 1))?;
            }
        }
        let client = match (&files.cert_file, &files.key_file) {
            (Some(c), Some(k)) => Some(client_key(c, k)?),
            (None, None) => None,
            _ => return Err("a client certificate needs both cert_file and key_file".into()),
        };
        Ok(Tls {
            extra,
            client,
            bundles,
            config: OnceLock::new(),
        })
    }

    fn config(&self) -> Result<Arc<ClientConfig>, String> {
        if let Some(c) = self.config.get() {
            return Ok(c.clone());
        }
        let mut roots = self.extra.clone();
        // A blocking read, once per process (an error is not kept: the
        // next request tries again): the bundle is small and local.
        if let Some(b) = self.bundles.iter().find(|b| b.exists()) {
            let certs = CertificateDer::pem_file_iter(b)
                .map_err(|e| pem_error(b, e))?
                .filter_map(Result::ok);
            // A bundle may hold certificates webpki cannot use.
            roots.add_parsable_certificates(certs);
        }
        if roots.is_empty() {
            let bundles: Vec<String> = self
                .bundles
                .iter()
                .map(|b| b.display().to_string())
                .collect();
            return Err(format!(
                "no trusted CA: no system bundle ({}) and no ca_file",
                bundles.join(", ")
            ));
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = Arc::new(match &self.client {
            Some(k) => {
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(k.clone())))
            }
            None => builder.with_no_client_auth(),
        });
        Ok(self.config.get_or_init(|| config).clone())
    }

    /// The TLS handshake on a connected stream; `host` as in the URL.
    pub(super) async fn connect(
        &self,
        stream: TcpStream,
        host: &str,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is not a host name TLS can check"))?;
        TlsConnector::from(self.config()?)
            .connect(name, stream)
            .await
            .map_err(|e| describe(&e))
    }
}

/// An error's message, and for a TLS failure what it likely means.
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut next = Some(e);
    while let Some(e) = next {
        // io::Error's source() skips the error it wraps: look inside.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(t) = e.downcast_ref::<rustls::Error>().or(inner) {
            return match hint(t) {
                Some(h) => format!("TLS: {t} ({h})"),
                None => format!("TLS: {t}"),
            };
        }
        next = e.source();
    }
    e.to_string()
}

fn hint(e: &rustls::Error) -> Option<&'static str> {
    use CertificateError as C;
    Some(match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "the server's certificate is not signed by a CA holdfast trusts: ca_file or the system bundle"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server's certificate is not for the host in the URL"
            }
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is expired or not yet valid: is the clock right?"
            }
            _ => return None,
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired,
        ) => "the server wants a client certificate signed by a CA it trusts: cert_file and key_file",
        _ => return None,
    })
}
