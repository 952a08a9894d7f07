// lifeboat-kstatus prints what kstatus (sigs.k8s.io/cli-utils, the library Flux's health checks and
// `kubectl wait`-like tools use) computes for Kubernetes objects in YAML or JSON files: one line per file,
// "<file>\t<status>\t<message>". Built by hack/build-test-tools.sh; used through support::kstatus in the
// e2e tests.
package main

import (
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lifeboat-kstatus FILE.yaml...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Through JSON, as the API server hands objects out: integers stay integers (generation).
		json, err := yaml.YAMLToJSON(data)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(json); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		result, err := status.Compute(object)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Printf("%s\t%s\t%s\n", path, result.Status, result.Message)
	}
}
