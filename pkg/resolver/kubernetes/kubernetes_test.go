package kubernetes

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tandem-run/tandem/pkg/resolver"
)

// dnsServer is a real DNS server on a free loopback UDP port.
type dnsServer struct {
	addr    string
	queries atomic.Int32
}

func startDNS(t *testing.T, records map[string][]string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		s.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		name := q.Question[0].Name
		ips, ok := records[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		if q.Question[0].Qtype == dns.TypeA {
			for _, ip := range ips {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP(ip)})
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return s
}

func TestResolveAllRecordsRotated(t *testing.T) {
	srv := startDNS(t, map[string][]string{
		"addapp-dapr.default.svc.cluster.local.": {"127.0.0.1", "127.0.0.2", "127.0.0.3"},
	})
	r, err := New(Config{Namespace: "default", DNSServer: srv.addr})
	if err != nil {
		t.Fatal(err)
	}
	firsts := map[string]int{}
	for range 6 {
		addrs, err := r.Resolve(context.Background(), resolver.Target{ID: "addapp"})
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 3 {
			t.Fatalf("got %v, want 3 addresses", addrs)
		}
		for _, a := range addrs {
			if !strings.HasSuffix(a, ":50002") {
				t.Errorf("address %q lacks the internal port", a)
			}
		}
		firsts[addrs[0]]++
	}
	if len(firsts) != 3 {
		t.Errorf("first addresses %v: load does not spread", firsts)
	}
}

func TestNamespaceAndClusterDomain(t *testing.T) {
	srv := startDNS(t, map[string][]string{
		"calc-dapr.prod.svc.example.org.": {"127.0.0.9"},
	})
	r, err := New(Config{Namespace: "default", ClusterDomain: "example.org", DNSServer: srv.addr, Port: 7000})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := resolver.ParseTarget("calc.prod")
	addrs, err := r.Resolve(context.Background(), target)
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.9:7000" {
		t.Errorf("Resolve = %v, %v", addrs, err)
	}
}

func TestCache(t *testing.T) {
	srv := startDNS(t, map[string][]string{"a-dapr.default.svc.cluster.local.": {"127.0.0.1"}})
	r, _ := New(Config{Namespace: "default", DNSServer: srv.addr, CacheTTL: 300 * time.Millisecond})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, resolver.Target{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	n := srv.queries.Load()
	if _, err := r.Resolve(ctx, resolver.Target{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if srv.queries.Load() != n {
		t.Errorf("a second call within the TTL queried DNS again")
	}
	time.Sleep(350 * time.Millisecond)
	if _, err := r.Resolve(ctx, resolver.Target{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if srv.queries.Load() == n {
		t.Errorf("a call after the TTL did not query DNS")
	}
}

func TestNotFound(t *testing.T) {
	srv := startDNS(t, nil)
	r, _ := New(Config{Namespace: "default", DNSServer: srv.addr})
	_, err := r.Resolve(context.Background(), resolver.Target{ID: "ghost"})
	if !errors.Is(err, resolver.ErrNotFound) || !strings.Contains(err.Error(), "ghost-dapr.default.svc.cluster.local") {
		t.Errorf("got %v", err)
	}
}

func TestSilentServerRespectsDeadline(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r, _ := New(Config{Namespace: "default", DNSServer: pc.LocalAddr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r.Resolve(ctx, resolver.Target{ID: "a"})
	if err == nil || errors.Is(err, resolver.ErrNotFound) || !strings.Contains(err.Error(), pc.LocalAddr().String()) {
		t.Errorf("got %v, want a lookup error naming the server", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("lookup took %s despite a 300ms deadline", time.Since(start))
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no namespace": {},
		"bad server":   {Namespace: "a", DNSServer: "10.0.0.10"},
		"bad port":     {Namespace: "a", Port: 70000},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A lookup shared by several callers goes on when the caller that started
// it gives up: the others get its answer, from the one query.
func TestCallerGivingUpFailsNoOtherCaller(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var queries atomic.Int32
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		queries.Add(1)
		<-release // answers only once the first caller has given up
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true // an empty AAAA answer is final
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP("127.0.0.9")})
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })

	r, err := New(Config{Namespace: "default", DNSServer: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	first, cancelFirst := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := r.Resolve(first, resolver.Target{ID: "a"})
		firstErr <- err
	}()
	for queries.Load() == 0 { // the first caller's lookup is in flight
		time.Sleep(time.Millisecond)
	}
	type answer struct {
		addrs []string
		err   error
	}
	second := make(chan answer, 1)
	go func() {
		addrs, err := r.Resolve(context.Background(), resolver.Target{ID: "a"})
		second <- answer{addrs, err}
	}()
	time.Sleep(50 * time.Millisecond) // the second caller waits on the same lookup
	cancelFirst()
	if err := <-firstErr; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "a-dapr.default.svc.cluster.local") {
		t.Errorf("the caller that gave up: %v; want its cancellation, naming the name looked up", err)
	}
	close(release)
	got := <-second
	if got.err != nil || len(got.addrs) != 1 || got.addrs[0] != "127.0.0.9:50002" {
		t.Fatalf("the caller still waiting: %v, %v; want the lookup's answer", got.addrs, got.err)
	}
	if n := queries.Load(); n > 2 { // A and AAAA, once
		t.Errorf("%d queries; want the one lookup shared", n)
	}
}
