//! TLS server configuration: the operator's certificate, or a self-signed one generated with
//! rcgen on first start and kept in the data directory so clients can pin it across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TlsError {}

/// Paths of the generated pair, relative to the data directory.
pub fn default_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Builds the server config from `cert`/`key`, or from the self-signed pair in the data
/// directory (created if missing). Only TLS 1.2 and 1.3 are enabled (rustls offers nothing older).
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    hostname: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        (None, None) => {
            let (c, k) = default_paths(data_dir);
            if !c.exists() || !k.exists() {
                generate_self_signed(&c, &k, hostname)?;
            }
            (c, k)
        }
        _ => return Err(TlsError("tls.cert and tls.key must be set together".into())),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError(format!("{}: {e}", cert_path.display())))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| TlsError(format!("{}: {e}", key_path.display())))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError(e.to_string()))?;
    Ok(Arc::new(config))
}

fn generate_self_signed(cert: &Path, key: &Path, hostname: &str) -> Result<(), TlsError> {
    let mut names = vec![hostname.to_string(), "localhost".to_string()];
    names.dedup();
    let pair = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError(e.to_string()))?;
    let dir = cert.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TlsError(format!("{}: {e}", dir.display())))?;
    write_private(key, pair.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, pair.cert.pem())
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate for {hostname}");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        server_config(None, None, dir.path(), "mx.example.test").unwrap();
        let (cert, _) = default_paths(dir.path());
        let first = std::fs::read(&cert).unwrap();
        server_config(None, None, dir.path(), "mx.example.test").unwrap();
        assert_eq!(first, std::fs::read(&cert).unwrap());
    }

    #[test]
    fn cert_without_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = server_config(Some(Path::new("/x.pem")), None, dir.path(), "h").unwrap_err();
        assert!(err.0.contains("together"));
    }
}
