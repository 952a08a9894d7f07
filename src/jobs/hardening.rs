//! The security every Pod Lifeboat creates carries unless the user says otherwise: what Pod Security
//! `restricted` requires (non-root, no privilege escalation, every capability dropped, the runtime's
//! seccomp profile), plus a read-only root filesystem for the agent, whose only writes go to an emptyDir.

use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, PodSecurityContext, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};

/// Where the agent's temporary files and restic's cache live: an emptyDir, because the root filesystem
/// is read-only. Not /tmp itself: a local-path repository or dump may live under /tmp on a node, and
/// a mount there would hide it.
pub const SCRATCH_MOUNT: &str = "/tmp/lifeboat";
const SCRATCH_VOLUME: &str = "tmp";

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// The Pod-level defaults: run as a non-root user under the runtime's seccomp profile.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

/// The container-level defaults. `read_only_root` is false for the user's own images, whose programs
/// (migrations, smoke tests) may write anywhere.
pub fn restricted_container(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        read_only_root_filesystem: read_only_root.then_some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

/// The writable emptyDir a read-only container writes its temporary files into.
pub fn scratch_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: SCRATCH_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        VolumeMount {
            name: SCRATCH_VOLUME.into(),
            mount_path: SCRATCH_MOUNT.into(),
            ..Default::default()
        },
    )
}
