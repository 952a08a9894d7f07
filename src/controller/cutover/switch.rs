//! Moving traffic: a Service's selector, an Ingress's backend Services, or a Gateway API HTTPRoute's
//! backendRefs (read as an untyped object, so the Gateway API CRDs are only needed when used).
//!
//! Reading the current value and computing the switched one are separate from writing it: the
//! reconciler records the current value in status (for rollback) before the write, and a rollback
//! writes the recorded value back verbatim.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::api::cutover::{CutoverSpec, IngressSwitch};

/// What carries the traffic, and which field of it is switched.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Service(String),
    Ingress(IngressSwitch),
    HttpRoute(String),
}

impl Target {
    pub fn of(spec: &CutoverSpec) -> Option<Target> {
        let switch = &spec.traffic_switch;
        if let Some(service) = &switch.service {
            return Some(Target::Service(service.name.clone()));
        }
        if let Some(ingress) = &switch.ingress {
            return Some(Target::Ingress(ingress.clone()));
        }
        switch
            .http_route
            .as_ref()
            .map(|route| Target::HttpRoute(route.name.clone()))
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Service(name) => format!("Service {name} selector"),
            Target::Ingress(ingress) => format!("Ingress {} backends", ingress.name),
            Target::HttpRoute(name) => format!("HTTPRoute {name} backendRefs"),
        }
    }

    fn resource(&self) -> (ApiResource, &str) {
        match self {
            Target::Service(name) => (ApiResource::erase::<Service>(&()), name),
            Target::Ingress(ingress) => (ApiResource::erase::<Ingress>(&()), &ingress.name),
            Target::HttpRoute(name) => (
                ApiResource {
                    group: "gateway.networking.k8s.io".into(),
                    version: "v1".into(),
                    api_version: "gateway.networking.k8s.io/v1".into(),
                    kind: "HTTPRoute".into(),
                    plural: "httproutes".into(),
                },
                name,
            ),
        }
    }
}

/// The current value of the switched field; `Ok(None)` when the object does not exist.
pub async fn read(client: &Client, namespace: &str, target: &Target) -> Result<Option<Value>, kube::Error> {
    let (resource, name) = target.resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let Some(object) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let field = match target {
        Target::Service(_) => object.data["spec"]["selector"].clone(),
        _ => object.data["spec"]["rules"].clone(),
    };
    Ok(Some(if field.is_null() { json!({}) } else { field }))
}

/// Writes `value` into the switched field as a JSON merge patch: lists (rules) are replaced whole, and
/// selector keys the new value lacks are deleted explicitly (a plain merge would keep the old side's).
pub async fn write(
    client: &Client,
    namespace: &str,
    target: &Target,
    value: &Value,
    manager: &str,
) -> Result<(), kube::Error> {
    let (resource, name) = target.resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let patch = match target {
        Target::Service(_) => {
            let current = api.get(name).await?.data["spec"]["selector"].clone();
            json!({"spec": {"selector": selector_merge_patch(&current, value)}})
        }
        _ => json!({"spec": {"rules": value}}),
    };
    let params = PatchParams {
        field_manager: Some(manager.to_owned()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(())
}

/// A merge patch turning selector `current` into exactly `desired`.
pub fn selector_merge_patch(current: &Value, desired: &Value) -> Value {
    let mut patch = desired.as_object().cloned().unwrap_or_default();
    for key in current.as_object().into_iter().flat_map(|m| m.keys()) {
        patch.entry(key.clone()).or_insert(Value::Null);
    }
    Value::Object(patch)
}

/// The switched value: the `to` selector, or the backends pointing at `to.service` instead of
/// `from.service`. `Err` when the object does not route to `from` at all (nothing to switch: a wrong
/// name in the spec, better refused than "succeeded").
pub fn switched(target: &Target, current: &Value, spec: &CutoverSpec) -> Result<Value, String> {
    match target {
        Target::Service(_) => Ok(serde_json::to_value(&spec.to.selector).unwrap_or_default()),
        Target::Ingress(filter) => {
            let (from, to) = services(spec)?;
            let mut rules = current.clone();
            let mut changed = 0;
            for rule in rules.as_array_mut().into_iter().flatten() {
                if filter
                    .host
                    .as_ref()
                    .is_some_and(|host| rule["host"].as_str() != Some(host.as_str()))
                {
                    continue;
                }
                for path in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
                    if filter
                        .path
                        .as_ref()
                        .is_some_and(|p| path["path"].as_str() != Some(p.as_str()))
                    {
                        continue;
                    }
                    let service = &mut path["backend"]["service"]["name"];
                    if service.as_str() == Some(from) {
                        *service = json!(to);
                        changed += 1;
                    }
                }
            }
            if changed == 0 {
                return Err(format!(
                    "no rule of Ingress {} sends traffic to Service {from}",
                    filter.name
                ));
            }
            Ok(rules)
        }
        Target::HttpRoute(name) => {
            let (from, to) = services(spec)?;
            let mut rules = current.clone();
            let mut changed = 0;
            for rule in rules.as_array_mut().into_iter().flatten() {
                for backend in rule["backendRefs"].as_array_mut().into_iter().flatten() {
                    let is_service = backend.get("kind").is_none_or(|k| k == "Service")
                        && backend.get("group").is_none_or(|g| g == "" || g == "core");
                    if is_service && backend["name"].as_str() == Some(from) {
                        backend["name"] = json!(to);
                        changed += 1;
                    }
                }
            }
            if changed == 0 {
                return Err(format!("no backendRef of HTTPRoute {name} names Service {from}"));
            }
            Ok(rules)
        }
    }
}

fn services(spec: &CutoverSpec) -> Result<(&str, &str), String> {
    match (&spec.from.service, &spec.to.service) {
        (Some(from), Some(to)) => Ok((from, to)),
        _ => Err("Ingress and HTTPRoute switching need from.service and to.service".into()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A blue/green Cutover spec with Services on both sides, switching through `switch`.
    pub(in crate::controller::cutover) fn spec(switch: Value) -> CutoverSpec {
        serde_json::from_value(json!({
            "trafficSwitch": switch,
            "from": {"selector": {"app": "web", "track": "blue"}, "service": "web-blue"},
            "to": {"selector": {"app": "web", "track": "green"}, "service": "web-green"},
        }))
        .unwrap()
    }

    #[test]
    fn a_service_gets_exactly_the_to_selector() {
        let spec = spec(json!({"service": {"name": "web"}}));
        let target = Target::of(&spec).unwrap();
        let current = json!({"app": "web", "track": "blue", "extra": "x"});
        let now = switched(&target, &current, &spec).unwrap();
        assert_eq!(now, json!({"app": "web", "track": "green"}));
        assert_eq!(
            selector_merge_patch(&current, &now),
            json!({"app": "web", "track": "green", "extra": null})
        );
    }

    #[test]
    fn an_ingress_switches_only_the_matching_host_and_path() {
        let spec = spec(json!({"ingress": {"name": "web", "host": "hotel.example"}}));
        let target = Target::of(&spec).unwrap();
        let rules = json!([
            {"host": "hotel.example", "http": {"paths": [
                {"path": "/", "backend": {"service": {"name": "web-blue", "port": {"number": 80}}}},
                {"path": "/static", "backend": {"service": {"name": "cdn", "port": {"number": 80}}}}]}},
            {"host": "other.example", "http": {"paths": [
                {"path": "/", "backend": {"service": {"name": "web-blue", "port": {"number": 80}}}}]}}
        ]);
        let now = switched(&target, &rules, &spec).unwrap();
        assert_eq!(
            now[0]["http"]["paths"][0]["backend"]["service"]["name"],
            "web-green"
        );
        assert_eq!(now[0]["http"]["paths"][1]["backend"]["service"]["name"], "cdn");
        assert_eq!(
            now[1]["http"]["paths"][0]["backend"]["service"]["name"],
            "web-blue"
        );
        let unrelated = spec_with_from("nothing");
        assert!(switched(&target, &rules, &unrelated)
            .unwrap_err()
            .contains("Service nothing"));
    }

    fn spec_with_from(service: &str) -> CutoverSpec {
        let mut spec = spec(json!({"ingress": {"name": "web"}}));
        spec.from.service = Some(service.into());
        spec
    }

    #[test]
    fn an_http_route_switches_service_backend_refs() {
        let spec = spec(json!({"httpRoute": {"name": "web"}}));
        let target = Target::of(&spec).unwrap();
        let rules = json!([{"backendRefs": [{"name": "web-blue", "port": 80}, {"name": "web-blue", "kind": "Other", "group": "x.io"}]}]);
        let now = switched(&target, &rules, &spec).unwrap();
        assert_eq!(now[0]["backendRefs"][0]["name"], "web-green");
        assert_eq!(now[0]["backendRefs"][1]["name"], "web-blue");
    }
}
