package config

import "testing"

// FuzzParse: any bytes give a Configuration or an error, never a panic, and
// an accepted one has valid tracing settings.
func FuzzParse(f *testing.F) {
	f.Add([]byte(appconfig))
	f.Add([]byte("kind: Configuration\napiVersion: dapr.io/v1alpha1\nspec:\n  tracing:\n    samplingRate: \"0.5\"\n"))
	f.Add([]byte("kind: Configuration\nspec: [1, 2]\n"))
	f.Add([]byte("---\n---\nkind: Configuration\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "fuzz")
		if err != nil {
			return
		}
		s, err := c.TracingSettings()
		if err != nil || s.SamplingRate < 0 || s.SamplingRate > 1 {
			t.Fatalf("accepted a Configuration with tracing %+v, %v", s, err)
		}
	})
}
