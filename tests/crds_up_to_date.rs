//! The committed CRDs (crds/ and the Helm chart's copy) are exactly what the Rust types generate.

use lifeboat::crdgen;

#[test]
fn committed_crds_match_the_rust_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (file, crd) in crdgen::all() {
        let generated = crdgen::to_yaml(&crd).expect("CRD serializes");
        for dir in ["crds", "charts/lifeboat/crds"] {
            let path = root.join(dir).join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != generated {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "regenerate with `just crds`; out of date: {stale:?}"
    );
}

#[test]
fn committed_api_reference_matches_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api-reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == lifeboat::apiref::markdown(),
        "regenerate with `just crds`: {} is out of date",
        path.display()
    );
}

#[test]
fn every_kind_has_short_names_the_category_and_a_status_subresource() {
    for (file, crd) in crdgen::all() {
        let names = &crd.spec.names;
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}: short name"
        );
        assert_eq!(
            names.categories.as_deref(),
            Some(&["lifeboat".to_owned()][..]),
            "{file}: category"
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status"
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Age"), "{file}: Age column in {columns:?}");
        assert!(
            columns.len() >= 3,
            "{file}: columns a user checks first, got {columns:?}"
        );
    }
}

#[test]
fn the_schemas_use_no_shapes_the_apiserver_refuses() {
    for (file, crd) in crdgen::all() {
        let yaml = crdgen::to_yaml(&crd).unwrap();
        for forbidden in ["anyOf:", "oneOf:", "allOf:", "$ref"] {
            assert!(!yaml.contains(forbidden), "{file} contains {forbidden}");
        }
    }
}
