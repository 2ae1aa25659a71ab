//! A throwaway CA for loopback TLS: server certificates carry the SANs the Go programs need
//! (IP:127.0.0.1, DNS:localhost) and both serverAuth and clientAuth, because notary-server
//! shows its certificate to notary-signer as a client.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub ca_pem: String,
}

pub struct IssuedCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign ca");
        let ca_pem = cert.pem();
        TestCa { cert, key, ca_pem }
    }

    /// Issues a loopback server+client certificate and writes `<stem>.crt`, `<stem>.key`
    /// and `ca.crt` into `dir`.
    pub fn issue(&self, dir: &Path, stem: &str) -> IssuedCert {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "localhost");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        std::fs::create_dir_all(dir).expect("mkdir");
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        let ca_path = dir.join("ca.crt");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        std::fs::write(&ca_path, &self.ca_pem).expect("write ca");
        IssuedCert {
            cert_path,
            key_path,
            ca_path,
        }
    }
}
