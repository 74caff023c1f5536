// Command images builds the project's container images without a container
// engine: each is a static binary (CGO_ENABLED=0, -trimpath) on an empty base,
// running as user 65532, written as an OCI image layout tarball
// <out>/<name>.tar and, given a registry, pushed there. Builds are
// reproducible: the same commit gives the same digests.
//
//	go run ./tools/images                      # the product: sidecar, injector, dashboard, calculator-*
//	go run ./tools/images -all                 # and the test node's pause, redis, collector
//	IMAGE_REGISTRY=registry.example:5000/tandem go run ./tools/images
//
// Images are named <prefix>/<name>:<version> (tandem/sidecar:0.1.0); with a
// registry the prefix is the registry's. The version defaults to the chart's
// appVersion, the tag the chart deploys. Each image's name and digest are
// printed, one per line, and written to <out>/images.txt.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/tandem-run/tandem/internal/images"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "images: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	out := fs.String("out", "bin/images", "folder of the OCI tarballs")
	version := fs.String("version", os.Getenv("VERSION"), "semantic version: the images' tag and the sidecar's --version (env VERSION; default: the chart's appVersion)")
	registry := fs.String("registry", os.Getenv("IMAGE_REGISTRY"), "push the images to this registry and repository prefix, e.g. localhost:5000/tandem (env IMAGE_REGISTRY); empty: no push")
	all := fs.Bool("all", false, "also the images of the tests' real node (pause, redis, collector)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./tools/images [flags] [image...]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if *version == "" {
		if *version, err = images.ChartAppVersion(root); err != nil {
			return err
		}
	}
	var recipes []images.Recipe
	for _, name := range fs.Args() {
		r, err := images.Lookup(name)
		if err != nil {
			return err
		}
		recipes = append(recipes, r)
	}
	if len(recipes) == 0 {
		for _, r := range images.Recipes {
			if r.Product || *all {
				recipes = append(recipes, r)
			}
		}
	}
	meta, err := images.RepoMeta(root, *version)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	prefix := "tandem"
	if *registry != "" {
		prefix = strings.TrimSuffix(*registry, "/")
	}
	built, err := images.BuildAll(ctx, images.Options{
		Root: root, Out: *out, Meta: meta, Prefix: prefix, Push: *registry != "",
	}, recipes)
	for _, b := range built {
		fmt.Printf("%s %s\n", b.Ref, b.Digest)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "images: %d images in %s\n", len(built), filepath.Clean(*out))
	return nil
}
