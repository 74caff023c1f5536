package components

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/pkg/state"
)

// The good files parse; a Component scoped to another app is left out.
func TestParseAndScope(t *testing.T) {
	var comps []Component
	for _, f := range []string{"memory.yml", "redis.yaml", "scoped.yaml"} {
		path := filepath.Join("testdata/good", f)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := Parse(b, path)
		if err != nil {
			t.Fatal(err)
		}
		comps = append(comps, Scoped(cs, "myapp")...)
	}
	if len(comps) != 2 || comps[0].Metadata.Name != "cache" || comps[1].Metadata.Name != "statestore" {
		t.Fatalf("loaded %+v; want cache and statestore (otherstore is scoped to another app)", comps)
	}
	md, err := comps[1].ResolveMetadata(nil)
	if err != nil || md["redisHost"] != "localhost:6379" || md["redisDB"] != "2" || md["enableTLS"] != "false" || md["redisPassword"] != "" {
		t.Errorf("metadata %v, %v", md, err)
	}
	for _, c := range comps {
		sc, err := Build(c, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.Metadata.Name, err)
		}
		if sc.Name != c.Metadata.Name || sc.Type != c.Spec.Type {
			t.Errorf("built %s %s from %s %s", sc.Name, sc.Type, c.Metadata.Name, c.Spec.Type)
		}
		closeStore(sc)
	}
}

func closeStore(sc state.StoreConfig) {
	if c, ok := sc.Store.(io.Closer); ok {
		_ = c.Close()
	}
}

func TestStoreLimitsMetadata(t *testing.T) {
	memoryYAML := func(md ...string) []byte {
		b := []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n")
		for i := 0; i+1 < len(md); i += 2 {
			b = fmt.Appendf(b, "  - name: %s\n    value: %q\n", md[i], md[i+1])
		}
		return b
	}
	for _, c := range []struct {
		name   string
		yaml   []byte
		maxOps int      // a transaction of one more is refused; 0 when the file is refused
		want   []string // in the error, when refused
	}{
		{"redis default", resources.RedisYAML("statestore", "127.0.0.1:1"), 1000, nil},
		{"redis raised", resources.RedisYAML("statestore", "127.0.0.1:1", "maxTransactionOperations", "5000"), 5000, nil},
		{"memory lowered", memoryYAML("maxTransactionOperations", "3"), 3, nil},
		{"memory highest", memoryYAML("maxTransactionOperations", "100000"), 100000, nil},
		{"zero", memoryYAML("maxTransactionOperations", "0"), 0, []string{"maxTransactionOperations", `"0"`, "1 to 100000"}},
		{"over", resources.RedisYAML("statestore", "127.0.0.1:1", "maxTransactionOperations", "100001"), 0, []string{"maxTransactionOperations", "1 to 100000"}},
		{"not a number", memoryYAML("maxTransactionOperations", "lots"), 0, []string{"maxTransactionOperations", "1 to 100000"}},
		{"negative", memoryYAML("maxTransactionOperations", "-1"), 0, []string{"maxTransactionOperations", "1 to 100000"}},
		{"ttl past a Duration", resources.RedisYAML("statestore", "127.0.0.1:1", "ttlInSeconds", "18446744074"), 0, []string{"ttlInSeconds", "0 to 9223372036"}},
		{"ttl not whole", resources.RedisYAML("statestore", "127.0.0.1:1", "ttlInSeconds", "1.5"), 0, []string{"ttlInSeconds", "0 to 9223372036"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			comps, err := Parse(c.yaml, "store.yaml")
			if err != nil {
				t.Fatal(err)
			}
			sc, err := Build(comps[0], nil)
			if c.maxOps == 0 {
				if err == nil {
					closeStore(sc)
					t.Fatal("no error")
				}
				for _, w := range append(c.want, "store.yaml") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			svc := state.NewService("myapp", "")
			if err := svc.Add(sc); err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			ops := make([]state.Op, c.maxOps+1)
			for i := range ops {
				ops[i].Delete = &state.DeleteRequest{Key: fmt.Sprint("k", i)}
			}
			if err := svc.Transact(context.Background(), "statestore", ops); !errors.Is(err, state.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("limit of %d", c.maxOps)) {
				t.Errorf("a transaction of %d operations: %v; want it refused at the limit of %d", len(ops), err, c.maxOps)
			}
		})
	}
}

// A secretKeyRef takes its value from the Secret it names (its key, else
// its name, as Dapr reads it); without a way to read Secrets, or with a
// secret store other than Kubernetes', it is an error naming the field.
func TestSecretKeyRef(t *testing.T) {
	const y = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    secretKeyRef:
      name: redis
      key: password
  - name: redisUsername
    secretKeyRef:
      name: username
`
	comps, err := Parse([]byte(y), "statestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := comps[0]
	var asked []string
	md, err := c.ResolveMetadata(func(ref SecretKeyRef) (string, error) {
		asked = append(asked, ref.Name+"/"+ref.SecretKey())
		return "from-" + ref.Name, nil
	})
	if err != nil || md["redisPassword"] != "from-redis" || md["redisUsername"] != "from-username" || md["redisHost"] != "localhost:6379" {
		t.Errorf("metadata %v, %v", md, err)
	}
	if strings.Join(asked, " ") != "redis/password username/username" {
		t.Errorf("read %v", asked)
	}
	if refs := c.SecretRefs(); len(refs) != 2 || refs[0].Name != "redis" {
		t.Errorf("refs %v", refs)
	}
	if _, err := c.ResolveMetadata(nil); err == nil || !strings.Contains(err.Error(), "redisPassword") || !strings.Contains(err.Error(), "kubernetes mode") {
		t.Errorf("without Secrets: %v", err)
	}
	if _, err := Build(c, func(SecretKeyRef) (string, error) { return "", errors.New("secret \"redis\" not found") }); err == nil ||
		!strings.Contains(err.Error(), "statestore.yaml") || !strings.Contains(err.Error(), "redisPassword") || !strings.Contains(err.Error(), `secret "redis" not found`) {
		t.Errorf("a Secret that cannot be read: %v", err)
	}
	for name, doc := range map[string]string{
		"both":        strings.Replace(y, "    secretKeyRef:\n      name: redis", "    value: x\n    secretKeyRef:\n      name: redis", 1),
		"no name":     strings.Replace(y, "      name: redis\n", "", 1),
		"other store": strings.Replace(y, "metadata:\n  name: statestore", "auth:\n  secretStore: vault\nmetadata:\n  name: statestore", 1),
	} {
		if _, err := Parse([]byte(doc), "statestore.yaml"); err == nil || !strings.Contains(err.Error(), "redisPassword") {
			t.Errorf("%s: %v; want an error naming the field", name, err)
		}
	}
}
