package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, seen from this package's folder.
const root = ".."

// TestLinks checks every relative link and image in the repository's
// Markdown (README.md, docs/*.md, samples' and bench's pages): the file it
// names exists and, with a #fragment, has a heading of that anchor.
func TestLinks(t *testing.T) {
	files := markdownFiles(t, root)
	if !slices.Contains(files, filepath.Join(root, "README.md")) {
		t.Fatalf("README.md not among %v", files)
	}
	for _, err := range checkLinks(files) {
		t.Error(err)
	}
}

// TestPagesLinked checks that every page in docs/ is linked from the
// README's reading list and from the docs index, so none is left unread.
func TestPagesLinked(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, index := range []string{filepath.Join(root, "README.md"), "README.md"} {
		links, err := fileLinks(index)
		if err != nil {
			t.Fatal(err)
		}
		linked := map[string]bool{}
		for _, l := range links {
			path, _, _ := strings.Cut(l.target, "#")
			abs, err := filepath.Abs(filepath.Join(filepath.Dir(index), path))
			if err != nil {
				t.Fatal(err)
			}
			linked[abs] = true
		}
		for _, p := range pages {
			abs, err := filepath.Abs(p)
			if err != nil {
				t.Fatal(err)
			}
			if p != "README.md" && !linked[abs] {
				t.Errorf("%s does not link docs/%s", index, p)
			}
		}
	}
}

// TestCheckLinksReports runs the checker on pages with a missing file, a
// missing anchor in another page and in the same page, and links that are
// fine, so that TestLinks passing means something.
func TestCheckLinksReports(t *testing.T) {
	dir := filepath.Join("testdata", "broken")
	errs := checkLinks([]string{filepath.Join(dir, "a.md"), filepath.Join(dir, "b.md")})
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	want := []string{
		`testdata/broken/a.md:5: "missing.md": stat testdata/broken/missing.md: no such file or directory`,
		`testdata/broken/a.md:7: "b.md#no-such-heading": b.md has no heading with anchor "no-such-heading"`,
		`testdata/broken/a.md:9: "#hot-reload": a.md has no heading with anchor "hot-reload"`,
		`testdata/broken/b.md:3: "a.md#fine-1": a.md has no heading with anchor "fine-1"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAnchor pins GitHub's anchors for headings: lower case, spaces to
// hyphens, punctuation dropped, inline code and links read as their text.
func TestAnchor(t *testing.T) {
	tests := []struct {
		heading, want string
	}{
		{"Hot reload", "hot-reload"},
		{"Identity and mutual TLS", "identity-and-mutual-tls"},
		{"Quick start: two apps, two sidecars, one curl", "quick-start-two-apps-two-sidecars-one-curl"},
		{"Compatibility with daprd", "compatibility-with-daprd"},
		{"`--max-procs` and GC", "--max-procs-and-gc"},
		{"The [gRPC](grpc.md) API", "the-grpc-api"},
		{"**Bold**, _under_score", "bold-_under_score"},
		{"A & B", "a--b"},
		{"Tests ##", "tests"},
		{"Café, naïve", "café-naïve"},
	}
	for _, tt := range tests {
		t.Run(tt.heading, func(t *testing.T) {
			if got := anchor(tt.heading); got != tt.want {
				t.Errorf("anchor(%q) = %q, want %q", tt.heading, got, tt.want)
			}
		})
	}
}

// markdownFiles lists the Markdown files under dir, leaving out hidden
// folders, node_modules and testdata.
func markdownFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != dir && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// link is one relative link of a Markdown file.
type link struct {
	line   int
	target string
}

var (
	// linkRE finds inline links and images: ](target) or ](target "title").
	linkRE = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// codeSpanRE finds inline code, whose brackets are not links.
	codeSpanRE = regexp.MustCompile("`+[^`]*`+")
	// schemeRE recognises absolute URLs (https:, mailto:, ...).
	schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// checkLinks returns an error for each link of files whose file or
// anchor does not exist, naming the file, line and target.
func checkLinks(files []string) []error {
	var errs []error
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) (map[string]bool, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		a, err := fileAnchors(path)
		if err != nil {
			return nil, err
		}
		anchors[path] = a
		return a, nil
	}
	for _, file := range files {
		links, err := fileLinks(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range links {
			path, frag, _ := strings.Cut(l.target, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				if _, err := os.Stat(target); err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: %q: %w", file, l.line, l.target, err))
					continue
				}
			}
			if frag == "" {
				continue
			}
			a, err := anchorsOf(target)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %q: %w", file, l.line, l.target, err))
				continue
			}
			if !a[frag] {
				errs = append(errs, fmt.Errorf("%s:%d: %q: %s has no heading with anchor %q",
					file, l.line, l.target, filepath.Base(target), frag))
			}
		}
	}
	return errs
}

// fileLinks returns the relative links of a Markdown file, outside fenced
// code blocks and inline code.
func fileLinks(path string) ([]link, error) {
	var links []link
	err := eachProseLine(path, func(n int, line string) {
		line = codeSpanRE.ReplaceAllString(line, "")
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			if !schemeRE.MatchString(m[1]) {
				links = append(links, link{line: n, target: m[1]})
			}
		}
	})
	return links, err
}

// fileAnchors returns the anchors GitHub gives the headings of a Markdown
// file: the first of each text plain, the next ones with -1, -2, ...
func fileAnchors(path string) (map[string]bool, error) {
	anchors := map[string]bool{}
	seen := map[string]int{}
	err := eachProseLine(path, func(_ int, line string) {
		hashes := len(line) - len(strings.TrimLeft(line, "#"))
		if hashes == 0 || hashes > 6 || (len(line) > hashes && line[hashes] != ' ') {
			return
		}
		a := anchor(line[hashes:])
		if n := seen[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	})
	return anchors, err
}

// eachProseLine calls fn with each line of a Markdown file that is not in
// a fenced code block, numbered from 1.
func eachProseLine(path string, fn func(n int, line string)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	fence := ""
	s := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		fn(n, line)
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

var (
	// headingLinkRE reads a link in a heading as its text.
	headingLinkRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	// closingHashesRE is an ATX heading's optional closing sequence.
	closingHashesRE = regexp.MustCompile(`\s+#+\s*$`)
)

// anchor is GitHub's anchor for a heading's text: its rendered text in
// lower case, letters, digits, '-' and '_' kept, each space a '-', and
// everything else dropped.
func anchor(heading string) string {
	text := closingHashesRE.ReplaceAllString(strings.TrimSpace(heading), "")
	text = headingLinkRE.ReplaceAllString(text, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
