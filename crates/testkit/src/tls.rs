//! Certificates for tests that speak TLS, made with the `openssl` command: a private CA
//! ([`TestCa`]) and server certificates it signs for `localhost` and `127.0.0.1`
//! ([`TestCa::issue`]), each with a fresh key.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private certificate authority in a directory: `ca.pem` (what clients trust) and its key.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    /// The CA's certificate (PEM).
    pub cert: PathBuf,
}

/// A server certificate signed by a [`TestCa`], and its private key (PEM files).
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA in `dir`; `None` (said on stderr) when there is no `openssl` command, so a
    /// test can skip — CI checks that the command exists.
    ///
    /// # Panics
    /// `openssl` exists but fails.
    pub fn new(dir: &Path) -> Option<TestCa> {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("skipped: no openssl command to make the test certificates");
            return None;
        }
        let ca = TestCa {
            dir: dir.to_path_buf(),
            cert: dir.join("ca.pem"),
        };
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pynomaly test CA",
        ]);
        Some(ca)
    }

    /// A certificate for `localhost` and `127.0.0.1` named `name` (`name.pem`, `name.key`),
    /// signed by this CA with a key of its own.
    ///
    /// # Panics
    /// `openssl` fails.
    pub fn issue(&self, name: &str) -> Leaf {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write the certificate's extensions");
        let (cert, key, csr) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        Leaf {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
