package api

import (
	"maps"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// Bounds of the extended metadata: what the Dapr CLI sets (cliPID, appPID,
// appCommand, the run file's paths and names) fits well within them.
const (
	MaxExtendedKeyBytes   = 256
	MaxExtendedValueBytes = 16 << 10
	MaxExtendedKeys       = 100
)

// RuntimeVersionKey is the key of extended metadata daprd fills with its
// version (its older place for it); the sidecar fills it, and it cannot be
// set.
const RuntimeVersionKey = "daprRuntimeVersion"

// The keys of extended metadata the sidecar fills with its workload
// identity when mutual TLS is on, and that cannot be set: its SPIFFE ID,
// and when its current certificate expires (RFC 3339, UTC). Neither is a
// secret: the ID is in every certificate the sidecar presents.
const (
	MTLSSpiffeIDKey   = "mtlsSpiffeID"
	MTLSCertExpiryKey = "mtlsCertExpiry"
)

// Extended is the sidecar's extended metadata (Dapr's): keys and string
// values that apps and the Dapr CLI set, shown under "extended". A set
// replaces the key's value. It is bounded: at most MaxExtendedKeys keys of
// at most MaxExtendedKeyBytes bytes, values of at most
// MaxExtendedValueBytes bytes, all valid UTF-8 (JSON and gRPC carry them as
// text). The zero value is empty and ready; it is safe for concurrent use.
type Extended struct {
	mu sync.RWMutex
	m  map[string]string
}

// Set sets key to value. An empty key is ignored, as daprd does. Its errors
// are *apierr.Error values: 400 / InvalidArgument for a key it refuses or
// one key too many, 413 / ResourceExhausted for a value over the bound.
func (e *Extended) Set(key, value string) error {
	if key == "" {
		return nil
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxExtendedValueBytes {
		return apierr.New(apierr.CodeBodyTooLarge, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			"metadata value of %q is %d bytes; at most %d are accepted", key, len(value), MaxExtendedValueBytes)
	}
	if !utf8.ValidString(value) {
		return apierr.New(apierr.CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument,
			"metadata value of %q is not valid UTF-8", key)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.m[key]; !ok && len(e.m) >= MaxExtendedKeys {
		return apierr.New(apierr.CodeMalformedRequest, http.StatusBadRequest, codes.ResourceExhausted,
			"metadata has %d keys, the most it holds; %q is not added (setting a key it has replaces its value)", len(e.m), key)
	}
	if e.m == nil {
		e.m = map[string]string{}
	}
	e.m[key] = value
	return nil
}

func checkKey(key string) error {
	bad := func(why string, args ...any) error {
		return apierr.New(apierr.CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, why, args...)
	}
	switch {
	case len(key) > MaxExtendedKeyBytes:
		return bad("metadata key of %d bytes; at most %d are accepted", len(key), MaxExtendedKeyBytes)
	case !utf8.ValidString(key):
		return bad("metadata key %q is not valid UTF-8", key)
	case strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return bad("metadata key %q has a control character", key)
	case key == RuntimeVersionKey:
		return bad("metadata key %q is the sidecar's own (its version) and cannot be set", key)
	case key == MTLSSpiffeIDKey || key == MTLSCertExpiryKey:
		return bad("metadata key %q is the sidecar's own (its mutual TLS identity) and cannot be set", key)
	}
	return nil
}

// All returns a copy of the keys and values.
func (e *Extended) All() map[string]string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return maps.Clone(e.m)
}
