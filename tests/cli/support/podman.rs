//! [`Podman`]: the real `podman` pulling through a generated registries.conf,
//! with its own storage in a temp dir (`--root`, `--runroot`, the `vfs`
//! driver), so nothing touches the machine's images. Pulls need no daemon
//! and no container runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{require_tool, temp_dir};

/// A podman with private storage and a given registries.conf.
pub struct Podman {
    storage: tempfile::TempDir,
    registries_conf: PathBuf,
    cert_dir: Option<PathBuf>,
}

impl Podman {
    /// Pulls will use `registries_conf` (`CONTAINERS_REGISTRIES_CONF`).
    pub fn with_registries_conf(registries_conf: &Path) -> Podman {
        require_tool("podman", "podman");
        Podman {
            storage: temp_dir(),
            registries_conf: registries_conf.to_owned(),
            cert_dir: None,
        }
    }

    /// Pulls trust the CA certificates in `dir` (`--cert-dir`).
    pub fn cert_dir(mut self, dir: &Path) -> Podman {
        self.cert_dir = Some(dir.to_owned());
        self
    }

    /// `podman ARGS…` with the private storage; the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        let root = self.storage.path();
        Command::new("podman")
            .arg(format!("--root={}", root.join("root").display()))
            .arg(format!("--runroot={}", root.join("run").display()))
            .arg("--storage-driver=vfs")
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            // No user registries.conf or auth file from the machine.
            .env("HOME", root)
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .expect("running podman")
    }

    /// `podman pull REFERENCE`; the output whatever the status.
    pub fn pull(&self, reference: &str) -> Output {
        let mut args = vec!["pull", "--quiet"];
        let cert_dir;
        if let Some(dir) = &self.cert_dir {
            cert_dir = format!("--cert-dir={}", dir.display());
            args.push(&cert_dir);
        }
        args.push(reference);
        self.run(&args)
    }

    /// The repository digests podman records for the local image `reference`.
    pub fn repo_digests(&self, reference: &str) -> Vec<String> {
        let o = self.run(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            reference,
        ]);
        assert!(
            o.status.success(),
            "podman image inspect {reference}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).expect("a JSON list of digests")
    }
}
