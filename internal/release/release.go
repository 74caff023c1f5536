// Package release says how the product's binaries are built, for the
// images, the benchmark, the local runner and the end-to-end tests alike:
// what is measured and tested is what ships.
package release

import (
	"context"
	"os"
	"os/exec"
)

// Tags are the build tags of every product binary. grpcnotrace leaves
// out grpc-go's use of golang.org/x/net/trace (grpc.EnableTracing, which
// the sidecar never turns on) and with it html/template and
// text/template, whose calls of reflect.Value.Method by a name known only
// at run time make the linker keep every exported method of every type:
// the sidecar is a third smaller with the tag, and its idle memory is
// mostly the pages of its binary it touched while starting.
const Tags = "grpcnotrace"

// Command is go build of pkg (an import path or ./dir, from dir) into out:
// static (no cgo), with Tags, no paths of this machine, no VCS stamp,
// without symbol table and DWARF, and with main.version set when version
// is not empty. GOOS, GOARCH and the rest of the environment are the
// caller's.
func Command(ctx context.Context, dir, pkg, out, version string) *exec.Cmd {
	ldflags := "-s -w -buildid="
	if version != "" {
		ldflags += " -X main.version=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", Tags, "-trimpath", "-buildvcs=false",
		"-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	return cmd
}
