//! The one TLS set-up of both transports: rustls with the system's roots
//! and any `--ca-cert` roots, certificates always verified, HTTP/1.1; the
//! one reader of a `--ca-cert` file; the one User-Agent.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::TransportError;

/// The User-Agent of every request.
pub const USER_AGENT: &str = concat!("digidesk-upload/", env!("CARGO_PKG_VERSION"));

/// Reads a `--ca-cert` file and checks that it holds at least one PEM
/// certificate; returns its bytes for [`client_config`].
pub fn read_ca_cert(path: &Path) -> Result<Vec<u8>, TransportError> {
    let pem = std::fs::read(path).map_err(|source| TransportError::CaCertRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pem(&pem)?;
    Ok(pem)
}

/// The certificates of a PEM bundle; at least one.
fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TransportError::CaCertPem { source })?;
    if certs.is_empty() {
        return Err(TransportError::CaCertEmpty);
    }
    Ok(certs)
}

/// rustls with the system's roots and the `extra_pem` roots (from
/// [`read_ca_cert`]), HTTP/1.1 only.
pub fn client_config(extra_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    match extra_pem {
        Some(pem) => {
            for cert in parse_pem(pem)? {
                roots
                    .add(cert)
                    .map_err(|source| TransportError::CaCertRoot { source })?;
            }
        }
        None if added == 0 => tracing::warn!(
            "no trusted root certificates found on this system; HTTPS endpoints will fail unless --ca-cert is given"
        ),
        None => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TransportError::Tls { source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_cert_file_must_hold_a_pem_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            read_ca_cert(&missing),
            Err(TransportError::CaCertRead { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            read_ca_cert(&empty),
            Err(TransportError::CaCertEmpty)
        ));
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_ca_cert(&broken).is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let good = dir.path().join("good.pem");
        std::fs::write(&good, cert.cert.pem()).unwrap();
        let pem = read_ca_cert(&good).unwrap();
        assert!(client_config(Some(&pem)).is_ok());
    }
}
