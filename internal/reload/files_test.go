package reload

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

// reads writes what a tick reads: a file's version, or "!" and why it
// could not be read.
func reads(files map[string]string) map[string]fileRead {
	out := map[string]fileRead{}
	for key, v := range files {
		if why, ok := strings.CutPrefix(v, "!"); ok {
			out[key] = fileRead{err: errors.New(why)}
		} else {
			out[key] = fileRead{doc: doc{key: key, version: v}}
		}
	}
	return out
}

// sentOf writes an update as reads' input.
func sentOf(u update) map[string]string {
	out := map[string]string{}
	for key, d := range u.docs {
		out[key] = d.version
	}
	for key, err := range u.errs {
		out[key] = "!" + err.Error()
	}
	return out
}

// The poller sends each file once it has read the same twice in a row, on
// its own: a file that keeps changing holds back no other, a removal is
// taken once the file has been absent twice, and a file that cannot be
// read is sent as its error, once settled, while the others apply.
func TestPoll(t *testing.T) {
	type tick struct {
		read    map[string]string // nil: the origin fails with err
		err     string
		want    map[string]string // nil: nothing sent
		wantErr string
	}
	for _, c := range []struct {
		name  string
		sent  map[string]string // in force at start
		ticks []tick
	}{
		{"nothing changes", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "1"}},
		}},
		{"a change is taken once it reads the same twice", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "2"}},
			{read: map[string]string{"a": "2"}, want: map[string]string{"a": "2"}},
			{read: map[string]string{"a": "2"}},
		}},
		{"a file being written is taken once whole", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "half"}},
			{read: map[string]string{"a": "whole"}},
			{read: map[string]string{"a": "whole"}, want: map[string]string{"a": "whole"}},
		}},
		{"a file that never settles holds back no other", map[string]string{"a": "1", "log": "1"}, []tick{
			{read: map[string]string{"a": "2", "log": "2"}},
			{read: map[string]string{"a": "2", "log": "3"}, want: map[string]string{"a": "2", "log": "1"}},
			{read: map[string]string{"a": "3", "log": "4"}},
			{read: map[string]string{"a": "3", "log": "5"}, want: map[string]string{"a": "3", "log": "1"}},
			{read: map[string]string{"a": "3", "log": "5"}, want: map[string]string{"a": "3", "log": "5"}},
		}},
		{"a new file that never settles is not sent", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "1", "log": "1"}},
			{read: map[string]string{"a": "2", "log": "2"}},
			{read: map[string]string{"a": "2", "log": "3"}, want: map[string]string{"a": "2"}},
		}},
		{"a file added", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "1", "b": "1"}},
			{read: map[string]string{"a": "1", "b": "1"}, want: map[string]string{"a": "1", "b": "1"}},
		}},
		{"a file removed is taken once absent twice", map[string]string{"a": "1", "b": "1"}, []tick{
			{read: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "1"}, want: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "1"}},
		}},
		{"a file gone for one read only is not removed", map[string]string{"a": "1", "b": "1"}, []tick{
			{read: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "1", "b": "1"}},
			{read: map[string]string{"a": "1", "b": "1"}},
		}},
		{"a file that cannot be read is sent as its error while another applies", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "2", "pipe": "!a named pipe"}},
			{read: map[string]string{"a": "2", "pipe": "!a named pipe"}, want: map[string]string{"a": "2", "pipe": "!a named pipe"}},
			{read: map[string]string{"a": "2", "pipe": "!a named pipe"}},
			{read: map[string]string{"a": "2"}},
			{read: map[string]string{"a": "2"}, want: map[string]string{"a": "2"}},
		}},
		{"a file in force that cannot be read, then can", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "!too large"}},
			{read: map[string]string{"a": "!too large"}, want: map[string]string{"a": "!too large"}},
			{read: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "1"}, want: map[string]string{"a": "1"}},
		}},
		{"an error seen once is not sent", map[string]string{"a": "1"}, []tick{
			{read: map[string]string{"a": "!no such file"}},
			{read: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "1"}},
		}},
		{"a folder that cannot be read: its error once, then what was sent", map[string]string{"a": "1"}, []tick{
			{err: "permission denied", wantErr: "permission denied"},
			{err: "permission denied"},
			{read: map[string]string{"a": "2"}, want: map[string]string{"a": "1"}},
			{read: map[string]string{"a": "2"}, want: map[string]string{"a": "2"}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			i := 0
			p := poller{origin: originFiles, sent: reads(c.sent), read: func() (map[string]fileRead, error) {
				if tk := c.ticks[i]; tk.read == nil {
					return nil, errors.New(tk.err)
				}
				return reads(c.ticks[i].read), nil
			}}
			for ; i < len(c.ticks); i++ {
				tk := c.ticks[i]
				u, ok := p.poll()
				switch {
				case !ok && (tk.want != nil || tk.wantErr != ""):
					t.Fatalf("tick %d: nothing sent, want %v %q", i+1, tk.want, tk.wantErr)
				case !ok:
				case u.origin != originFiles:
					t.Fatalf("tick %d: origin %v", i+1, u.origin)
				case tk.wantErr != "":
					if u.err == nil || u.err.Error() != tk.wantErr || u.docs != nil {
						t.Fatalf("tick %d: sent %v %v, want the error %q", i+1, sentOf(u), u.err, tk.wantErr)
					}
				case tk.want == nil:
					t.Fatalf("tick %d: sent %v %v, want nothing", i+1, sentOf(u), u.err)
				case u.err != nil || !maps.Equal(sentOf(u), tk.want):
					t.Fatalf("tick %d: sent %v %v, want %v", i+1, sentOf(u), u.err, tk.want)
				}
			}
		})
	}
}
