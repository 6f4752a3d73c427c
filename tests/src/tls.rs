//! TLS material made by the test with `openssl`: a CA, a server certificate for `127.0.0.1` and
//! `localhost` signed by it, a client certificate signed by it, and an unrelated CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{RedisServer, ScratchDir};

/// Certificates and keys in a temporary directory, removed when dropped.
#[derive(Debug)]
pub struct Certificates {
    dir: ScratchDir,
}

impl Certificates {
    /// Generates the CA, server, client and other-CA certificates (RSA 2048, one day).
    pub fn generate() -> Certificates {
        let certs = Certificates {
            dir: ScratchDir::new("tls"),
        };
        for ca in ["ca", "other-ca"] {
            certs.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN=redis-cache test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        std::fs::write(
            certs.dir.path().join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write san.ext");
        for (name, cn) in [
            ("server", "localhost"),
            ("client", "redis-cache test client"),
        ] {
            certs.openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            certs.openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "san.ext",
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        certs
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl (is it installed?)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A file's contents.
    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).expect("read certificate")
    }

    /// Starts a server that speaks TLS only and requires a client certificate signed by the CA.
    pub fn server(&self) -> RedisServer {
        let arg = |file: &str| path_str(&self.path(file));
        RedisServer::start_tls(&[
            "--tls-cert-file",
            &arg("server.crt"),
            "--tls-key-file",
            &arg("server.key"),
            "--tls-ca-cert-file",
            &arg("ca.crt"),
            "--tls-auth-clients",
            "yes",
        ])
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_string()
}
