//! The root certificates Carteiro's TLS clients trust, compiled in.
//!
//! Why not the system store: reading it (`/etc/ssl/certs`, a bundle plus a directory of
//! ~150 files, each parsed) was most of every Lambda's INIT — 4–5 ms of 7–12 ms on a 2-core
//! machine, against 1.3 ms for a hello-world Lambda (docs/benchmarks.md, cold start). The
//! compiled-in sets cost no file access, are the same on every host, and are small enough to
//! load in microseconds:
//!
//! - the AWS SDK trusts the **Amazon Trust Services roots** only ([`aws_root_certificates_pem`]):
//!   every AWS service endpoint, regional, FIPS or VPC, chains to them, and trusting five roots
//!   instead of Mozilla's hundred-odd leaves fewer CAs able to impersonate AWS;
//! - the Graph API client trusts Mozilla's set as `webpki-roots` trust anchors
//!   ([`graph_client_tls`]): no certificate parsing at all;
//! - SMTP (lettre) trusts the same `webpki-roots`, per connection.

use std::sync::Arc;

/// The Amazon Trust Services roots (Amazon Root CA 1–4, and Starfield Services Root G2, which
/// cross-signs Amazon Root CA 1 so older chains still verify), as one PEM bundle: the form the
/// AWS SDK's trust store takes. A file, not a search through Mozilla's set at INIT: the search
/// cost 2 ms. A test checks it against `webpki-root-certs`; all five are valid until 2037–2040.
pub fn aws_root_certificates_pem() -> &'static str {
    include_str!("amazon-trust-services-roots.pem")
}

/// The TLS configuration of the Graph API client: rustls over aws-lc-rs, TLS 1.2 and 1.3,
/// Mozilla's roots as ready-made trust anchors.
pub fn graph_client_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_aws_bundle_is_mozillas_five_amazon_trust_services_roots() {
        let bundle: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(aws_root_certificates_pem().as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(bundle.len(), 5);
        let names: [&[u8]; 5] = [
            b"Amazon Root CA 1",
            b"Amazon Root CA 2",
            b"Amazon Root CA 3",
            b"Amazon Root CA 4",
            b"Starfield Services Root Certificate Authority - G2",
        ];
        for (cert, name) in bundle.iter().zip(names) {
            assert!(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.contains(cert),
                "{} is not in Mozilla's set",
                String::from_utf8_lossy(name)
            );
            assert!(cert.windows(name.len()).any(|w| w == name));
            // rustls can make a trust anchor of it (the SDK's trust store does this).
            let mut store = rustls::RootCertStore::empty();
            assert!(store.add(cert.clone()).is_ok());
        }
    }

    #[test]
    fn the_graph_client_trusts_mozillas_roots() {
        assert!(graph_client_tls().is_ok());
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }
}
