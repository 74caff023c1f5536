package api

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/apierr"
)

func TestExtendedBounds(t *testing.T) {
	for _, c := range []struct {
		name, key, value string
		status           int // 0: accepted
		want             string
	}{
		{"the CLI's keys", "appCommand", "python3 app.py --port 6001", 0, ""},
		{"empty key is ignored, as daprd", "", "x", 0, ""},
		{"longest key", strings.Repeat("k", MaxExtendedKeyBytes), "v", 0, ""},
		{"longest value", "big", strings.Repeat("v", MaxExtendedValueBytes), 0, ""},
		{"key too long", strings.Repeat("k", MaxExtendedKeyBytes+1), "v", 400, "at most 256"},
		{"value too long", "big", strings.Repeat("v", MaxExtendedValueBytes+1), 413, "at most 16384"},
		{"key not UTF-8", "k\xff", "v", 400, "UTF-8"},
		{"value not UTF-8", "k", "v\xff", 400, "UTF-8"},
		{"key with a control character", "k\x00", "v", 400, "control character"},
		{"the runtime's version", RuntimeVersionKey, "9.9.9", 400, "cannot be set"},
		{"the mTLS identity", MTLSSpiffeIDKey, "spiffe://public/ns/default/other", 400, "cannot be set"},
		{"the certificate's expiry", MTLSCertExpiryKey, "2099-01-01T00:00:00Z", 400, "cannot be set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e Extended
			err := e.Set(c.key, c.value)
			var ae *apierr.Error
			switch {
			case c.status == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case c.status == 0:
				if got, ok := e.All()[c.key]; c.key != "" && (!ok || got != c.value) {
					t.Errorf("not set: %q", got)
				}
				if c.key == "" && len(e.All()) != 0 {
					t.Errorf("empty key set: %v", e.All())
				}
			case !errors.As(err, &ae) || ae.HTTPStatus != c.status || !strings.Contains(ae.Message, c.want):
				t.Errorf("error %v; want %d naming %q", err, c.status, c.want)
			case len(e.All()) != 0:
				t.Errorf("refused but set: %v", e.All())
			}
		})
	}
}

func TestExtendedCount(t *testing.T) {
	var e Extended
	for i := range MaxExtendedKeys {
		if err := e.Set("k"+strconv.Itoa(i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	var ae *apierr.Error
	if err := e.Set("one-more", "v"); !errors.As(err, &ae) || ae.HTTPStatus != 400 || !strings.Contains(ae.Message, "100 keys") {
		t.Errorf("key past the bound: %v", err)
	}
	if err := e.Set("k0", "replaced"); err != nil || e.All()["k0"] != "replaced" {
		t.Errorf("replacing a key when full: %v", err)
	}
	all := e.All()
	all["k1"] = "changed"
	if e.All()["k1"] != "v" {
		t.Error("All is not a copy")
	}
}
