// Package redisconn reads the connection metadata of the Redis components
// (state.redis, pubsub.redis) with daprd's names, and makes the go-redis
// client they describe: one server, a Sentinel-managed master (failover:
// true) or a Redis Cluster (redisType: cluster).
//
// The components differ where daprd's do: the name of the retries field
// (state.redis: maxRetries, also redisMaxRetries; pubsub.redis:
// redisMaxRetries) and the durations they accept. A Dialect says which.
// Everything else, names, defaults and checks, is the same for both.
package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Mode is how the client reaches Redis.
type Mode int

const (
	// Node is one server (redisType: node, the default).
	Node Mode = iota
	// Failover is a master that Redis Sentinel names (failover: true).
	Failover
	// Cluster is a Redis Cluster (redisType: cluster).
	Cluster
)

// Dialect is what differs between the components that read these fields.
type Dialect struct {
	// MaxRetries are the names of the retries field, the first winning
	// when several are given.
	MaxRetries []string
	// Duration reads the duration of field name.
	Duration func(name, v string) (time.Duration, error)
}

// Config is a component's connection, as its metadata says.
type Config struct {
	Mode Mode
	// Addrs are the server (Node), the Sentinels (Failover) or the seed
	// nodes (Cluster), as host:port.
	Addrs []string
	// Options are the client's; Addrs, MasterName and the Sentinel
	// credentials are filled in.
	Options *redis.UniversalOptions
}

// Fields are the metadata fields Parse reads, but the retries field,
// whose names the Dialect gives.
var Fields = []string{
	"redisHost", "redisUsername", "redisPassword", "redisDB", "redisType",
	"failover", "sentinelMasterName", "sentinelUsername", "sentinelPassword",
	"enableTLS", "clientCert", "clientKey", "caCert", "insecureSkipTLSVerify",
	"dialTimeout", "readTimeout", "writeTimeout", "poolTimeout", "poolSize", "minIdleConns",
}

// Parse reads the connection fields of md. An error names the field and
// what it accepts.
func Parse(md map[string]string, d Dialect) (Config, error) {
	o := &redis.UniversalOptions{
		// Maintenance notifications are a managed service's; asked of
		// Redis they fail the handshake, and go-redis then changes the
		// options shared by the clients of Conn() unlocked (a data race).
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		Username:                 md["redisUsername"],
		Password:                 md["redisPassword"],
		DialTimeout:              2 * time.Second,
		ReadTimeout:              2 * time.Second,
		WriteTimeout:             2 * time.Second,
		PoolTimeout:              3 * time.Second,
		MaxRetries:               1,
		// Fail fast when the server is down rather than retry for long.
		MinRetryBackoff: 8 * time.Millisecond,
		MaxRetryBackoff: 64 * time.Millisecond,
		// A call's deadline (a resiliency timeout) ends its wait for a
		// hung server, not only readTimeout.
		ContextTimeoutEnabled: true,
	}
	c := Config{Options: o}
	var err error
	if c.Mode, err = mode(md); err != nil {
		return Config{}, err
	}
	if c.Addrs, err = addrs(md["redisHost"], c.Mode); err != nil {
		return Config{}, err
	}
	o.Addrs = c.Addrs
	if err := sentinel(md, c.Mode, o); err != nil {
		return Config{}, err
	}
	ints := []struct {
		name   string
		dst    *int
		lo, hi int
	}{{"redisDB", &o.DB, 0, 15}, {"poolSize", &o.PoolSize, 1, 10_000}, {"minIdleConns", &o.MinIdleConns, 0, 10_000}}
	for _, f := range ints {
		if v, ok := md[f.name]; ok {
			if *f.dst, err = wholeNumber(f.name, v, f.lo, f.hi); err != nil {
				return Config{}, err
			}
		}
	}
	if o.DB != 0 && c.Mode == Cluster {
		return Config{}, fmt.Errorf("metadata redisDB %q: a Redis Cluster has database 0 only; leave redisDB out with redisType cluster", md["redisDB"])
	}
	for _, name := range d.MaxRetries {
		if v, ok := md[name]; ok {
			if o.MaxRetries, err = wholeNumber(name, v, 0, 100); err != nil {
				return Config{}, err
			}
			break
		}
	}
	durs := []struct {
		name string
		dst  *time.Duration
	}{{"dialTimeout", &o.DialTimeout}, {"readTimeout", &o.ReadTimeout}, {"writeTimeout", &o.WriteTimeout}, {"poolTimeout", &o.PoolTimeout}}
	for _, f := range durs {
		if v, ok := md[f.name]; ok {
			if *f.dst, err = d.Duration(f.name, v); err != nil {
				return Config{}, err
			}
		}
	}
	if o.TLSConfig, err = tlsConfig(md); err != nil {
		return Config{}, err
	}
	return c, nil
}

// mode reads redisType and failover.
func mode(md map[string]string) (Mode, error) {
	m := Node
	switch v, ok := md["redisType"]; {
	case !ok, v == "node":
	case v == "cluster":
		m = Cluster
	default:
		return 0, fmt.Errorf("metadata redisType %q: want node (one server, or a Sentinel-managed master with failover: true) or cluster (a Redis Cluster)", v)
	}
	on, err := boolField(md, "failover")
	switch {
	case err != nil:
		return 0, err
	case on && m == Cluster:
		return 0, fmt.Errorf("metadata failover: true and redisType: cluster do not go together: a Redis Cluster fails over by itself; give one of them")
	case on:
		m = Failover
	}
	return m, nil
}

// addrs reads redisHost: one address, or for a cluster or Sentinels a
// comma-separated list. A host without a port gets Redis's (6379), or
// Sentinel's (26379), as daprd does.
func addrs(v string, m Mode) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		switch m {
		case Failover:
			return nil, fmt.Errorf("metadata redisHost is missing: give the Sentinels as host:port, comma-separated, e.g. sentinel-0:26379,sentinel-1:26379,sentinel-2:26379")
		case Cluster:
			return nil, fmt.Errorf("metadata redisHost is missing: give one or more nodes of the cluster as host:port, comma-separated, e.g. redis-0:6379,redis-1:6379")
		}
		return nil, fmt.Errorf("metadata redisHost is missing: give the server as host:port, e.g. localhost:6379")
	}
	port := "6379"
	if m == Failover {
		port = "26379"
	}
	var out []string
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("metadata redisHost %q: an empty address in the list", v)
		}
		host, p, err := net.SplitHostPort(a)
		if err != nil {
			switch {
			case strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]"):
				host, p = a[1:len(a)-1], port
			case !strings.Contains(a, ":"):
				host, p = a, port
			default:
				return nil, fmt.Errorf("metadata redisHost %q: %q is not host:port", v, a)
			}
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || host == "" {
			return nil, fmt.Errorf("metadata redisHost %q: %q is not host:port with a port from 1 to 65535", v, a)
		}
		out = append(out, net.JoinHostPort(host, p))
	}
	if len(out) > 1 && m == Node {
		return nil, fmt.Errorf("metadata redisHost %q names %d servers: one server takes one address; for a Redis Cluster add redisType: cluster, for Sentinels failover: true and sentinelMasterName", v, len(out))
	}
	return out, nil
}

// sentinel reads the Sentinel fields, which only failover takes.
func sentinel(md map[string]string, m Mode, o *redis.UniversalOptions) error {
	if m != Failover {
		for _, f := range []string{"sentinelMasterName", "sentinelUsername", "sentinelPassword"} {
			if _, ok := md[f]; ok {
				return fmt.Errorf("metadata %s is for Redis Sentinel: add failover: true (redisHost then lists the Sentinels), or leave %s out", f, f)
			}
		}
		return nil
	}
	o.MasterName = strings.TrimSpace(md["sentinelMasterName"])
	if o.MasterName == "" {
		return fmt.Errorf("metadata sentinelMasterName is missing: failover: true needs the name the Sentinels monitor the master under (sentinel monitor <name> ...), e.g. mymaster")
	}
	o.SentinelUsername = md["sentinelUsername"]
	o.SentinelPassword = md["sentinelPassword"]
	if o.SentinelUsername != "" && o.SentinelPassword == "" {
		return fmt.Errorf("metadata sentinelUsername is set without sentinelPassword: an ACL user of the Sentinels needs its password")
	}
	return nil
}

// tlsConfig reads enableTLS and what it takes: a client certificate and
// key (clientCert, clientKey) and the CA to trust (caCert), all PEM.
func tlsConfig(md map[string]string) (*tls.Config, error) {
	on, err := boolField(md, "enableTLS")
	if err != nil {
		return nil, err
	}
	skip, err := boolField(md, "insecureSkipTLSVerify")
	if err != nil {
		return nil, err
	}
	if !on {
		for _, f := range []string{"clientCert", "clientKey", "caCert", "insecureSkipTLSVerify"} {
			if _, ok := md[f]; ok {
				return nil, fmt.Errorf("metadata %s needs enableTLS: true", f)
			}
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skip} //nolint:gosec // the user's explicit choice, named as insecure
	cert, key := md["clientCert"], md["clientKey"]
	switch {
	case cert != "" && key == "":
		return nil, fmt.Errorf("metadata clientCert is set without clientKey: give both, PEM")
	case cert == "" && key != "":
		return nil, fmt.Errorf("metadata clientKey is set without clientCert: give both, PEM")
	case cert != "":
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			return nil, fmt.Errorf("metadata clientCert and clientKey: want a PEM certificate and its PEM private key: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	if ca := md["caCert"]; ca != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ca)) {
			return nil, fmt.Errorf("metadata caCert: want one or more PEM certificates (-----BEGIN CERTIFICATE-----)")
		}
		c.RootCAs = pool
	}
	return c, nil
}

// NewClient returns the client c describes: a *redis.Client for one
// server or a Sentinel-managed master, a *redis.ClusterClient for a
// cluster. It connects on first use.
func (c Config) NewClient() redis.UniversalClient {
	switch c.Mode {
	case Failover:
		return redis.NewFailoverClient(c.Options.Failover())
	case Cluster:
		cc := redis.NewClusterClient(c.Options.Cluster())
		cc.AddHook(reloadOnNodeError{cc})
		return cc
	}
	return redis.NewClient(c.Options.Simple())
}

// Addr says where c connects, for messages: the server, "Sentinel master
// <name> via <sentinels>" or "cluster <seed nodes>".
func (c Config) Addr() string {
	switch c.Mode {
	case Failover:
		return "Sentinel master " + c.Options.MasterName + " via " + strings.Join(c.Addrs, ",")
	case Cluster:
		return "cluster " + strings.Join(c.Addrs, ",")
	}
	return strings.Join(c.Addrs, ",")
}

// Addr says where a client connects, for messages, when no Config says it.
func Addr(client redis.UniversalClient) string {
	switch c := client.(type) {
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	case *redis.Client:
		if a := c.Options().Addr; a != "FailoverClient" {
			return a
		}
		return "Sentinel master"
	}
	return "Redis"
}

func wholeNumber(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("metadata %s %q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func boolField(md map[string]string, name string) (bool, error) {
	v, ok := md[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("metadata %s %q: want true or false", name, v)
	}
	return b, nil
}
