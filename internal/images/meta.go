package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// semver is a semantic version (semver.org 2.0.0).
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// IsSemver says whether v is a semantic version, such as 0.1.0 or 1.2.3-rc.1.
func IsSemver(v string) bool { return semver.MatchString(v) }

// ChartAppVersion is the appVersion of charts/tandem under root: the version
// the chart's images default to, and so the version images are built with
// unless told otherwise.
func ChartAppVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "charts", "tandem", "Chart.yaml"))
	if err != nil {
		return "", err
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("charts/tandem/Chart.yaml: %w", err)
	}
	if !IsSemver(c.AppVersion) {
		return "", fmt.Errorf("charts/tandem/Chart.yaml: appVersion %q is not a semantic version", c.AppVersion)
	}
	return c.AppVersion, nil
}

// RepoMeta is the Meta of a build of the git checkout at root: HEAD and its
// commit time, or $SOURCE_DATE_EPOCH when set. Outside a checkout the
// revision is "unknown" and the time $SOURCE_DATE_EPOCH, else the Unix
// epoch, so builds stay reproducible.
func RepoMeta(root, version string) (Meta, error) {
	if !IsSemver(version) {
		return Meta{}, fmt.Errorf("version %q is not a semantic version (e.g. 0.1.0 or 0.2.0-rc.1)", version)
	}
	m := Meta{Version: version, Revision: "unknown", Created: time.Unix(0, 0).UTC()}
	if out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%H %ct").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) == 2 {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return Meta{}, fmt.Errorf("git log: commit time %q", f[1])
			}
			m.Revision, m.Created = f[0], time.Unix(n, 0).UTC()
		}
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return Meta{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", e)
		}
		m.Created = time.Unix(n, 0).UTC()
	}
	return m, nil
}
