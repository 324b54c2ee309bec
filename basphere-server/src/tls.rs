//! HTTPS on the TCP listener (`server.tls`): rustls with the aws-lc-rs provider the other
//! clients use. The certificate and key are read from their PEM files at start and again on
//! SIGHUP; a reload that fails keeps serving the previous pair and says why. The handshake runs
//! in the connection's own task, under the listener's cap and the header-read deadline, so a
//! client that never finishes it holds nothing but its own slot.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::listener::Listener;

/// The certificate in use, swapped whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The listener's TLS: its files, the certificate in use, and the acceptor built on it.
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("server.tls.cert_file: cannot read {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("server.tls.cert_file: {} is not PEM certificates", cert_file.display()))?;
    anyhow::ensure!(!chain.is_empty(), "server.tls.cert_file: {} holds no certificate", cert_file.display());
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("server.tls.key_file: {} holds no private key in PEM", key_file.display()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .with_context(|| format!("server.tls.key_file: {} is not a key rustls can sign with", key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| {
        format!("server.tls: the key {} does not match the certificate {}", key_file.display(), cert_file.display())
    })?;
    Ok(Arc::new(certified))
}

impl ServerTls {
    /// Reads the certificate and key; an error names the file and the key to fix.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<ServerTls> {
        let current = Arc::new(Current(RwLock::new(load(cert_file, key_file)?)));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("server.tls: no protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again and serves the new pair to new connections; on an error the
    /// previous pair stays.
    pub fn reload(&self) -> Result<()> {
        let fresh = load(&self.cert_file, &self.key_file)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// The TCP listener with TLS.
pub struct TlsListener {
    pub tcp: TcpListener,
    pub tls: Arc<ServerTls>,
}

impl Listener for TlsListener {
    type Raw = TcpStream;
    type Io = TlsStream<TcpStream>;
    type Peer = SocketAddr;
    const NAME: &'static str = "tls";

    fn accept(&self) -> impl std::future::Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        self.tcp.accept()
    }

    fn open(&self, raw: TcpStream) -> impl std::future::Future<Output = io::Result<Self::Io>> + Send + 'static {
        self.tls.acceptor.accept(raw)
    }
}
