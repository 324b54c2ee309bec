//! TLS for an https:// server: rustls (aws-lc-rs) trusting the authority `--ca-file` names, or
//! the system's certificate bundle.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::exit::CliError;

/// Where Debian and its derivatives keep the system's trusted authorities.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, CliError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| CliError::usage(format!("reading the certificate authority {}: {error}", path.display())))?;
    for certificate in certificates {
        let certificate = certificate
            .map_err(|error| CliError::usage(format!("{} is not PEM certificates: {error}", path.display())))?;
        roots.add(certificate).map_err(|error| CliError::usage(format!("{}: {error}", path.display())))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| CliError::other(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
