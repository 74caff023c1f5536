package e2e

import (
	"encoding/json"
	"strconv"
	"syscall"
	"testing"
)

var sigterm = syscall.SIGTERM

func itoa(n int) string { return strconv.Itoa(n) }

// appAddrOf returns host:port of the app behind s, from its metadata.
func appAddrOf(t *testing.T, s *sidecar) string {
	t.Helper()
	_, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var m struct {
		App struct {
			Port    int    `json:"port"`
			Address string `json:"channelAddress"`
		} `json:"appConnectionProperties"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.App.Port == 0 {
		t.Fatalf("metadata has no app connection: %s", b)
	}
	return m.App.Address + ":" + itoa(m.App.Port)
}
