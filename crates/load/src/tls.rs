//! TLS for https targets: rustls on ring, trusting Mozilla's roots, a CA file the user names, or (when asked)
//! any certificate. Compiled only with the `tls` feature, so plain-HTTP builds carry no crypto.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::LoadError;
use crate::target::Trust;

/// The client configuration for `trust`; ALPN is set per connection kind by [`connect`].
pub(crate) fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, LoadError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Spec(format!("TLS setup: {e}")))?;
    let config = match trust {
        Trust::PublicRoots => builder
            .with_root_certificates(RootCertStore::from_iter(
                webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
            ))
            .with_no_client_auth(),
        Trust::CaFile(path) => builder
            .with_root_certificates(roots_from_pem(path)?)
            .with_no_client_auth(),
        Trust::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn roots_from_pem(path: &Path) -> Result<RootCertStore, LoadError> {
    let bad = |reason: String| LoadError::Spec(format!("--ca-cert {}: {reason}", path.display()));
    let mut roots = RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .enumerate()
    {
        let cert = cert.map_err(|e| bad(format!("certificate {}: {e}", n + 1)))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate {}: {e}", n + 1)))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

/// Runs the TLS handshake over a connected socket, offering `h2` or `http/1.1` by ALPN.
pub(crate) async fn connect(
    config: &Arc<ClientConfig>,
    http2: bool,
    host: &str,
    tcp: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = ClientConfig::clone(config);
    config.alpn_protocols = vec![if http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// `--insecure`: any certificate is taken for the server's, but signatures must still be valid.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
