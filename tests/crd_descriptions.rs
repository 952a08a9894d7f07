//! Every field of every Lifeboat kind explains itself: `kubectl explain cutover.spec.rollback.job` (or
//! any other field, spec or status, at any depth) prints what the field is for, instead of an empty
//! DESCRIPTION. The test reads the committed CRDs, so it also catches a field added without a `///` doc
//! comment on its Rust type, and lists every such field at once.

use serde_norway::Value;

const CRD_FILES: [&str; 5] = [
    "backuppolicies.yaml",
    "backups.yaml",
    "restores.yaml",
    "restoredrills.yaml",
    "cutovers.yaml",
];

/// The parts of an object a user writes or reads; metadata is Kubernetes' own.
const DOCUMENTED_ROOTS: [&str; 2] = ["spec", "status"];

#[test]
fn every_field_of_every_kind_has_a_description() {
    let undocumented: Vec<String> = CRD_FILES
        .iter()
        .flat_map(|file| undocumented_fields(file))
        .collect();
    assert!(
        undocumented.is_empty(),
        "{} fields have no description for `kubectl explain`; add a `///` doc comment to the Rust field \
         (src/api/), then regenerate with `just crds`:\n  {}",
        undocumented.len(),
        undocumented.join("\n  ")
    );
}

/// Paths such as `Cutover.spec.rollback.job.image`, as `kubectl explain` takes them.
fn undocumented_fields(file: &str) -> Vec<String> {
    let crd = read_crd(file);
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .expect("the CRD names its kind");
    let versions = crd["spec"]["versions"]
        .as_sequence()
        .expect("the CRD lists its versions");
    versions
        .iter()
        .flat_map(|version| {
            let prefix = path_prefix(kind, version, versions.len());
            undocumented_in_version(file, &prefix, version)
        })
        .collect()
}

/// The kind, and the version too when the CRD serves more than one.
fn path_prefix(kind: &str, version: &Value, version_count: usize) -> String {
    match version_count {
        1 => kind.to_owned(),
        _ => format!("{kind}({})", version["name"].as_str().unwrap_or("?")),
    }
}

fn undocumented_in_version(file: &str, prefix: &str, version: &Value) -> Vec<String> {
    let root = &version["schema"]["openAPIV3Schema"]["properties"];
    let mut undocumented = Vec::new();
    for field in DOCUMENTED_ROOTS {
        let schema = root
            .get(field)
            .unwrap_or_else(|| panic!("{file}: no {field} in the schema"));
        collect_undocumented(&format!("{prefix}.{field}"), schema, &mut undocumented);
    }
    undocumented
}

fn read_crd(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crds")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Records `path` when the field's schema has no description, then looks inside it.
fn collect_undocumented(path: &str, schema: &Value, undocumented: &mut Vec<String>) {
    if !has_description(schema) {
        undocumented.push(path.to_owned());
    }
    for (name, field) in properties(schema) {
        collect_undocumented(&format!("{path}.{name}"), field, undocumented);
    }
}

fn has_description(schema: &Value) -> bool {
    schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|text| !text.trim().is_empty())
}

/// The named fields of an object, including those of an array's items or of a map's values, which
/// `kubectl explain` shows under the array or map field itself.
fn properties(schema: &Value) -> Vec<(String, &Value)> {
    let own = schema
        .get("properties")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten();
    let mut fields: Vec<(String, &Value)> = own
        .map(|(name, field)| {
            (
                name.as_str().expect("property names are strings").to_owned(),
                field,
            )
        })
        .collect();
    for nested in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(nested).filter(|inner| inner.is_mapping()) {
            fields.extend(properties(inner));
        }
    }
    fields
}

#[test]
fn a_field_without_a_description_is_reported_with_its_path() {
    let schema: Value = serde_norway::from_str(
        "
        description: The spec.
        properties:
          steps:
            description: Steps.
            items:
              properties:
                image: {type: string}
          labels:
            description: Labels.
            additionalProperties:
              properties:
                value: {description: A value., type: string}
                owner: {type: string, description: ' '}
        ",
    )
    .unwrap();
    let mut undocumented = Vec::new();
    collect_undocumented("Kind.spec", &schema, &mut undocumented);
    undocumented.sort();
    assert_eq!(undocumented, ["Kind.spec.labels.owner", "Kind.spec.steps.image"]);
}
