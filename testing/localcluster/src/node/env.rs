//! A container's environment, computed the way the kubelet does: `envFrom` first, then `env` (later
//! entries win), `$(VAR)` references expanded against what is defined so far.
//!
//! Pure: the caller fetches the referenced Secrets and ConfigMaps (see [`referenced_objects`]) and hands
//! them in as [`Lookups`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod};

/// Data of the Secrets and ConfigMaps a container refers to; `None` for one that does not exist.
#[derive(Debug, Default, Clone)]
pub struct Lookups {
    pub secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

/// Facts about the Pod that field references can read and that are not in the object yet.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
}

/// Why a container cannot be configured; reported as `CreateContainerConfigError` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Names of the Secrets and ConfigMaps a container's environment refers to.
pub fn referenced_objects(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(s) = &from.secret_ref {
            secrets.insert(s.name.clone());
        }
        if let Some(c) = &from.config_map_ref {
            config_maps.insert(c.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(from) = &var.value_from {
            if let Some(s) = &from.secret_key_ref {
                secrets.insert(s.name.clone());
            }
            if let Some(c) = &from.config_map_key_ref {
                config_maps.insert(c.name.clone());
            }
        }
    }
    (secrets, config_maps)
}

/// The full environment of a container: `base` (what the node adds: PATH, HOSTNAME, POD_IP, …), then
/// `envFrom`, then `env`.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    lookups: &Lookups,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Env::default();
    for (k, v) in base {
        env.set(k, v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (data, kind, name, optional) = if let Some(s) = &from.secret_ref {
            (
                lookups.secrets.get(&s.name),
                "secret",
                &s.name,
                s.optional.unwrap_or(false),
            )
        } else if let Some(c) = &from.config_map_ref {
            (
                lookups.config_maps.get(&c.name),
                "configmap",
                &c.name,
                c.optional.unwrap_or(false),
            )
        } else {
            continue;
        };
        match data.and_then(Option::as_ref) {
            Some(data) => {
                for (k, v) in data {
                    let key = format!("{prefix}{k}");
                    // The kubelet skips keys that are not valid variable names (and records an Event).
                    if is_env_name(&key) {
                        env.set(&key, v.clone());
                    }
                }
            }
            None if optional => {}
            None => return Err(ConfigError(format!("{kind} \"{name}\" not found"))),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match lookups.secrets.get(&r.name).and_then(Option::as_ref) {
                    None if optional => continue,
                    None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
                    Some(data) => match data.get(&r.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            )))
                        }
                    },
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match lookups.config_maps.get(&r.name).and_then(Option::as_ref) {
                    None if optional => continue,
                    None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
                    Some(data) => match data.get(&r.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            )))
                        }
                    },
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, f, facts)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(container, &r.resource)
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or(""), |name| env.get(name))
        };
        env.set(&var.name, value);
    }
    Ok(env.vars)
}

/// `$(VAR)` expansion as the kubelet does it: defined variables are replaced, undefined references are
/// kept verbatim, `$$` is an escaped `$`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a `fieldRef` (env or downward API volume).
pub fn field_value(pod: &Pod, f: &ObjectFieldSelector, facts: &PodFacts) -> Result<String, ConfigError> {
    let path = f.field_path.as_str();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    };
    Ok(value)
}

fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let inner = path.strip_prefix(field)?.strip_prefix("['")?.strip_suffix("']")?;
    Some(inner)
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `resourceFieldRef`: the container's own limit or request as written (the local node has no real
/// limits to report in their place).
fn resource_value(container: &Container, resource: &str) -> String {
    let resources = container.resources.as_ref();
    let (section, name) = match resource.split_once('.') {
        Some(parts) => parts,
        None => return String::new(),
    };
    let map = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => None,
    };
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".to_string())
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Ordered variables where a later `set` replaces the value but keeps the first position.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_from_yaml(yaml: &str) -> Pod {
        serde_norway::from_str(yaml).unwrap()
    }

    fn facts() -> PodFacts {
        PodFacts {
            pod_ip: "127.0.10.4".into(),
            host_ip: "127.0.0.1".into(),
        }
    }

    fn env_of(pod: &Pod, lookups: &Lookups) -> Result<BTreeMap<String, String>, ConfigError> {
        let c = &pod.spec.as_ref().unwrap().containers[0];
        Ok(
            container_env(pod, c, &facts(), lookups, &[("PATH".into(), "/bin".into())])?
                .into_iter()
                .collect(),
        )
    }

    const POD: &str = r#"
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  containers:
  - name: app
    envFrom:
    - configMapRef: {name: settings}
    - secretRef: {name: creds}
      prefix: DB_
    env:
    - {name: GREETING, value: "hello $(USER) at $(POD_IP), $$(USER) stays, $(NOPE) too"}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: MODE}}}
    - {name: OPT, valueFrom: {configMapKeyRef: {name: absent, key: x, optional: true}}}
"#;

    fn lookups() -> Lookups {
        let mut l = Lookups::default();
        l.secrets.insert(
            "creds".into(),
            Some(
                [
                    ("USER".into(), "alice".into()),
                    ("password".into(), "s3cret".into()),
                ]
                .into(),
            ),
        );
        l.config_maps.insert(
            "settings".into(),
            Some(
                [
                    ("MODE".into(), "blue".into()),
                    ("bad key".into(), "skipped".into()),
                ]
                .into(),
            ),
        );
        l.config_maps.insert("absent".into(), None);
        l
    }

    #[test]
    fn values_refs_and_env_from_arrive_with_env_winning() {
        let env = env_of(&pod_from_yaml(POD), &lookups()).unwrap();
        assert_eq!(env["DB_USER"], "alice");
        assert_eq!(env["PASSWORD"], "s3cret");
        assert_eq!(env["MODE"], "blue");
        assert_eq!(env["NAME"], "web-1");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["POD_IP"], "127.0.10.4");
        assert_eq!(env["PATH"], "/bin");
        assert!(!env.contains_key("OPT"));
        assert!(!env.contains_key("bad key"));
    }

    #[test]
    fn references_expand_only_to_variables_defined_before() {
        let env = env_of(&pod_from_yaml(POD), &lookups()).unwrap();
        // USER is not defined (only DB_USER is); POD_IP is defined after GREETING.
        assert_eq!(
            env["GREETING"],
            "hello $(USER) at $(POD_IP), $(USER) stays, $(NOPE) too"
        );
    }

    #[test]
    fn a_missing_secret_or_key_is_a_config_error_naming_it() {
        let mut l = lookups();
        l.secrets.insert("creds".into(), None);
        assert_eq!(
            env_of(&pod_from_yaml(POD), &l).unwrap_err().0,
            "secret \"creds\" not found"
        );
        let mut l = lookups();
        l.config_maps
            .insert("settings".into(), Some([("OTHER".into(), "x".into())].into()));
        assert_eq!(
            env_of(&pod_from_yaml(POD), &l).unwrap_err().0,
            "couldn't find key MODE in ConfigMap shop/settings"
        );
    }

    #[test]
    fn expansion_handles_escapes_and_unterminated_references() {
        let f = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand("$(A)-$$(A)-$(B)-$A-$(A", f), "1-$(A)-$(B)-$A-$(A");
    }
}
