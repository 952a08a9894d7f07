//! The API reference (docs/api-reference.md), generated from the same Rust types as the CRDs: every field
//! by its full path, with its type, whether it is required, its description and what the API server
//! enforces (defaults, bounds, patterns, CEL rules). Kubernetes' own types (tolerations, env, resources)
//! link to the Kubernetes reference instead of being repeated. `just crds` writes it; a test fails when
//! the committed file is stale, so the reference cannot drift from what `kubectl explain` shows.

use std::fmt::Write;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::api;

/// The whole document.
pub fn markdown() -> String {
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the Rust types by `just crds` (`lifeboat crds --api-reference docs/api-reference.md`);\n\
         do not edit. Every field also has its description in `kubectl explain`, e.g.\n\
         `kubectl explain cutover.spec.trafficSwitch`. Group `lifeboat.dev`, version `v1alpha1`; every kind is\n\
         namespaced and in the category `lifeboat` (`kubectl get lifeboat -A`).\n\n",
    );
    let kinds = [
        kind::<api::BackupPolicySpec, api::BackupPolicyStatus>(api::BackupPolicy::crd()),
        kind::<api::BackupSpec, api::BackupStatus>(api::Backup::crd()),
        kind::<api::RestoreSpec, api::RestoreStatus>(api::Restore::crd()),
        kind::<api::RestoreDrillSpec, api::RestoreDrillStatus>(api::RestoreDrill::crd()),
        kind::<api::CutoverSpec, api::CutoverStatus>(api::Cutover::crd()),
    ];
    for kind in &kinds {
        let _ = writeln!(out, "- [{0}](#{1})", kind.name, kind.name.to_lowercase());
    }
    out.push('\n');
    for kind in kinds {
        out.push_str(&kind.body);
    }
    out
}

struct Kind {
    name: String,
    body: String,
}

fn kind<Spec: JsonSchema, Status: JsonSchema>(crd: CustomResourceDefinition) -> Kind {
    let name = crd.spec.names.kind.clone();
    let version = &crd.spec.versions[0];
    let root = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    let mut body = format!("## {name}\n\n");
    if let Some(description) = root.and_then(|r| r.description.as_deref()) {
        let _ = writeln!(body, "{}\n", one_line(description));
    }
    let short_names = crd.spec.names.short_names.clone().unwrap_or_default();
    let _ = writeln!(
        body,
        "`kubectl get {}` ({}). Columns: {}.\n",
        crd.spec.names.plural,
        short_names
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", "),
        version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rules: Vec<String> = root
        .and_then(|r| r.x_kubernetes_validations.as_ref())
        .into_iter()
        .flatten()
        .map(|rule| {
            let field = rule
                .field_path
                .as_deref()
                .map(|f| format!(" (`{}`)", f.trim_start_matches('.')));
            format!(
                "- {}{}",
                one_line(rule.message.as_deref().unwrap_or(&rule.rule)),
                field.unwrap_or_default()
            )
        })
        .collect();
    if !rules.is_empty() {
        let _ = writeln!(body, "Rules on the whole object:\n\n{}\n", rules.join("\n"));
    }
    for (section, schema) in [
        ("spec", root_schema::<Spec>()),
        ("status", root_schema::<Status>()),
    ] {
        let _ = writeln!(body, "### {name} {section}\n");
        let walker = Walker {
            definitions: schema
                .get("components")
                .and_then(|c| c.get("schemas"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        let mut rows = Vec::new();
        if let Some(rules) = schema.get("x-kubernetes-validations") {
            let _ = writeln!(body, "Rules on `{section}`:\n\n{}\n", rule_list(rules));
        }
        walker.properties(&schema, section, &mut rows, 0);
        body.push_str("| Field | Type | Description |\n|---|---|---|\n");
        for row in rows {
            let _ = writeln!(body, "| {} | {} | {} |", row.field, row.type_, row.description);
        }
        body.push('\n');
    }
    Kind { name, body }
}

/// The type's schema with named definitions kept (not inlined as in the CRD), so Kubernetes' types are
/// recognisable by their `io.k8s.` names.
fn root_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3().into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default()
}

struct Row {
    field: String,
    type_: String,
    description: String,
}

struct Walker {
    definitions: Map<String, Value>,
}

/// Deeper than any Lifeboat type nests; a guard against a recursive type.
const MAX_DEPTH: usize = 12;

impl Walker {
    /// One row per property of an object schema, then the properties of each property.
    fn properties(&self, schema: &Value, path: &str, rows: &mut Vec<Row>, depth: usize) {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, property) in properties {
            self.field(
                property,
                &format!("{path}.{name}"),
                required.contains(&name.as_str()),
                rows,
                depth,
            );
        }
    }

    fn field(&self, property: &Value, path: &str, required: bool, rows: &mut Vec<Row>, depth: usize) {
        let resolved = self.resolve(property);
        let mut description = resolved
            .described
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let constraints = constraints(&resolved.described);
        if !constraints.is_empty() {
            description = format!("{description}<br>{}", constraints.join("<br>"));
        }
        let required = if required { " **required**" } else { "" };
        rows.push(Row {
            field: format!("`{path}`{required}"),
            type_: self.type_name(property),
            description: escape(&description),
        });
        if depth >= MAX_DEPTH || resolved.external {
            return;
        }
        let schema = &resolved.schema;
        match type_of(schema).as_deref() {
            Some("array") => {
                if let Some(items) = schema.get("items") {
                    let items = self.resolve(items);
                    if !items.external {
                        self.properties(&items.schema, &format!("{path}[]"), rows, depth + 1);
                    }
                }
            }
            Some("object") => {
                self.properties(schema, path, rows, depth + 1);
                if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                    let values = self.resolve(values);
                    if !values.external {
                        self.properties(&values.schema, &format!("{path}.<key>"), rows, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// Follows `$ref`s and unwraps `Option`'s `anyOf [T, null]`; the field's own description and
    /// constraints win over the referenced type's.
    fn resolve(&self, schema: &Value) -> Resolved {
        let inner = nullable_inner(schema).unwrap_or(schema);
        let Some(name) = reference(inner) else {
            let mut described = schema.clone();
            merge_missing(&mut described, inner);
            return Resolved {
                schema: inner.clone(),
                described,
                external: false,
            };
        };
        let target = self.definitions.get(name).cloned().unwrap_or_default();
        let mut described = schema.clone();
        merge_missing(&mut described, &target);
        Resolved {
            schema: target,
            described,
            external: name.starts_with("io.k8s."),
        }
    }

    fn type_name(&self, schema: &Value) -> String {
        let inner = nullable_inner(schema).unwrap_or(schema);
        if let Some(name) = reference(inner) {
            if name.starts_with("io.k8s.") {
                return kubernetes_link(name);
            }
            return self
                .definitions
                .get(name)
                .map(|target| self.type_name(target))
                .unwrap_or_else(|| name.to_owned());
        }
        if inner.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
            return "int or string".into();
        }
        match type_of(inner).as_deref() {
            Some("array") => format!(
                "[]{}",
                inner.get("items").map(|i| self.type_name(i)).unwrap_or_default()
            ),
            Some("object") => match inner.get("additionalProperties").filter(|v| v.is_object()) {
                Some(values) => format!("map[string]{}", self.type_name(values)),
                None => "object".into(),
            },
            Some("string") => match inner.get("format").and_then(Value::as_str) {
                Some("date-time") => "time (RFC 3339)".into(),
                _ => "string".into(),
            },
            Some("integer") => "integer".into(),
            Some(other) => other.into(),
            None if inner.get("enum").is_some() || inner.get("oneOf").is_some() => "string".into(),
            None => "any".into(),
        }
    }
}

struct Resolved {
    /// The schema that describes the value's shape (the referenced definition, for a `$ref`).
    schema: Value,
    /// The field as written, with what the definition adds where the field says nothing.
    described: Value,
    /// A Kubernetes type: linked, not expanded.
    external: bool,
}

/// `Option<T>` of a named type is `anyOf: [{$ref: T}, {enum: [null], nullable: true}]`.
fn nullable_inner(schema: &Value) -> Option<&Value> {
    let any_of = schema.get("anyOf").or_else(|| schema.get("allOf"))?.as_array()?;
    let mut not_null = any_of
        .iter()
        .filter(|s| s.get("nullable").is_none() && s.get("type") != Some(&Value::from("null")));
    let only = not_null.next()?;
    not_null.next().is_none().then_some(only)
}

fn reference(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.rsplit('/').next()
}

fn type_of(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(t) => Some(t.clone()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .map(str::to_owned),
        _ => None,
    }
}

fn merge_missing(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (key, value) in from {
            into.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

/// What the API server enforces on the field, in words.
fn constraints(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let number = |key: &str| schema.get(key).filter(|v| v.is_number()).map(Value::to_string);
    if let Some(default) = schema.get("default").filter(|d| !d.is_null()) {
        found.push(format!("Default: `{}`", compact(default)));
    }
    let values: Vec<String> = schema
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            schema
                .get("oneOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|variant| variant.get("const").or_else(|| variant.get("enum")?.get(0))),
        )
        .filter(|v| !v.is_null())
        .map(|v| format!("`{}`", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    if !values.is_empty() {
        found.push(format!("One of: {}", values.join(", ")));
    }
    match (number("minimum"), number("maximum")) {
        (Some(min), Some(max)) => found.push(format!("Range: {min}–{max}")),
        (Some(min), None) => found.push(format!("Minimum: {min}")),
        (None, Some(max)) => found.push(format!("Maximum: {max}")),
        (None, None) => {}
    }
    match (number("minLength"), number("maxLength")) {
        (Some(min), Some(max)) => found.push(format!("Length: {min}–{max}")),
        (Some(min), None) => found.push(format!("Length: at least {min}")),
        (None, Some(max)) => found.push(format!("Length: at most {max}")),
        (None, None) => {}
    }
    match (number("minItems"), number("maxItems")) {
        (Some(min), Some(max)) => found.push(format!("Items: {min}–{max}")),
        (Some(min), None) => found.push(format!("Items: at least {min}")),
        (None, Some(max)) => found.push(format!("Items: at most {max}")),
        (None, None) => {}
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        found.push(format!("Pattern: `{pattern}`"));
    }
    if let Some(keys) = schema.get("x-kubernetes-list-map-keys").and_then(Value::as_array) {
        let keys: Vec<String> = keys
            .iter()
            .filter_map(Value::as_str)
            .map(|k| format!("`{k}`"))
            .collect();
        found.push(format!(
            "A list keyed by {} (server-side apply merges entries)",
            keys.join(", ")
        ));
    }
    if let Some(rules) = schema.get("x-kubernetes-validations") {
        found.push(format!("Rule: {}", rule_messages(rules).join("; ")));
    }
    found
}

fn rule_messages(rules: &Value) -> Vec<String> {
    rules
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("message").or_else(|| r.get("rule")).and_then(Value::as_str))
        .map(one_line)
        .collect()
}

fn rule_list(rules: &Value) -> String {
    rule_messages(rules)
        .iter()
        .map(|m| format!("- {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `io.k8s.api.core.v1.Toleration` → a link into the Kubernetes API reference of the oldest supported
/// minor (the chart requires 1.30).
fn kubernetes_link(name: &str) -> String {
    let short = name.rsplit('.').next().unwrap_or(name);
    let anchor = match name.split('.').collect::<Vec<_>>().as_slice() {
        ["io", "k8s", "api", group, version, kind] => format!("{}-{version}-{group}", kind.to_lowercase()),
        ["io", "k8s", "apimachinery", "pkg", "apis", "meta", version, kind] => {
            format!("{}-{version}-meta", kind.to_lowercase())
        }
        _ => format!("{}-resource-core", short.to_lowercase()),
    };
    format!("[{short}](https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.30/#{anchor})")
}

fn compact(value: &Value) -> String {
    match value.as_str() {
        // An empty string in backticks renders as nothing at all; show the JSON literal.
        Some("") => "\"\"".to_owned(),
        Some(text) => text.to_owned(),
        None => value.to_string(),
    }
}

/// Descriptions are wrapped at 110 columns in the source; a table cell is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_types_link_to_their_reference_entry() {
        assert_eq!(
            kubernetes_link("io.k8s.api.core.v1.Toleration"),
            "[Toleration](https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.30/#toleration-v1-core)"
        );
        assert!(kubernetes_link("io.k8s.apimachinery.pkg.apis.meta.v1.Condition")
            .ends_with("#condition-v1-meta)"));
    }

    #[test]
    fn every_field_of_every_kind_is_listed_with_its_full_path() {
        let reference = markdown();
        for field in [
            "`spec.schedule`",
            "`spec.trafficSwitch.service.name`",
            "`spec.preflight[].http.url`",
            "`status.steps[].name`",
            "`spec.source.postgres.host`",
        ] {
            assert!(reference.contains(field), "{field} missing");
        }
        // Kubernetes' own types are linked, not expanded.
        assert!(reference.contains("[Toleration](https://kubernetes.io/"));
        assert!(!reference.contains("tolerations[].tolerationSeconds"));
    }
}
