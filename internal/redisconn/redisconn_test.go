package redisconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/redisserver"
)

var testDialect = Dialect{MaxRetries: []string{"redisMaxRetries"}, Duration: func(name, v string) (time.Duration, error) {
	return time.ParseDuration(v)
}}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		md    map[string]string
		mode  Mode
		addrs string
		addr  string
	}{
		{map[string]string{"redisHost": "redis"}, Node, "redis:6379", "redis:6379"},
		{map[string]string{"redisHost": "[::1]"}, Node, "[::1]:6379", "[::1]:6379"},
		{map[string]string{"redisHost": "s1:26379, s2", "failover": "true", "sentinelMasterName": "mymaster"}, Failover, "s1:26379,s2:26379", "Sentinel master mymaster via s1:26379,s2:26379"},
		{map[string]string{"redisHost": "r0:7000,r1:7001", "redisType": "cluster"}, Cluster, "r0:7000,r1:7001", "cluster r0:7000,r1:7001"},
		{map[string]string{"redisHost": "r0:7000", "redisType": "cluster", "redisDB": "0"}, Cluster, "r0:7000", "cluster r0:7000"},
	} {
		got, err := Parse(c.md, testDialect)
		if err != nil || got.Mode != c.mode || strings.Join(got.Addrs, ",") != c.addrs || got.Addr() != c.addr {
			t.Errorf("%v: %+v, %v; want mode %d, %s", c.md, got, err, c.mode, c.addrs)
		}
	}
	f, err := Parse(map[string]string{"redisHost": "s:1", "failover": "true", "sentinelMasterName": "m", "sentinelUsername": "u", "sentinelPassword": "p", "redisUsername": "app", "redisPassword": "pw"}, testDialect)
	if o := f.Options; err != nil || o.MasterName != "m" || o.SentinelUsername != "u" || o.SentinelPassword != "p" || o.Username != "app" || o.Password != "pw" {
		t.Errorf("sentinel credentials: %+v, %v", f.Options, err)
	}
	if _, ok := f.NewClient().(*redis.Client); !ok {
		t.Error("failover: not a *redis.Client")
	}
	cl, _ := Parse(map[string]string{"redisHost": "r0:7000", "redisType": "cluster"}, testDialect)
	if _, ok := cl.NewClient().(*redis.ClusterClient); !ok {
		t.Error("cluster: not a *redis.ClusterClient")
	}
}

// Each bad value or combination is an error naming the field to fix.
func TestParseErrors(t *testing.T) {
	for field, md := range map[string]map[string]string{
		"redisHost":                             {},
		"redisHost is missing":                  {"failover": "true", "sentinelMasterName": "m"},
		"names 2 servers":                       {"redisHost": "a:1,b:2"},
		`"a:b" is not`:                          {"redisHost": "a:b"},
		"empty address":                         {"redisHost": "a:1,,b:2", "redisType": "cluster"},
		"redisType":                             {"redisHost": "a:1", "redisType": "sentinel"},
		"sentinelMasterName is":                 {"redisHost": "a:1", "failover": "true"},
		"add failover: true":                    {"redisHost": "a:1", "sentinelMasterName": "m"},
		"sentinelPassword":                      {"redisHost": "a:1", "failover": "true", "sentinelMasterName": "m", "sentinelUsername": "u"},
		"failover: true and redisType: cluster": {"redisHost": "a:1", "failover": "true", "sentinelMasterName": "m", "redisType": "cluster"},
		"failover \"yes\"":                      {"redisHost": "a:1", "failover": "yes"},
		"redisDB":                               {"redisHost": "a:1", "redisType": "cluster", "redisDB": "2"},
		"redisMaxRetries":                       {"redisHost": "a:1", "redisMaxRetries": "many"},
		"clientKey":                             {"redisHost": "a:1", "enableTLS": "true", "clientCert": "x"},
		"without clientCert":                    {"redisHost": "a:1", "enableTLS": "true", "clientKey": "x"},
		"clientCert and clientKey":              {"redisHost": "a:1", "enableTLS": "true", "clientCert": "x", "clientKey": "y"},
		"caCert needs enableTLS":                {"redisHost": "a:1", "caCert": "x"},
		"caCert: want":                          {"redisHost": "a:1", "enableTLS": "true", "caCert": "not PEM"},
		"insecureSkipTLSVerify":                 {"redisHost": "a:1", "enableTLS": "true", "insecureSkipTLSVerify": "sure"},
		"poolSize":                              {"redisHost": "a:1", "poolSize": "0"},
	} {
		if _, err := Parse(md, testDialect); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%v: error %v; want one naming %s", md, err, field)
		}
	}
}

func TestSlot(t *testing.T) {
	// CLUSTER KEYSLOT's answers.
	for key, want := range map[string]int{"123456789": 12739, "foo": 12182, "{foo}bar": 12182, "a{foo}": 12182, "{}foo": Slot("{}foo"), "{": Slot("{")} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("{}foo") == Slot("foo") {
		t.Error("an empty hash tag is not a tag: the whole key counts")
	}
}

// TLS with a CA to trust (caCert) and a client certificate (clientCert,
// clientKey), against a redis-server that requires one; without the
// client certificate, or trusting another CA, the connection fails.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM := newCA(t, "test CA")
	serverCert, serverKey := issue(t, ca, caKey, "redis", false)
	clientCert, clientKey := issue(t, ca, caKey, "app", true)
	for name, data := range map[string][]byte{"ca.pem": caPEM, "server.pem": serverCert, "server.key": serverKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := redisserver.StartTLS(t, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem"))
	_, _, otherCA := newCA(t, "other CA")
	ctx := context.Background()
	ping := func(md map[string]string) error {
		md["redisHost"] = srv.TLSAddr
		md["enableTLS"] = "true"
		md["dialTimeout"] = "2s"
		c, err := Parse(md, testDialect)
		if err != nil {
			t.Fatal(err)
		}
		client := c.NewClient()
		defer client.Close()
		return client.Ping(ctx).Err()
	}
	if err := ping(map[string]string{"caCert": string(caPEM), "clientCert": string(clientCert), "clientKey": string(clientKey)}); err != nil {
		t.Fatalf("TLS with caCert and a client certificate: %v", err)
	}
	if err := ping(map[string]string{"caCert": string(caPEM)}); err == nil {
		t.Error("no client certificate: connected")
	}
	if err := ping(map[string]string{"caCert": string(otherCA), "clientCert": string(clientCert), "clientKey": string(clientKey)}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("trusting another CA: %v", err)
	}
	if err := ping(map[string]string{"insecureSkipTLSVerify": "true", "clientCert": string(clientCert), "clientKey": string(clientKey)}); err != nil {
		t.Errorf("insecureSkipTLSVerify: %v", err)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
