package resiliency

import "testing"

// FuzzParse: any bytes give Resiliency resources or an error, never a panic;
// accepted ones build into policies.
func FuzzParse(f *testing.F) {
	f.Add([]byte(doc))
	f.Add([]byte("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nspec:\n  targets:\n    apps:\n      a: {timeout: 1s}\n"))
	f.Add([]byte("kind: Resiliency\nspec: {policies: {circuitBreakers: {c: {trip: 'consecutiveFailures > 0'}}}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := Parse(b, "fuzz")
		if err != nil {
			return
		}
		for _, r := range rs {
			s := &Set{Apps: map[string]*Policy{}, Components: map[string]*Policy{}}
			if _, err := s.build(r); err != nil {
				t.Fatalf("accepted a resource that does not build: %v", err)
			}
			for _, p := range s.Apps {
				if p.Breaker != nil && p.Breaker.Trip < 1 {
					t.Fatalf("trip %d", p.Breaker.Trip)
				}
			}
		}
	})
}
