//! Throughput of rustls's crypto providers on this machine, per TLS 1.3
//! cipher suite: an in-memory client/server pair (no sockets), the server
//! encrypting GIB gibibytes in 1 MiB writes, the client decrypting them.
//! The figures chose fxfer's provider (see docs/BENCHMARKS.md).
//!
//! cargo run --release --manifest-path bench/tls-providers/Cargo.toml -- [GIB]

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);
impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn run(name: &str, base: CryptoProvider, suite_name: &str, gib: usize) {
    let mut p = base.clone();
    p.cipher_suites
        .retain(|s| format!("{:?}", s.suite()) == suite_name);
    let p = Arc::new(p);
    let ck = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let sc = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let cc = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(p.clone())))
        .with_no_client_auth();
    let mut s = rustls::ServerConnection::new(Arc::new(sc)).unwrap();
    let mut c =
        rustls::ClientConnection::new(Arc::new(cc), ServerName::try_from("x").unwrap()).unwrap();
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut &buf[..]).unwrap();
        c.process_new_packets().unwrap();
    }
    s.set_buffer_limit(None);
    c.set_buffer_limit(None);
    let chunk = vec![7u8; 1 << 20];
    let mut out = vec![0u8; 1 << 20];
    let total = gib << 30;
    let (mut enc, mut dec) = (0f64, 0f64);
    let mut wire = Vec::with_capacity(2 << 20);
    let mut sent = 0;
    while sent < total {
        let t = Instant::now();
        s.writer().write_all(&chunk).unwrap();
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        enc += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut rd = &wire[..];
        let mut got = 0;
        while !rd.is_empty() || got < chunk.len() {
            if !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
            loop {
                match c.reader().read(&mut out) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(_) => break,
                }
            }
            if rd.is_empty() {
                break;
            }
        }
        assert_eq!(got, chunk.len());
        dec += t.elapsed().as_secs_f64();
        sent += chunk.len();
    }
    let g = total as f64 / 1e9;
    println!("{name:8} {suite_name:32} encrypt {:6.2} GB/s  decrypt {:6.2} GB/s  (cpu s/GiB enc {:.3} dec {:.3})", g/enc, g/dec, enc/gib as f64, dec/gib as f64);
}

fn main() {
    let gib: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1);
    for suite in [
        "TLS13_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ] {
        run("ring", rustls::crypto::ring::default_provider(), suite, gib);
        run(
            "aws-lc",
            rustls::crypto::aws_lc_rs::default_provider(),
            suite,
            gib,
        );
    }
}
