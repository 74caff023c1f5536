package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
)

// daprdMetadata is GET /v1.0/metadata with daprd's field names, and ours.
type daprdMetadata struct {
	ID              string            `json:"id"`
	RuntimeVersion  string            `json:"runtimeVersion"`
	Extended        map[string]string `json:"extended"`
	EnabledFeatures []string          `json:"enabledFeatures"`
	Components      []struct {
		Name, Type, Version string
		Capabilities        []string
	} `json:"components"`
	AppConnectionProperties struct {
		Port           int    `json:"port"`
		Protocol       string `json:"protocol"`
		ChannelAddress string `json:"channelAddress"`
		Health         *struct {
			HealthCheckPath     string `json:"healthCheckPath"`
			HealthProbeInterval string `json:"healthProbeInterval"`
			HealthProbeTimeout  string `json:"healthProbeTimeout"`
			HealthThreshold     int    `json:"healthThreshold"`
		} `json:"health"`
	} `json:"appConnectionProperties"`
	ActorRuntime *struct {
		RuntimeStatus string `json:"runtimeStatus"`
		HostReady     bool   `json:"hostReady"`
	} `json:"actorRuntime"`
	// Ours.
	Ports map[string]int `json:"ports"`
	Mode  string         `json:"mode"`
	PID   int            `json:"pid"`
}

func getMetadata(t *testing.T, s *sidecar) daprdMetadata {
	t.Helper()
	resp, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	var m daprdMetadata
	if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("metadata: %d %s", resp.StatusCode, b)
	}
	return m
}

// TestMetadataShape: GET /v1.0/metadata has daprd's shape (the version also
// under extended.daprRuntimeVersion, actorRuntime DISABLED); what PUT
// /v1.0/metadata/{key} and gRPC SetMetadata set shows under extended, over
// HTTP and gRPC; ours is under names daprd does not use.
func TestMetadataShape(t *testing.T) {
	w := newWorld(t)
	appPort, _ := w.app("shape")
	s := w.sidecar("shape", appPort)
	m := getMetadata(t, s)
	if m.ID != "shape" || m.RuntimeVersion == "" || m.Extended["daprRuntimeVersion"] != m.RuntimeVersion ||
		m.ActorRuntime == nil || m.ActorRuntime.RuntimeStatus != "DISABLED" || m.ActorRuntime.HostReady ||
		len(m.Components) != 1 || m.Components[0].Name != "statestore" || m.AppConnectionProperties.Port != appPort ||
		m.AppConnectionProperties.Protocol != "http" || m.AppConnectionProperties.Health != nil {
		t.Errorf("metadata %+v", m)
	}
	if m.Ports["http"] != s.httpPort || m.Mode != "standalone" || m.PID != s.Cmd.Process.Pid {
		t.Errorf("our additions: ports %v mode %q pid %d (sidecar pid %d)", m.Ports, m.Mode, m.PID, s.Cmd.Process.Pid)
	}

	for k, v := range map[string]string{"cliPID": "4242", "appCommand": "python3 app.py --x 'y z'", "a/b": "slash"} {
		if resp, b := do(t, "PUT", s.url+"/v1.0/metadata/"+strings.ReplaceAll(k, "/", "%2F"), strings.NewReader(v), nil); resp.StatusCode != 204 {
			t.Errorf("PUT %s: %d %s", k, resp.StatusCode, b)
		}
	}
	if resp, _ := do(t, "PUT", s.url+"/v1.0/metadata/cliPID", strings.NewReader("4343"), nil); resp.StatusCode != 204 {
		t.Errorf("replacing cliPID: %d", resp.StatusCode)
	}
	c := sdkClient(t, s)
	if err := c.SetMetadata(ctxT(t), "fromGRPC", "yes"); err != nil {
		t.Fatal(err)
	}
	// The sidecar's mutual TLS identity (ours, under names daprd does not use).
	exp, err := time.Parse(time.RFC3339, m.Extended["mtlsCertExpiry"])
	if m.Extended["mtlsSpiffeID"] != "spiffe://public/ns/default/shape" || err != nil || !exp.After(time.Now()) {
		t.Errorf("extended mtlsSpiffeID %q, mtlsCertExpiry %q: want spiffe://public/ns/default/shape and a time to come",
			m.Extended["mtlsSpiffeID"], m.Extended["mtlsCertExpiry"])
	}
	want := map[string]string{"daprRuntimeVersion": m.RuntimeVersion, "cliPID": "4343", "appCommand": "python3 app.py --x 'y z'", "a/b": "slash", "fromGRPC": "yes",
		"mtlsSpiffeID": m.Extended["mtlsSpiffeID"], "mtlsCertExpiry": m.Extended["mtlsCertExpiry"]}
	if got := getMetadata(t, s).Extended; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("extended over HTTP:\n got %v\nwant %v", got, want)
	}
	gm, err := c.GetMetadata(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gm.ExtendedMetadata) != fmt.Sprint(want) {
		t.Errorf("extended over gRPC:\n got %v\nwant %v", gm.ExtendedMetadata, want)
	}
	raw, err := runtimev1pb.NewDaprClient(grpcConn(t, s)).GetMetadata(ctxT(t), &runtimev1pb.GetMetadataRequest{})
	if err != nil || raw.GetActorRuntime().GetRuntimeStatus() != runtimev1pb.ActorRuntime_DISABLED ||
		raw.GetAppConnectionProperties().GetPort() != int32(appPort) || raw.GetAppConnectionProperties().GetChannelAddress() != "127.0.0.1" {
		t.Errorf("gRPC metadata %v %v", raw, err)
	}
}
