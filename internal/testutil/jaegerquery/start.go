package jaegerquery

import (
	"strconv"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// Jaeger is a real Jaeger (all in one, its memory store) a test started on
// loopback ports of its own, stopped when the test ends.
type Jaeger struct {
	ZipkinURL string // POST spans here (Zipkin v2 JSON)
	OTLPAddr  string // host:port of its OTLP/HTTP receiver
	OTLPGRPC  string // host:port of its OTLP/gRPC receiver
	QueryURL  string // base URL of the query API
}

// Start runs the cached jaeger binary (tools/build jaeger) with every port
// it opens on a free loopback port, plus extra flags, and returns once its
// Zipkin receiver and query API accept connections.
func Start(t testing.TB, extra ...string) *Jaeger {
	t.Helper()
	bin := toolbin.Path(t, "jaeger")
	pt := proc.For(t)
	// Eight ports, distinct: taken one at a time, a port closed after its
	// check could be handed out again for another of Jaeger's servers.
	ports, err := proc.FreePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	hp := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	zipkin, query, otlp, otlpGRPC := ports[0], ports[1], ports[2], ports[3]
	args := append([]string{
		"--collector.zipkin.host-port=" + hp(zipkin),
		"--query.http-server.host-port=" + hp(query),
		"--query.grpc-server.host-port=" + hp(ports[4]),
		"--collector.grpc-server.host-port=" + hp(ports[5]),
		"--collector.http-server.host-port=" + hp(ports[6]),
		"--collector.otlp.grpc.host-port=" + hp(otlpGRPC),
		"--collector.otlp.http.host-port=" + hp(otlp),
		"--admin.http.host-port=" + hp(ports[7]),
	}, extra...)
	pt.Start("jaeger", bin, nil, args...)
	pt.WaitTCP(hp(zipkin), 15*time.Second)
	pt.WaitTCP(hp(query), 15*time.Second)
	return &Jaeger{
		ZipkinURL: "http://" + hp(zipkin) + "/api/v2/spans",
		OTLPAddr:  hp(otlp),
		OTLPGRPC:  hp(otlpGRPC),
		QueryURL:  "http://" + hp(query),
	}
}
