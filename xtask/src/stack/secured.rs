//! The secured stack's credentials: a local CA and the certificates it
//! signs, and the passwords of the SCRAM, PostgreSQL and registry users,
//! made once in `<state>/secured/tls` and kept private to this account.

use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The user weir connects as, to every service.
pub const USER: &str = "weir";
/// Kafka's inter-broker user.
pub const KAFKA_ADMIN: &str = "admin";

/// Where the secured stack's CA, certificates and passwords are.
#[derive(Debug, Clone)]
pub struct Credentials {
    dir: PathBuf,
}

impl Credentials {
    /// The credentials kept in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The CA every client trusts.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The services' certificate (for `localhost` and 127.0.0.1).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The services' private key (PKCS#8).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The key then the certificate, in one file: Kafka's PEM keystore.
    pub fn server_keystore(&self) -> PathBuf {
        self.dir.join("server-keystore.pem")
    }

    /// A client certificate the CA signed (mutual TLS).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The file holding `who`'s password (`kafka`, `kafka-admin`,
    /// `postgres`, `registry`).
    pub fn password_file(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.password"))
    }

    /// `who`'s password.
    pub fn password(&self, who: &str) -> Result<String> {
        let file = self.password_file(who);
        Ok(fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .trim()
            .to_owned())
    }

    /// Makes what is missing: the CA, the certificates, the passwords.
    pub fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        if !self.client_key().is_file() {
            println!(
                "secured stack: making a local CA and certificates in {}",
                self.dir.display()
            );
            self.make_certificates()?;
        }
        for who in ["kafka", "kafka-admin", "postgres", "registry"] {
            if !self.password_file(who).is_file() {
                write_private(&self.password_file(who), &random_password()?)?;
            }
        }
        Ok(())
    }

    fn make_certificates(&self) -> Result<()> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "weir local stack CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            // The broker is also a client of itself (its inter-broker listener).
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, USER);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client_cert = client.signed_by(&client_key, &issuer)?;

        fs::write(self.ca(), ca_cert.pem())?;
        fs::write(self.server_cert(), server_cert.pem())?;
        write_private(&self.server_key(), &server_key.serialize_pem())?;
        write_private(
            &self.server_keystore(),
            &format!("{}{}", server_key.serialize_pem(), server_cert.pem()),
        )?;
        fs::write(self.client_cert(), client_cert.pem())?;
        write_private(&self.client_key(), &client_key.serialize_pem())?;
        Ok(())
    }
}

/// Writes `text` to a new file only its owner can read.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(())
}

/// 24 random characters of `[0-9a-f]` from the kernel's generator.
fn random_password() -> Result<String> {
    let mut bytes = [0u8; 12];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
