//! The HTTPS certificate: a real one from files, or a self-signed one made
//! with rcgen (kept under `certs/` so browsers are asked to trust it once).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::TlsSource;

pub struct Loaded {
    pub server_config: Arc<rustls::ServerConfig>,
    /// Set when a self-signed certificate was made on this start.
    pub created: Option<std::path::PathBuf>,
}

pub fn load(source: &TlsSource, names: &[String], ips: &[IpAddr]) -> anyhow::Result<Loaded> {
    let (chain, key, created) = match source {
        TlsSource::Files { cert, key } => {
            let (c, k) = read_pem(cert, key)?;
            (c, k, None)
        }
        TlsSource::InMemory => {
            let (c, k) = self_signed(names, ips)?;
            (vec![c.der().clone()], k, None)
        }
        TlsSource::SelfSigned { dir } => {
            let cert = dir.join("tuxa-dev.crt.pem");
            let key = dir.join("tuxa-dev.key.pem");
            if cert.exists() && key.exists() {
                let (c, k) = read_pem(&cert, &key)?;
                (c, k, None)
            } else {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let params = params(names, ips)?;
                let key_pair = rcgen::KeyPair::generate()?;
                let c = params.self_signed(&key_pair)?;
                std::fs::write(&cert, c.pem())
                    .with_context(|| format!("writing {}", cert.display()))?;
                write_private(&key, key_pair.serialize_pem().as_bytes())?;
                let k = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
                (vec![c.der().clone()], k, Some(cert))
            }
        }
    };
    // TLS 1.2 and 1.3 only (rustls has nothing older), aws-lc-rs explicitly:
    // the test clients link another provider, and rustls refuses to guess.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not match or are unusable")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        server_config: Arc::new(cfg),
        created,
    })
}

fn params(names: &[String], ips: &[IpAddr]) -> anyhow::Result<rcgen::CertificateParams> {
    let mut sans: Vec<String> = vec!["localhost".into()];
    sans.extend(names.iter().cloned());
    let mut p = rcgen::CertificateParams::new(sans)?;
    for ip in ips {
        p.subject_alt_names.push(rcgen::SanType::IpAddress(*ip));
    }
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "tuxa development certificate");
    Ok(p)
}

fn self_signed(
    names: &[String],
    ips: &[IpAddr],
) -> anyhow::Result<(rcgen::Certificate, PrivateKeyDer<'static>)> {
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params(names, ips)?.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok((cert, key))
}

fn read_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            anyhow::bail!("{} holds no private key", key.display())
        }
        Err(e) => return Err(e).with_context(|| format!("parsing {}", key.display())),
    };
    Ok((chain, key))
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_certificate_is_made_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!("tuxa-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let source = TlsSource::SelfSigned { dir: dir.clone() };
        let ips = [IpAddr::from([127, 0, 0, 1])];
        let first = load(&source, &[], &ips).unwrap();
        let cert = dir.join("tuxa-dev.crt.pem");
        assert_eq!(first.created.as_deref(), Some(cert.as_path()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("tuxa-dev.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
        let pem = std::fs::read(&cert).unwrap();
        // The second start reads the PEM files back instead of making new ones.
        let second = load(&source, &[], &ips).unwrap();
        assert!(second.created.is_none());
        assert_eq!(std::fs::read(&cert).unwrap(), pem);
        // The same files given as a real certificate load too.
        let files = TlsSource::Files {
            cert: cert.clone(),
            key: dir.join("tuxa-dev.key.pem"),
        };
        assert!(load(&files, &[], &ips).is_ok());

        // What is wrong with a file is said, with its name.
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = |source: &TlsSource| format!("{:#}", load(source, &[], &ips).err().unwrap());
        let msg = e(&TlsSource::Files {
            cert: empty.clone(),
            key: dir.join("tuxa-dev.key.pem"),
        });
        assert!(msg.contains("empty.pem holds no certificate"), "{msg}");
        let msg = e(&TlsSource::Files {
            cert: cert.clone(),
            key: cert.clone(),
        });
        assert!(msg.contains("holds no private key"), "{msg}");
        let broken = dir.join("broken.pem");
        std::fs::write(&broken, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
        let msg = e(&TlsSource::Files {
            cert: cert.clone(),
            key: broken,
        });
        assert!(
            msg.contains("parsing") && msg.contains("broken.pem"),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
