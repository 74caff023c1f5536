// Package kube reads the sidecar's resources from the Kubernetes API server
// in kubernetes mode: the Components and Resiliency resources of its
// namespace, the Configuration its pod names, and the Secrets Components
// read. It lists, watches and gets with plain HTTP requests and the pod's
// service account, not a client library, so the sidecar stays small.
package kube

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Where a pod finds its service account.
const (
	tokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	caFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// Client reads dapr.io resources of one namespace.
type Client struct {
	base      string // https://host:port
	tokenFile string
	http      *http.Client // gets and lists
	stream    *http.Client // watches
	namespace string
}

// InCluster returns a Client for the API server of the pod's cluster. Out
// of a cluster (tests, development), TANDEM_KUBE_API, TANDEM_KUBE_TOKEN_FILE
// and TANDEM_KUBE_CA_FILE name the server, a bearer token file and a CA.
func InCluster(namespace string, getenv func(string) string) (*Client, error) {
	base := getenv("TANDEM_KUBE_API")
	if base == "" {
		host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("kubernetes mode: no API server: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (outside a pod, set TANDEM_KUBE_API)")
		}
		base = "https://" + net.JoinHostPort(host, port)
	}
	tf, cf := cmp.Or(getenv("TANDEM_KUBE_TOKEN_FILE"), tokenFile), cmp.Or(getenv("TANDEM_KUBE_CA_FILE"), caFile)
	pem, err := os.ReadFile(cf)
	if err != nil {
		return nil, fmt.Errorf("kubernetes mode: the API server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kubernetes mode: %s holds no PEM certificate", cf)
	}
	if _, err := os.ReadFile(tf); err != nil {
		return nil, fmt.Errorf("kubernetes mode: the service account token: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Proxy:           http.ProxyFromEnvironment,
		// Watches are long requests, each on a connection of its own
		// (HTTP/1.1): a few of them, plus gets.
		MaxIdleConnsPerHost: 4,
	}
	return &Client{
		base:      strings.TrimSuffix(base, "/"),
		tokenFile: tf,
		namespace: namespace,
		http:      &http.Client{Timeout: 10 * time.Second, Transport: tr},
		stream:    &http.Client{Transport: tr}, // watches: bounded by their context
	}, nil
}

// get fetches path into v; notFound is returned, wrapped, on 404.
func (c *Client) get(ctx context.Context, path string, v any) error {
	resp, err := c.open(ctx, c.http, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return json.Unmarshal(body, v)
}

// open sends GET path with hc, and returns the answer when it is a 200;
// any other is an error saying why (errNotFound, errForbidden and
// errExpired wrapped).
func (c *Client) open(ctx context.Context, hc *http.Client, path string) (*http.Response, error) {
	token, err := os.ReadFile(c.tokenFile) // re-read: projected tokens rotate
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tandem-sidecar")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w: %w", path, err, errTransient)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", path, errNotFound)
	case http.StatusForbidden, http.StatusUnauthorized:
		return nil, fmt.Errorf("GET %s: %s: the sidecar's service account may not read it; grant get, list and watch on components, configurations and resiliencies of dapr.io, and get on the Secrets Components name (the chart's RBAC does): %s: %w", path, resp.Status, apiMessage(body), errForbidden)
	case http.StatusGone:
		return nil, fmt.Errorf("GET %s: %s: %w", path, apiMessage(body), errExpired)
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, fmt.Errorf("GET %s: %s: %s: %w", path, resp.Status, apiMessage(body), errTransient)
	}
	return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, apiMessage(body))
}

var (
	errNotFound  = errors.New("not found")
	errForbidden = errors.New("forbidden")
	errExpired   = errors.New("the resourceVersion watched from has expired")
	errTransient = errors.New("worth trying again")
)

func apiMessage(b []byte) string {
	var st struct{ Message string }
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		return st.Message
	}
	return strings.TrimSpace(string(b))
}
