package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// RemoteIssuer asks the control plane's CA (internal/ca) at addr
// (https://host:port) for certificates of id, with the token read from
// tokenFile at every request (the kubelet rotates projected tokens) and the
// CA's serving certificate verified against the roots in bundleFile.
func RemoteIssuer(addr, tokenFile, bundleFile string, id ID) (Issuer, error) {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--sentry-address %q is not valid: want https://host:port of the CA", addr)
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname(),
			// The roots can change (rotation): read them at every handshake.
			InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the bundle file
			VerifyConnection: func(cs tls.ConnectionState) error {
				pool, err := readPool(bundleFile)
				if err != nil {
					return err
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: u.Hostname()})
				return err
			},
		}}}
	endpoint := strings.TrimSuffix(addr, "/") + "/v1/certificates"
	return func(ctx context.Context, csr []byte) ([][]byte, error) {
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the service-account token: %w", err)
		}
		body, _ := json.Marshal(map[string]any{"csr": csr, "appId": id.AppID, "namespace": id.Namespace, "token": strings.TrimSpace(string(token))})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("the CA at %s: %w", addr, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			var e struct{ Error string }
			_ = json.Unmarshal(b, &e)
			return nil, fmt.Errorf("the CA at %s refused: %s (HTTP %d)", addr, e.Error, resp.StatusCode)
		}
		var out struct{ CertChain []byte }
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, fmt.Errorf("the CA's answer: %w", err)
		}
		var chain [][]byte
		for rest := out.CertChain; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			chain = append(chain, blk.Bytes)
		}
		if len(chain) == 0 {
			return nil, errors.New("the CA answered with no certificate")
		}
		return chain, nil
	}, nil
}

func readPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("trust bundle %s holds no certificate", file)
	}
	return pool, nil
}
