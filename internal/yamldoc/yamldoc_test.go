package yamldoc

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Files lists YAML files by name, and leaves out folders, other files and
// hidden ones (an editor's lock file is a link to nowhere).
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.yaml", "a.yml", "notes.txt", ".hidden.yaml", "statestore.yaml~", ".statestore.yaml.swp"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("kind: Component\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("user@host.1234:1700000000", filepath.Join(dir, ".#b.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yaml")}
	if !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
}
