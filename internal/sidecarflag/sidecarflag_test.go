package sidecarflag

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIntParse(t *testing.T) {
	const huge = "99999999999999999999" // past int64
	cases := []struct {
		r       Int
		ok, bad []string
	}{
		{ListenPort, []string{"0", "65535"}, []string{"-1", "65536", huge, "x", "1.5", "0x10", ""}},
		{ProfilePort, []string{"-1", "0", "65535"}, []string{"-2", "65536"}},
		{AppMaxConcurrency, []string{"-1", "0", "1048576"}, []string{"-2", "1048577", "9223372036854775807"}},
		{MaxRequestSizeMB, []string{"-1", "1", "1048576"}, []string{"0", "-2", "1048577"}},
		{ReadBufferSizeKB, []string{"-1", "1", "8192"}, []string{"0", "8193"}},
	}
	for _, c := range cases {
		for _, s := range c.ok {
			if _, err := c.r.Parse("--f", s); err != nil {
				t.Errorf("%+v refuses %q: %v", c.r, s, err)
			}
		}
		for _, s := range c.bad {
			_, err := c.r.Parse("--f", s)
			if err == nil || err.Error() != "--f "+strconv.Quote(s)+" is not valid; accepted: "+c.r.Accepted {
				t.Errorf("%+v, %q: %v", c.r, s, err)
			}
		}
	}
}

func TestIsUnset(t *testing.T) {
	for _, c := range []struct {
		r    Int
		n    int
		want bool
	}{
		{AppMaxConcurrency, -1, true}, {AppMaxConcurrency, 0, true}, {AppMaxConcurrency, 1, false},
		{GracefulShutdown, -1, true}, {GracefulShutdown, 0, false},
		{ListenPort, -1, false}, {ListenPort, 0, false},
	} {
		if got := c.r.IsUnset(c.n); got != c.want {
			t.Errorf("%+v.IsUnset(%d) = %v", c.r, c.n, got)
		}
	}
}

// TestUnitsMatch: the bounds of daprd's flags in MB and KB are those of
// ours in bytes.
func TestUnitsMatch(t *testing.T) {
	if int64(MaxRequestSizeMB.Hi)<<20 != MaxBodySize.Hi || int64(MaxRequestSizeMB.Lo)<<20 < MaxBodySize.Lo {
		t.Errorf("MB %+v against bytes %+v", MaxRequestSizeMB, MaxBodySize)
	}
	if int64(ReadBufferSizeKB.Lo)<<10 != ReadBufferSize.Lo || int64(ReadBufferSizeKB.Hi)<<10 != ReadBufferSize.Hi {
		t.Errorf("KB %+v against bytes %+v", ReadBufferSizeKB, ReadBufferSize)
	}
}

func TestSizeAndDuration(t *testing.T) {
	if n, err := ReadBufferSize.Parse("--read-buffer-size", "8Mi"); n != 8<<20 || err != nil {
		t.Errorf("8Mi: %d %v", n, err)
	}
	for _, s := range []string{"1023", "9Mi", "0", "-1", "4MB"} {
		if _, err := ReadBufferSize.Parse("--read-buffer-size", s); err == nil || !strings.Contains(err.Error(), `--read-buffer-size "`+s+`" is not valid; accepted: 1Ki to 8Mi`) {
			t.Errorf("%q: %v", s, err)
		}
	}
	if err := BlockShutdown.Check("--d", time.Hour); err != nil {
		t.Error(err)
	}
	if err := BlockShutdown.Check("--d", time.Hour+1); err == nil || err.Error() != "--d 1h0m0.000000001s is not valid; accepted: 0 to 1h, e.g. 10s" {
		t.Errorf("past an hour: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	cases := map[string]int64{"1": 1, "4Mi": 4 << 20, "16Ki": 16 << 10, "1Gi": 1 << 30, "2M": 2e6, "3k": 3000}
	for in, want := range cases {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "4MB", "Mi", "1.5Mi", "99999999999Ti"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): no error", bad)
		}
	}
}

// TestAnnotatedTable: each option is one annotation of Dapr's, says what it
// accepts, and writes a flag the way its value allows.
func TestAnnotatedTable(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Annotated {
		if !strings.HasPrefix(o.Annotation, "dapr.io/") || seen[o.Annotation] || o.Flag == "" || o.Accepted == "" {
			t.Errorf("%+v: an annotation dapr.io/..., once, with a flag and what it accepts", o)
		}
		seen[o.Annotation] = true
		if (o.Writes == "") != (o.Unit == 0) {
			t.Errorf("%s: Writes and Unit go together", o.Annotation)
		}
		if _, ok := o.Value.(Int); o.Writes != "" && !ok {
			t.Errorf("%s: only a number is written in another flag's unit", o.Annotation)
		}
		if w, ok := o.Value.(Words); o.Default != "" && (!ok || !slices.Contains(w, o.Default)) {
			t.Errorf("%s: the default %q is not one of its words", o.Annotation, o.Default)
		}
		if p, ok := o.Value.(Port); ok && o.Accepted != "1 to "+strconv.Itoa(p.Flag.Hi) {
			t.Errorf("%s accepts %q; its flag goes up to %d", o.Annotation, o.Accepted, p.Flag.Hi)
		}
		if r, ok := o.Value.(Int); ok && !strings.Contains(o.Accepted, " to "+strconv.Itoa(r.Hi)+" ") {
			t.Errorf("%s accepts %q; its flag goes up to %d", o.Annotation, o.Accepted, r.Hi)
		}
	}
}
