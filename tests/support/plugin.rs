//! `kubectl lifeboat`, run the way users run it: the binary linked as `kubectl-lifeboat` on the PATH and
//! found by the real kubectl's plugin lookup.

use std::process::{Command, Output};

/// `kubectl` with a PATH on which `kubectl-lifeboat` is this build's binary.
pub struct Kubectl {
    cluster: super::Cluster,
    plugins: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(cluster: &super::Cluster) -> Kubectl {
        let plugins = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_lifeboat"),
            plugins.path().join("kubectl-lifeboat"),
        )
        .unwrap();
        Kubectl {
            cluster: cluster.clone(),
            plugins,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.plugins.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command: Command = self.cluster.kubectl();
        command.env("PATH", path).arg("lifeboat").args(args);
        command
    }

    pub fn lifeboat(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `kubectl lifeboat ARGS`, panicking with its output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.lifeboat(args);
        if let Err(message) = super::ensure_success(&format!("kubectl lifeboat {}", args.join(" ")), &output)
        {
            panic!("{message}");
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs it expecting a refusal; returns stderr.
    pub fn refused(&self, args: &[&str]) -> String {
        let output = self.lifeboat(args);
        assert!(
            !output.status.success(),
            "kubectl lifeboat {} succeeded",
            args.join(" ")
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}
