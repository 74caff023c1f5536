// Package kubernetes resolves app ids through Kubernetes DNS: the sidecars of
// app X in namespace N are the A and AAAA records of the headless Service
// X-dapr.N.svc.<cluster-domain>, which the injector keeps.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tandem-run/tandem/internal/ports"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// Config configures the resolver.
type Config struct {
	Namespace     string        // the caller's namespace, used when a target names none
	ClusterDomain string        // default "cluster.local"
	DNSServer     string        // host:port; empty: the system's resolver
	Port          int           // internal port of peer sidecars; default ports.Internal (50002)
	CacheTTL      time.Duration // default 5s; negative disables the cache
}

// Resolver looks app ids up in DNS.
type Resolver struct {
	cfg   Config
	dns   *net.Resolver
	group singleflight.Group
	mu    sync.Mutex
	cache map[string]entry
	next  atomic.Uint32
}

type entry struct {
	addrs []string
	until time.Time
}

// New validates cfg and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.Port == 0 {
		cfg.Port = ports.Internal
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("kubernetes resolver: port %d is not a port", cfg.Port)
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 5 * time.Second
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kubernetes resolver: no namespace: set the NAMESPACE environment variable")
	}
	r := &Resolver{cfg: cfg, cache: map[string]entry{}, dns: net.DefaultResolver}
	if cfg.DNSServer != "" {
		if _, _, err := net.SplitHostPort(cfg.DNSServer); err != nil {
			return nil, fmt.Errorf("kubernetes resolver: DNS server %q is not host:port: %w", cfg.DNSServer, err)
		}
		d := &net.Dialer{}
		r.dns = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, cfg.DNSServer)
		}}
	}
	return r, nil
}

// Name returns the DNS name of target's sidecars.
func (r *Resolver) Name(target resolver.Target) string {
	ns := target.Namespace
	if ns == "" {
		ns = r.cfg.Namespace
	}
	return target.ID + "-dapr." + ns + ".svc." + r.cfg.ClusterDomain
}

// Resolve returns every address of target's sidecars, rotated per call.
func (r *Resolver) Resolve(ctx context.Context, target resolver.Target) ([]string, error) {
	name := r.Name(target)
	r.mu.Lock()
	e, ok := r.cache[name]
	r.mu.Unlock()
	if !ok || time.Now().After(e.until) {
		// One lookup per name at a time, shared by every caller that comes
		// while it runs. It runs on a context of its own, bounded by
		// lookupTimeout: a caller that gives up (its call cancelled, its
		// deadline passed) stops waiting, but the lookup goes on for the
		// others.
		ch := r.group.DoChan(name, func() (any, error) {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
			defer cancel()
			return r.lookup(lctx, target, name)
		})
		select {
		case res := <-ch:
			if res.Err != nil {
				return nil, res.Err
			}
			e = res.Val.(entry)
		case <-ctx.Done():
			return nil, fmt.Errorf("looking up %s with %s: %w", name, r.server(), context.Cause(ctx))
		}
	}
	return resolver.Rotate(e.addrs, r.next.Add(1)), nil
}

// Forget drops target's cached addresses (resolver.Forgetter).
func (r *Resolver) Forget(target resolver.Target) {
	r.mu.Lock()
	delete(r.cache, r.Name(target))
	r.mu.Unlock()
}

var _ resolver.Forgetter = (*Resolver)(nil)

// lookupTimeout bounds one DNS lookup, whoever waits on it.
const lookupTimeout = 10 * time.Second

func (r *Resolver) server() string {
	if r.cfg.DNSServer == "" {
		return "the system resolver"
	}
	return r.cfg.DNSServer
}

func (r *Resolver) lookup(ctx context.Context, target resolver.Target, name string) (entry, error) {
	ips, err := r.dns.LookupIPAddr(ctx, name+".")
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return entry{}, fmt.Errorf("app id %q: no sidecars at %s (is its Deployment annotated dapr.io/enabled and its Service %s-dapr there?): %w",
				target.String(), name, target.ID, resolver.ErrNotFound)
		}
		return entry{}, fmt.Errorf("looking up %s with %s: %w", name, r.server(), err)
	}
	if len(ips) == 0 {
		return entry{}, fmt.Errorf("app id %q: %s has no addresses: %w", target.String(), name, resolver.ErrNotFound)
	}
	e := entry{until: time.Now().Add(r.cfg.CacheTTL)}
	port := strconv.Itoa(r.cfg.Port)
	for _, ip := range ips {
		e.addrs = append(e.addrs, net.JoinHostPort(ip.IP.String(), port))
	}
	if r.cfg.CacheTTL > 0 {
		r.mu.Lock()
		r.cache[name] = e
		r.mu.Unlock()
	}
	return e, nil
}

var _ resolver.Resolver = (*Resolver)(nil)
