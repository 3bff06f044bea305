//! Signing keys: the files under `<data_dir>/dkim/`, their generation, and the DNS record that
//! publishes each one's public half.
//!
//! A key file is named `<selector>._domainkey.<domain>.pem` and holds one PKCS#8 PEM
//! `PRIVATE KEY` block, RSA or Ed25519 (the algorithm identifier inside says which). The name
//! is the whole configuration: the domain it signs for and the selector (`s=`) that receivers
//! look up, so dropping a file in (or `surel dkim generate`) is all it takes.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64ct::{Base64, Encoding};
use mail_auth::common::crypto::{DkimKey as KeyPair, Ed25519Key, RsaKey, Sha256};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::der::Encode;
use rsa::pkcs8::der::pem::{self, LineEnding};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, ObjectIdentifier, PrivateKeyInfoRef};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{DkimAlgorithm, DkimError};

/// rsaEncryption (RFC 8017).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-Ed25519 (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// Size of generated RSA keys: what receivers expect today (RFC 8301 asks for at least 1024,
/// and 2048 still fits a TXT record without trouble at any DNS host).
const RSA_BITS: usize = 2048;
/// A DNS TXT record is a list of character-strings of at most 255 bytes each.
const TXT_STRING_MAX: usize = 255;
const PEM_LABEL: &str = "PRIVATE KEY";

/// Where the keys of a data directory live.
pub fn key_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("dkim")
}

/// One signing key: the domain it signs for (`d=`), its selector (`s=`) and the key pair.
pub struct DkimKey {
    domain: String,
    selector: String,
    algorithm: DkimAlgorithm,
    pub(super) pair: KeyPair,
    /// What the record's `p=` carries: SubjectPublicKeyInfo DER for RSA (RFC 6376 3.6.1), the
    /// raw 32-byte key for Ed25519 (RFC 8463 4.2).
    public_key: Vec<u8>,
    path: PathBuf,
    modified: SystemTime,
}

impl std::fmt::Debug for DkimKey {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// The signing domain (`d=`), lowercase A-labels.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`), lowercase.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public key as the DNS record's `p=` encodes it (before base64).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The DNS name the public key is published at, without the final dot.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// Reads a key file; `name` is its file name, which must carry selector and domain.
    fn read(path: &Path, name: &str, modified: SystemTime) -> Result<DkimKey, String> {
        let (selector, domain) = parse_file_name(name).ok_or_else(|| {
            "the file name is not <selector>._domainkey.<domain>.pem (DNS labels: letters, digits, hyphens)"
                .to_string()
        })?;
        let pem = fs::read(path).map_err(|e| e.to_string())?;
        let mut key = from_pem(&pem)?;
        key.domain = domain;
        key.selector = selector;
        key.path = path.to_path_buf();
        key.modified = modified;
        Ok(key)
    }
}

/// Parses a PKCS#8 PEM key; domain, selector and path are left for the caller to fill.
fn from_pem(pem: &[u8]) -> Result<DkimKey, String> {
    let (label, der) = pem::decode_vec(pem).map_err(|e| format!("not a PEM file: {e}"))?;
    if label != PEM_LABEL {
        return Err(format!(
            "expected a PKCS#8 \"{PEM_LABEL}\" PEM block, found \"{label}\""
        ));
    }
    let info = PrivateKeyInfoRef::try_from(der.as_slice())
        .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
    let (algorithm, pair, public_key) = match info.algorithm.oid {
        OID_RSA => {
            let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(der.as_slice()),
            ))
            .map_err(|e| format!("bad RSA key (ring takes 2048 to 8192 bits): {e}"))?;
            // ring hands out the PKCS#1 RSAPublicKey; DKIM publishes it wrapped in a SPKI.
            let spki = rsa::PublicKey::from_pkcs1_der(&key.public_key())
                .map_err(|e| format!("bad RSA public key: {e}"))?
                .to_public_key_der()
                .map_err(|e| format!("bad RSA public key: {e}"))?;
            (DkimAlgorithm::Rsa, KeyPair::Rsa(key), spki.into_vec())
        }
        OID_ED25519 => {
            // "maybe unchecked" also takes the PKCS#8 v1 files OpenSSL writes (no public key).
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(&der)
                .map_err(|e| format!("bad Ed25519 key: {e}"))?;
            let public = key.public_key();
            (DkimAlgorithm::Ed25519, KeyPair::Ed25519(key), public)
        }
        other => {
            return Err(format!(
                "unsupported key algorithm {other} (DKIM keys are RSA or Ed25519)"
            ));
        }
    };
    Ok(DkimKey {
        domain: String::new(),
        selector: String::new(),
        algorithm,
        pair,
        public_key,
        path: PathBuf::new(),
        modified: SystemTime::UNIX_EPOCH,
    })
}

/// `<selector>._domainkey.<domain>.pem` → (selector, domain), both lowercased and checked.
fn parse_file_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(".pem")?;
    let (selector, domain) = stem.split_once("._domainkey.")?;
    let (selector, domain) = (selector.to_ascii_lowercase(), domain.to_ascii_lowercase());
    (is_dns_name(&selector) && is_dns_name(&domain)).then_some((selector, domain))
}

/// Letters, digits and inner hyphens in labels of 1 to 63 bytes, 253 bytes in all (RFC 1035
/// 2.3.1, the `sub-domain` of RFC 6376's selector and domain). Lowercase only: callers fold.
/// Also what keeps a name from turning into a path (`..`, `/`).
pub(super) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Lowercase A-label form of a domain (`Bücher.Example.` → `xn--bcher-kva.example`), or None
/// if it is not a DNS name.
pub(super) fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.trim();
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let domain = mail_auth::common::to_a_label(domain).to_ascii_lowercase();
    is_dns_name(&domain).then_some(domain)
}

/// All signing keys of the server.
#[derive(Debug, Default)]
pub struct DkimKeys {
    /// Sorted by (domain, selector), so listings are stable.
    keys: Vec<Arc<DkimKey>>,
    /// Domain → index of the key that signs for it (the newest).
    signing: HashMap<String, usize>,
}

impl DkimKeys {
    /// Reads every `*.pem` file of `dir` (hidden files and subdirectories are skipped). A
    /// missing directory means no keys; any bad key file is an error naming it, so a typo
    /// cannot silently turn signing off for a domain.
    pub fn load(dir: &Path) -> Result<DkimKeys, DkimError> {
        let fail = |path: &Path, e: &dyn std::fmt::Display| {
            DkimError(format!("DKIM key {}: {e}", path.display()))
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DkimKeys::default()),
            Err(e) => return Err(fail(dir, &e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| fail(dir, &e))?;
            let path = entry.path();
            let file_name = entry.file_name();
            let name = file_name.to_string_lossy();
            // Hidden: editor and `generate` temporaries.
            if name.starts_with('.') || !name.ends_with(".pem") {
                continue;
            }
            let meta = fs::metadata(&path).map_err(|e| fail(&path, &e))?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let key = DkimKey::read(&path, &name, modified).map_err(|e| fail(&path, &e))?;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "DKIM private key is readable by other users; chmod 600 it"
                );
            }
            keys.push(Arc::new(key));
        }
        Ok(DkimKeys::from_keys(keys))
    }

    fn from_keys(mut keys: Vec<Arc<DkimKey>>) -> DkimKeys {
        keys.sort_by(|a, b| (&a.domain, &a.selector).cmp(&(&b.domain, &b.selector)));
        let mut signing: HashMap<String, usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let newer = |other: &DkimKey| {
                // Same mtime (coarse clocks, copies): the later selector in sort order wins,
                // so the choice never depends on directory order.
                (key.modified, &key.selector) > (other.modified, &other.selector)
            };
            signing
                .entry(key.domain.clone())
                .and_modify(|best| {
                    if newer(&keys[*best]) {
                        *best = i;
                    }
                })
                .or_insert(i);
        }
        DkimKeys { keys, signing }
    }

    /// The key that signs for `domain` (any case, U- or A-labels): the newest file if the
    /// domain has several.
    pub fn for_domain(&self, domain: &str) -> Option<&DkimKey> {
        self.shared_for_domain(domain).map(|k| &**k)
    }

    pub(super) fn shared_for_domain(&self, domain: &str) -> Option<&Arc<DkimKey>> {
        let index = match self.signing.get(domain) {
            Some(index) => *index,
            None => *self.signing.get(&normalize_domain(domain)?)?,
        };
        Some(&self.keys[index])
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every key, also those a newer key for the same domain has replaced (their records
    /// should stay published until mail signed with them has been delivered).
    pub fn iter(&self) -> impl Iterator<Item = &DkimKey> {
        self.keys.iter().map(|k| &**k)
    }
}

/// The TXT record value (without the name): `v=DKIM1; k=ed25519; p=...`.
pub fn txt_record_value(key: &DkimKey) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        key.algorithm.key_type(),
        Base64::encode_string(&key.public_key)
    )
}

/// The record as a zone-file line, its value split into character-strings of at most 255
/// bytes: `surel._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; " "p=MIIB..." "..." )`.
/// The strings concatenate to [`txt_record_value`].
pub fn txt_record(key: &DkimKey) -> String {
    let mut strings = vec![format!("v=DKIM1; k={}; ", key.algorithm.key_type())];
    let p = format!("p={}", Base64::encode_string(&key.public_key));
    // Base64 is ASCII, so any byte boundary is a char boundary.
    strings.extend(
        p.as_bytes()
            .chunks(TXT_STRING_MAX)
            .map(|c| String::from_utf8_lossy(c).into_owned()),
    );
    let quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
    format!("{}. IN TXT ( {} )", key.record_name(), quoted.join(" "))
}

/// Generates a key for `domain` under `selector`, writes it to
/// `dir/<selector>._domainkey.<domain>.pem` (mode 0600, complete or not at all, never over an
/// existing file; `dir` is created 0700 if missing) and returns that path and the TXT record
/// line ([`txt_record`]) to publish.
pub fn generate(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
) -> Result<(PathBuf, String), DkimError> {
    let domain =
        normalize_domain(domain).ok_or_else(|| DkimError(format!("invalid domain {domain:?}")))?;
    let selector_lower = selector.to_ascii_lowercase();
    if !is_dns_name(&selector_lower) {
        return Err(DkimError(format!(
            "invalid selector {selector:?} (letters, digits, hyphens and dots)"
        )));
    }
    let selector = selector_lower;
    let file_name = format!("{selector}._domainkey.{domain}.pem");
    let path = dir.join(&file_name);
    let io_error = |what: &Path, e: io::Error| DkimError(format!("{}: {e}", what.display()));
    // Checked again, atomically, when the file is put in place; this only spares the work.
    if path.exists() {
        return Err(DkimError(format!(
            "{} already exists (choose another --selector to rotate keys)",
            path.display()
        )));
    }

    let der = match algorithm {
        DkimAlgorithm::Rsa => {
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
                .map_err(|e| DkimError(format!("generating an RSA key: {e}")))?;
            key.to_pkcs8_der()
                .map_err(|e| DkimError(format!("encoding the RSA key: {e}")))?
                .as_bytes()
                .to_vec()
        }
        DkimAlgorithm::Ed25519 => {
            let v2 = Ed25519Key::generate_pkcs8()
                .map_err(|e| DkimError(format!("generating an Ed25519 key: {e}")))?;
            // ring writes PKCS#8 v2 (with the public key), which OpenSSL 3.0 cannot read;
            // v1 (the seed alone, as `openssl genpkey` writes) is what every tool takes.
            let info = PrivateKeyInfoRef::try_from(v2.as_slice())
                .map_err(|e| DkimError(format!("encoding the Ed25519 key: {e}")))?;
            PrivateKeyInfoRef {
                public_key: None,
                ..info
            }
            .to_der()
            .map_err(|e| DkimError(format!("encoding the Ed25519 key: {e}")))?
        }
    };
    let pem = pem::encode_string(PEM_LABEL, LineEnding::LF, &der)
        .map_err(|e| DkimError(format!("encoding the key: {e}")))?;
    // Through the loader's own parser: what is written is what `load` will accept.
    let mut key = from_pem(pem.as_bytes()).map_err(|e| DkimError(format!("new key: {e}")))?;
    key.domain = domain;
    key.selector = selector;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, e))?;
    write_new_file(dir, &file_name, pem.as_bytes()).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => DkimError(format!("{} already exists", path.display())),
        _ => io_error(&path, e),
    })?;
    key.path = path.clone();
    Ok((path, txt_record(&key)))
}

/// Writes `dir/name` with mode 0600, all or nothing, failing with `AlreadyExists` rather than
/// replacing a file: the data goes to a hidden temporary first, is synced, then hard-linked
/// to its name (link(2) never overwrites), and the directory entry is synced.
fn write_new_file(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::hard_link(&temp, dir.join(name))
    })();
    let _ = fs::remove_file(&temp);
    result?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for good in [
            "surel",
            "s2024-01",
            "a.b",
            "example.org",
            "xn--bcher-kva.example",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".ab";
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a_b",
            "A",
            "a b",
            "../etc",
            "a/b",
            "a\0b",
            "ä",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
        assert_eq!(
            normalize_domain(" Bücher.Example. ").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(
            normalize_domain("EXAMPLE.org").as_deref(),
            Some("example.org")
        );
        assert_eq!(normalize_domain("exa mple.org"), None);
        assert_eq!(normalize_domain("[127.0.0.1]"), None);
    }

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("surel._domainkey.example.org.pem"),
            Some(("surel".into(), "example.org".into()))
        );
        assert_eq!(
            parse_file_name("S1.A._domainkey.Mail.Example.ORG.pem"),
            Some(("s1.a".into(), "mail.example.org".into()))
        );
        for bad in [
            "surel.example.org.pem",
            "surel._domainkey.example.org",
            "surel._domainkey.example.org.key",
            "._domainkey.example.org.pem",
            "surel._domainkey..pem",
            "surel._domainkey.ex_ample.org.pem",
            "a._domainkey.b._domainkey.c.pem",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generate_writes_0600_refuses_overwrite_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = key_dir(tmp.path());
        assert!(
            DkimKeys::load(&dir).unwrap().is_empty(),
            "missing dir = no keys"
        );

        let (path, record) =
            generate(&dir, "Example.ORG", "Surel", DkimAlgorithm::Ed25519).unwrap();
        assert_eq!(path, dir.join("surel._domainkey.example.org.pem"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let pem = fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        // No temporary left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

        let err = generate(&dir, "example.org", "surel", DkimAlgorithm::Rsa).unwrap_err();
        assert!(err.0.contains("already exists"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), pem, "file untouched");
        // Writing under the same name, even racing the check, fails the same way.
        assert_eq!(
            write_new_file(&dir, "surel._domainkey.example.org.pem", b"x")
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), pem);

        let keys = DkimKeys::load(&dir).unwrap();
        assert_eq!(keys.len(), 1);
        for query in ["example.org", "EXAMPLE.Org", "example.org."] {
            let key = keys.for_domain(query).unwrap_or_else(|| panic!("{query}"));
            assert_eq!(key.domain(), "example.org");
            assert_eq!(key.selector(), "surel");
            assert_eq!(key.algorithm(), DkimAlgorithm::Ed25519);
            assert_eq!(key.path(), path);
        }
        assert!(keys.for_domain("other.org").is_none());
        assert!(keys.for_domain("sub.example.org").is_none());
        assert!(keys.for_domain("").is_none());
        let key = keys.for_domain("example.org").unwrap();
        assert_eq!(key.public_key().len(), 32);
        assert_eq!(
            record,
            format!(
                "surel._domainkey.example.org. IN TXT ( \"v=DKIM1; k=ed25519; \" \"p={}\" )",
                Base64::encode_string(key.public_key())
            )
        );
    }

    #[test]
    fn rsa_record_is_spki_split_in_255_byte_strings() {
        let tmp = tempfile::tempdir().unwrap();
        let (path, record) =
            generate(tmp.path(), "example.net", "rsa1", DkimAlgorithm::Rsa).unwrap();
        let keys = DkimKeys::load(tmp.path()).unwrap();
        let key = keys.for_domain("example.net").unwrap();
        assert_eq!(key.algorithm(), DkimAlgorithm::Rsa);
        assert_eq!(key.path(), path);

        // p= is a SubjectPublicKeyInfo for a 2048-bit modulus, as the rsa crate encodes it.
        let spki = key.public_key();
        let public = <rsa::PublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(spki)
            .expect("p= is a SubjectPublicKeyInfo");
        assert_eq!(rsa::traits::PublicKeyParts::size(&public), 256);
        assert_eq!(spki.len(), 294);

        let value = txt_record_value(key);
        assert!(
            value.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
        );
        let prefix = "rsa1._domainkey.example.net. IN TXT ( ";
        let inner = record
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(" )"))
            .unwrap_or_else(|| panic!("{record}"));
        let strings = quoted_strings(inner);
        assert_eq!(strings.len(), 3, "{record}");
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings[1].len(), 255);
        assert_eq!(strings.concat(), value);
    }

    /// The contents of the `"..."` strings of a zone-file line.
    fn quoted_strings(line: &str) -> Vec<String> {
        line.split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s.to_string())
            .collect()
    }

    #[test]
    fn newest_key_signs_and_bad_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (old, _) = generate(dir, "example.org", "old", DkimAlgorithm::Ed25519).unwrap();
        let (new, _) = generate(dir, "example.org", "new", DkimAlgorithm::Ed25519).unwrap();
        generate(dir, "other.org", "surel", DkimAlgorithm::Ed25519).unwrap();
        // Make the ages unambiguous whatever the file system's clock granularity.
        let set_mtime = |path: &Path, secs: u64| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        set_mtime(&old, 2_000_000_000);
        set_mtime(&new, 1_000_000_000);
        // Files that are not keys are ignored.
        fs::write(dir.join("README"), "notes").unwrap();
        fs::write(dir.join(".surel._domainkey.x.org.pem.1.2.tmp"), "partial").unwrap();
        fs::create_dir(dir.join("archive.pem")).unwrap();

        let keys = DkimKeys::load(dir).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.for_domain("example.org").unwrap().selector(), "old");
        set_mtime(&new, 2_000_000_001);
        let keys = DkimKeys::load(dir).unwrap();
        assert_eq!(keys.for_domain("example.org").unwrap().selector(), "new");
        assert_eq!(keys.for_domain("OTHER.org").unwrap().selector(), "surel");
        let listed: Vec<String> = keys.iter().map(DkimKey::record_name).collect();
        assert_eq!(
            listed,
            [
                "new._domainkey.example.org",
                "old._domainkey.example.org",
                "surel._domainkey.other.org"
            ]
        );

        let bad_cases: [(&str, &[u8], &str); 4] = [
            (
                "s._domainkey.bad.org.pem",
                b"not pem at all",
                "not a PEM file",
            ),
            (
                "s._domainkey.bad.org.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "expected a PKCS#8",
            ),
            (
                "s._domainkey.bad.org.pem",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "not a PKCS#8 private key",
            ),
            ("no-domainkey-part.pem", b"irrelevant", "file name"),
        ];
        for (name, content, expected) in bad_cases {
            let bad = dir.join(name);
            fs::write(&bad, content).unwrap();
            let err = DkimKeys::load(dir).unwrap_err().0;
            assert!(err.contains(&bad.display().to_string()), "{err}");
            assert!(err.contains(expected), "{name}: {err}");
            fs::remove_file(&bad).unwrap();
        }
        assert_eq!(DkimKeys::load(dir).unwrap().len(), 3);
    }

    #[test]
    fn generate_rejects_bad_names_before_touching_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dkim");
        for (domain, selector) in [
            ("", "surel"),
            ("../../etc", "surel"),
            ("example.org/x", "surel"),
            ("exa mple.org", "surel"),
            ("example.org", ""),
            ("example.org", "../x"),
            ("example.org", "a/b"),
            ("example.org", "s_1"),
        ] {
            let err = generate(&dir, domain, selector, DkimAlgorithm::Ed25519).unwrap_err();
            assert!(
                err.0.starts_with("invalid "),
                "{domain:?} {selector:?}: {err}"
            );
        }
        assert!(!dir.exists());
    }

    #[test]
    fn loads_keys_written_by_openssl() {
        // Keys made elsewhere (`openssl genpkey`) are common; Ed25519 ones are PKCS#8 v1,
        // without the public key that ring's own files carry.
        let tmp = tempfile::tempdir().unwrap();
        let genpkey = |name: &str, args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .arg("genpkey")
                .args(args)
                .arg("-out")
                .arg(tmp.path().join(name))
                .output()
                .expect("this test needs the openssl command");
            assert!(out.status.success(), "{out:?}");
        };
        for (name, args) in [
            (
                "ed._domainkey.ed.example.pem",
                &["-algorithm", "ed25519"][..],
            ),
            (
                "rsa._domainkey.rsa.example.pem",
                &["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            ),
        ] {
            genpkey(name, args);
        }
        let keys = DkimKeys::load(tmp.path()).unwrap();
        assert_eq!(
            keys.for_domain("ed.example").unwrap().algorithm(),
            DkimAlgorithm::Ed25519
        );
        assert_eq!(
            keys.for_domain("rsa.example").unwrap().algorithm(),
            DkimAlgorithm::Rsa
        );

        // And the other way round: OpenSSL reads the keys `generate` writes.
        let ours = tempfile::tempdir().unwrap();
        for algorithm in [DkimAlgorithm::Rsa, DkimAlgorithm::Ed25519] {
            let (path, _) =
                generate(ours.path(), "example.org", algorithm.key_type(), algorithm).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["pkey", "-noout", "-in"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{algorithm}: {out:?}");
        }

        // A valid PKCS#8 key of an algorithm DKIM does not have (ECDSA P-256).
        genpkey(
            "ec._domainkey.ec.example.pem",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        let err = DkimKeys::load(tmp.path()).unwrap_err().0;
        assert!(err.contains("ec._domainkey.ec.example.pem"), "{err}");
        assert!(
            err.contains("unsupported key algorithm 1.2.840.10045.2.1"),
            "{err}"
        );
    }
}
