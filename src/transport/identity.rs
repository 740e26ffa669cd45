//! Who a server is: its key and certificate, and the fingerprint clients pin.
//!
//! A server without `--cert`/`--key` creates a key and a self-signed
//! certificate on first start and keeps both (mode 0600) in its state
//! folder. The fingerprint is the SHA-256 of the certificate's public key
//! (its SubjectPublicKeyInfo), not of the certificate, so a certificate
//! made anew from the same key keeps the server's identity.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::PublicKeyData;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{describe_io, Error};

/// Names of the identity files inside the state folder.
pub const KEY_FILE: &str = "identity-key.pem";
pub const CERT_FILE: &str = "identity-cert.pem";

/// SHA-256 of a server's public key (SubjectPublicKeyInfo, DER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub const PREFIX: &'static str = "SHA256:";

    pub fn of_spki(spki_der: &[u8]) -> Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA256, spki_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// The fingerprint of the public key in a DER certificate.
    pub fn of_cert(cert: &CertificateDer<'_>) -> Result<Fingerprint, String> {
        let ee = webpki::EndEntityCert::try_from(cert)
            .map_err(|e| format!("unreadable certificate: {e:?}"))?;
        Ok(Fingerprint::of_spki(ee.subject_public_key_info().as_ref()))
    }

    /// Parses `SHA256:<base64>` (unpadded, as OpenSSH prints it; padding
    /// is accepted too).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let t = text.trim();
        let b64 = t
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| format!("fingerprint '{t}' must start with {}", Self::PREFIX))?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| format!("fingerprint '{t}' is not valid base64"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("fingerprint '{t}' is not 32 bytes (a SHA-256)"))?;
        Ok(Fingerprint(arr))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0)
        )
    }
}

/// A server's key, certificate chain and fingerprint.
#[derive(Debug)]
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub fingerprint: Fingerprint,
    /// Where it came from, for the start-up log line.
    pub origin: String,
}

/// Loads the identity kept in `state_dir`, creating the folder (0700), the
/// key and the certificate (0600) when missing. A missing or mismatched
/// certificate is made anew from the key: the identity is the key.
pub fn load_or_create(state_dir: &Path) -> Result<Identity, Error> {
    let key_path = state_dir.join(KEY_FILE);
    let cert_path = state_dir.join(CERT_FILE);
    if !state_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| state_err("cannot create state folder", state_dir, &e))?;
    }
    let (key_pair, created) = if key_path.exists() {
        check_private(&key_path)?;
        let pem = fs::read_to_string(&key_path)
            .map_err(|e| state_err("cannot read identity key", &key_path, &e))?;
        let kp = rcgen::KeyPair::from_pem(&pem).map_err(|e| {
            Error::Config(format!(
                "identity key {} is not a usable private key: {e}",
                key_path.display()
            ))
        })?;
        (kp, false)
    } else {
        let kp = rcgen::KeyPair::generate()
            .map_err(|e| Error::Config(format!("cannot generate a key: {e}")))?;
        write_private(&key_path, kp.serialize_pem().as_bytes())?;
        (kp, true)
    };
    let fingerprint = Fingerprint::of_spki(&key_pair.subject_public_key_info());
    let existing = if created {
        None
    } else {
        read_cert_matching(&cert_path, &fingerprint)
    };
    let cert = match existing {
        Some(c) => c,
        None => {
            let mut params = rcgen::CertificateParams::new(vec!["fxfer-server".to_string()])
                .map_err(|e| Error::Config(format!("cannot make a certificate: {e}")))?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "fxfer server");
            let cert = params
                .self_signed(&key_pair)
                .map_err(|e| Error::Config(format!("cannot make a certificate: {e}")))?;
            write_private(&cert_path, cert.pem().as_bytes())?;
            cert.der().clone()
        }
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok(Identity {
        certs: vec![cert],
        key,
        fingerprint,
        origin: if created {
            format!("created a new identity in {}", state_dir.display())
        } else {
            format!("identity from {}", state_dir.display())
        },
    })
}

/// The certificate in `path` when it holds the key with `fp`; `None` when
/// it is missing, unreadable or for another key (it is then made anew).
fn read_cert_matching(path: &Path, fp: &Fingerprint) -> Option<CertificateDer<'static>> {
    let cert = CertificateDer::from_pem_file(path).ok()?;
    match Fingerprint::of_cert(&cert) {
        Ok(f) if f == *fp => Some(cert),
        _ => {
            log::warn!(
                "certificate {} does not match the identity key; making a new one",
                path.display()
            );
            None
        }
    }
}

/// A CA-issued (or any) certificate chain and key from PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<Identity, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Config(format!("cannot read --cert {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Config(format!("cannot read --cert {}: {e}", cert.display())))?;
    let Some(first) = certs.first() else {
        return Err(Error::Config(format!(
            "--cert {} holds no certificate",
            cert.display()
        )));
    };
    let fingerprint = Fingerprint::of_cert(first)
        .map_err(|e| Error::Config(format!("--cert {}: {e}", cert.display())))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Config(format!("cannot read --key {}: {e}", key.display())))?;
    Ok(Identity {
        certs,
        key: key_der,
        fingerprint,
        origin: format!("certificate {}", cert.display()),
    })
}

/// Refuses a key file others may read, as OpenSSH does.
fn check_private(path: &Path) -> Result<(), Error> {
    let md = fs::metadata(path).map_err(|e| state_err("cannot read identity key", path, &e))?;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "identity key {} is open to other users (mode {mode:04o}); run chmod 600 on it",
            path.display()
        )));
    }
    Ok(())
}

/// Writes a file readable by its owner only, whole or not at all.
fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp: PathBuf = path.with_extension(format!("tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        state_err("cannot write", path, &e)
    })
}

fn state_err(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::Config(format!("{what} {}: {}", path.display(), describe_io(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_as_text() {
        let fp = Fingerprint::of_spki(b"not really a key");
        let text = fp.to_string();
        assert!(
            text.starts_with("SHA256:") && !text.ends_with('='),
            "{text}"
        );
        assert_eq!(Fingerprint::parse(&text).unwrap(), fp);
        assert_eq!(Fingerprint::parse(&format!("{text}=")).unwrap(), fp);
        assert!(Fingerprint::parse("MD5:abc").is_err());
        assert!(Fingerprint::parse("SHA256:abc").is_err());
    }

    #[test]
    fn identity_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = load_or_create(&state).unwrap();
        for f in [KEY_FILE, CERT_FILE] {
            let mode = fs::metadata(state.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let b = load_or_create(&state).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.certs, b.certs);
        // A lost certificate is made anew from the key: same identity.
        fs::remove_file(state.join(CERT_FILE)).unwrap();
        let c = load_or_create(&state).unwrap();
        assert_eq!(a.fingerprint, c.fingerprint);
        assert_eq!(Fingerprint::of_cert(&c.certs[0]).unwrap(), a.fingerprint);
        // A key others can read is refused.
        fs::set_permissions(state.join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&state).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
