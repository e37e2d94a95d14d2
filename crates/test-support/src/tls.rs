//! Certificates for TLS tests: a certificate authority made in the test, and server
//! certificates it signs for loopback names.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A certificate authority made for one test.
#[derive(Debug)]
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM: what a client trusts.
    pub pem: String,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Authority {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Authority {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("CA certificate parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        let certificate = params
            .self_signed(&key)
            .expect("a self-signed CA certificate");
        Authority {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (IP addresses or host names), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(address) => SanType::IpAddress(address),
                Err(_) => SanType::DnsName((*name).try_into().expect("a DNS name")),
            })
            .collect();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        let key = KeyPair::generate().expect("a server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a certificate signed by the CA");
        Issued {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `path` (what a client is told to trust).
    pub fn write_pem(&self, path: &std::path::Path) {
        std::fs::write(path, &self.pem).expect("write the CA certificate");
    }
}
