//! TLS for outbound SMTP: the two rustls client configurations every relay connection shares,
//! built once at start-up (loading the system's roots reads files: never on a core's event loop).
//!
//! * `verifying`: the system's root certificates (rustls-native-certs) plus an optional extra
//!   CA file; the certificate must be valid for the name the client asks for.
//! * `insecure`: accepts any certificate. Opportunistic TLS (`TlsPolicy::May` and `Require`,
//!   Postfix's `may` and `encrypt`) protects against passive eavesdropping only; most MX hosts
//!   present certificates that would not verify (self-signed, or for another name), and refusing
//!   them would only push the mail back to plain text. Handshake signatures are still checked,
//!   so the server must at least hold the key of the certificate it sends.
//!
//! Both use the ring provider and TLS 1.2 or 1.3 only.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, KeyLog, RootCertStore, SignatureScheme};

pub use crate::net::tls::TlsError;

/// The shared client configurations (cheap to clone: two `Arc`s).
#[derive(Clone, Debug)]
pub struct ClientTlsConfigs {
    /// Checks the chain against the roots and the name against the certificate.
    pub verifying: Arc<ClientConfig>,
    /// Accepts any certificate (opportunistic TLS).
    pub insecure: Arc<ClientConfig>,
}

/// Builds both configurations. `extra_ca`: a PEM file of additional trusted certificates (a
/// private CA, or a peer's self-signed certificate); it must hold at least one. A system
/// without a readable root store still gets a working `verifying` config (trusting only
/// `extra_ca`); the problem is logged.
pub fn client_configs(extra_ca: Option<&Path>) -> Result<ClientTlsConfigs, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "loading the system's root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(TlsError(format!(
                "{}: no certificate found",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
        }
    }
    let verifying = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let insecure = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate::new(&provider)))
        .with_no_client_auth();
    Ok(ClientTlsConfigs {
        verifying: Arc::new(verifying),
        insecure: Arc::new(insecure),
    })
}

/// The name for SNI and certificate checks: `name` if it is a valid DNS name or IP address.
pub fn server_name(name: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(name.trim_end_matches('.').to_string()).ok()
}

/// Accepts every certificate but still checks the handshake signature with it.
#[derive(Debug)]
struct AnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyServerCertificate {
    fn new(provider: &CryptoProvider) -> Self {
        AnyServerCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Learns which protocol version one handshake negotiated.
///
/// monoio-rustls gives no access to the `ClientConnection` of a live stream, and taking the
/// stream apart (`into_parts`) would drop whatever it had read past the handshake. But rustls
/// announces each secret it derives to the config's [`KeyLog`], under a label that only one
/// version uses: `CLIENT_TRAFFIC_SECRET_0` in TLS 1.3, `CLIENT_RANDOM` in TLS 1.2 (full and
/// resumed handshakes alike). The label is all this keeps; the secret is ignored.
#[derive(Debug, Default)]
pub(crate) struct NegotiatedVersion(AtomicU8);

const TLS13_LABEL: &str = "CLIENT_TRAFFIC_SECRET_0";
const TLS12_LABEL: &str = "CLIENT_RANDOM";

impl NegotiatedVersion {
    /// `"TLSv1.3"` or `"TLSv1.2"` once the handshake has got that far.
    pub(crate) fn get(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Relaxed) {
            13 => Some("TLSv1.3"),
            12 => Some("TLSv1.2"),
            _ => None,
        }
    }
}

impl KeyLog for NegotiatedVersion {
    fn will_log(&self, label: &str) -> bool {
        label == TLS13_LABEL || label == TLS12_LABEL
    }

    fn log(&self, label: &str, _client_random: &[u8], _secret: &[u8]) {
        let version = match label {
            TLS13_LABEL => 13,
            TLS12_LABEL => 12,
            _ => return,
        };
        self.0.store(version, Ordering::Relaxed);
    }
}

/// A copy of `config` (cheap: a few `Arc`s and short vectors; the session cache is shared)
/// that reports its negotiated version to the returned probe. One per handshake.
pub(crate) fn with_version_probe(
    config: &Arc<ClientConfig>,
) -> (Arc<ClientConfig>, Arc<NegotiatedVersion>) {
    let probe = Arc::new(NegotiatedVersion::default());
    let mut config = ClientConfig::clone(config);
    config.key_log = probe.clone();
    (Arc::new(config), probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConnection, HandshakeKind, ServerConfig, ServerConnection};

    fn server(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ServerConfig> {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(pair.signing_key.serialize_pem().as_bytes()).unwrap();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![pair.cert.der().clone()], key)
                .unwrap();
        Arc::new(config)
    }

    /// Moves TLS records both ways once.
    fn exchange(client: &mut ClientConnection, server: &mut ServerConnection) {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets().unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets().unwrap();
    }

    /// Runs a whole handshake in memory, then one more exchange for the session tickets.
    fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
        for _ in 0..20 {
            exchange(client, server);
            if !client.is_handshaking() && !server.is_handshaking() {
                exchange(client, server);
                return;
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn version_probe_names_the_negotiated_version() {
        for (versions, expected) in [
            (&[&rustls::version::TLS13][..], "TLSv1.3"),
            (&[&rustls::version::TLS12][..], "TLSv1.2"),
        ] {
            // Fresh configs: a stored TLS 1.3 ticket would stop the client offering a 1.2 session.
            let configs = client_configs(None).unwrap();
            let server_config = server(versions);
            // Twice: the second handshake resumes the session, which logs differently.
            for kind in [HandshakeKind::Full, HandshakeKind::Resumed] {
                let (config, probe) = with_version_probe(&configs.insecure);
                assert_eq!(probe.get(), None);
                let mut client =
                    ClientConnection::new(config, server_name("localhost").unwrap()).unwrap();
                let mut server = ServerConnection::new(server_config.clone()).unwrap();
                handshake(&mut client, &mut server);
                assert_eq!(
                    client.protocol_version().map(|v| format!("{v:?}")),
                    Some(expected.replace("TLSv1.", "TLSv1_"))
                );
                assert_eq!(client.handshake_kind(), Some(kind), "{expected}");
                assert_eq!(probe.get(), Some(expected));
            }
        }
    }

    #[test]
    fn verifying_config_refuses_an_unknown_self_signed_certificate() {
        let configs = client_configs(None).unwrap();
        let mut client =
            ClientConnection::new(configs.verifying.clone(), server_name("localhost").unwrap())
                .unwrap();
        let mut server = ServerConnection::new(server(&[&rustls::version::TLS13])).unwrap();
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut &wire[..]).unwrap();
        server.process_new_packets().unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        client.read_tls(&mut &wire[..]).unwrap();
        let err = client.process_new_packets().unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn extra_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let err = client_configs(Some(&empty)).unwrap_err();
        assert!(err.0.contains("no certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(client_configs(Some(&missing)).is_err());
    }

    #[test]
    fn server_names() {
        assert!(server_name("mx.example.org.").is_some());
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(server_name("not a name").is_none());
        assert!(server_name("").is_none());
    }
}
