//! Test support for Lifeboat: a real local Kubernetes cluster.
//!
//! `control_plane`: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the Go
//! module proxy by `hack/build-control-plane.sh`, and the real node (kubelet, containerd, kube-proxy,
//! CoreDNS; `hack/node-up.sh`), all started by `hack/cluster-up.sh`; [`ensure`] starts the cluster once
//! per test run and hands out a client and a fresh namespace per test.

pub mod control_plane;

pub use control_plane::{cache_dir, ensure, Cluster, TestNamespace};
