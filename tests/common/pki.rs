//! A throwaway CA made with `openssl` in a test's directory: a server
//! certificate for 127.0.0.1 and a client certificate, EC P-256, two days.

use std::path::{Path, PathBuf};
use std::process::Command;

const CNF: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
subjectAltName = IP:127.0.0.1
keyUsage = critical,digitalSignature
# etcd's JSON gateway dials etcd's gRPC with the server certificate.
extendedKeyUsage = serverAuth,clientAuth
[client]
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
";

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl; scripts/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    /// A CA named `name` and its two certificates, in `dir/name/`.
    pub fn make(dir: &Path, name: &str) -> Pki {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("pki.cnf"), CNF).unwrap();
        let cn = format!("/CN=holdfast test CA {name}");
        let mut args = vec!["req", "-x509", "-config", "pki.cnf", "-extensions", "ca"];
        args.extend(EC);
        args.extend(["-nodes", "-days", "2", "-subj", &cn]);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&d, &args);
        for (leaf, cn) in [("server", "/CN=127.0.0.1"), ("client", "/CN=holdfast")] {
            let (key, csr, pem) = (
                format!("{leaf}.key"),
                format!("{leaf}.csr"),
                format!("{leaf}.pem"),
            );
            let mut args = vec!["req", "-new", "-config", "pki.cnf"];
            args.extend(EC);
            args.extend(["-nodes", "-subj", cn, "-keyout", &key, "-out", &csr]);
            openssl(&d, &args);
            openssl(
                &d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "pki.cnf",
                    "-extensions",
                    leaf,
                    "-out",
                    &pem,
                ],
            );
        }
        Pki {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
        }
    }
}
