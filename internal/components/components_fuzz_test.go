package components

import "testing"

// FuzzParse: any bytes give Components or an error, never a panic; accepted
// ones have a name, a supported type and readable metadata.
func FuzzParse(f *testing.F) {
	f.Add([]byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n"))
	f.Add([]byte("kind: Component\nspec:\n  metadata:\n  - name: a\n    value: [1]\n"))
	f.Add([]byte("kind: Component\nmetadata: {name: x}\n---\nkind: Other\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		comps, err := Parse(b, "fuzz")
		if err != nil {
			return
		}
		for _, c := range comps {
			if c.Metadata.Name == "" || c.Spec.Type == "" {
				t.Fatalf("accepted %+v", c)
			}
			if _, err := c.ResolveMetadata(func(SecretKeyRef) (string, error) { return "s", nil }); err != nil {
				t.Fatalf("accepted a component whose metadata fails: %v", err)
			}
		}
	})
}
