package main

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestListenUnix: under umask 000 the sockets are 0600, or 0660 and the
// group's with a group, nothing else is left in the folder, and a socket
// a killed sidecar left is replaced; a socket in use, a file that is no
// socket or a path too long for a socket address is an error naming it.
func TestListenUnix(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	gid := os.Getgid()
	for _, c := range []struct {
		name    string
		gid     int
		before  func(t *testing.T, path string) // what is at path before
		mode    os.FileMode
		wantErr string
	}{
		{name: "fresh", gid: -1, mode: 0o600},
		{name: "group", gid: gid, mode: 0o660},
		{name: "stale socket", gid: -1, mode: 0o600, before: func(t *testing.T, path string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}},
		{name: "in use", gid: -1, wantErr: "is in use", before: func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}},
		{name: "not a socket", gid: -1, wantErr: "exists and is not a socket", before: func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "dapr-a-http.socket")
			if c.before != nil {
				c.before(t, path)
			}
			l := &listeners{}
			lns, err := l.listenUnix("--unix-domain-socket", path, c.gid)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v, want one naming %s with %q", err, path, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ln := lns[0]
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != c.mode || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
				t.Errorf("mode %v group %d, want a socket with %v, group %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, c.mode, gid)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("the folder holds %v", ents)
			}
			if ln.Addr().String() != path {
				t.Errorf("Addr %s, want %s", ln.Addr(), path)
			}
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
			l.close()
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after Close: %v", err)
			}
			// A second Close removes nothing: path may be another's now.
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			_ = ln.Close()
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("a second Close removed what is at path now: %v", err)
			}
		})
	}

	t.Run("path too long", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), strings.Repeat("d", maxSocketPath), "dapr-a-http.socket")
		_, err := (&listeners{}).listenUnix("--unix-domain-socket", path, -1)
		if err == nil || !strings.Contains(err.Error(), "longer than a Unix socket address holds") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("taken between the check and the link", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "dapr-a-http.socket")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := listenPrivate(path, -1); !errors.Is(err, fs.ErrExist) {
			t.Errorf("error %v, want one that path exists", err)
		}
	})
}

func TestSocketGroup(t *testing.T) {
	gid := os.Getgid()
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in      string
		want    int
		wantErr string
	}{
		{"", -1, ""},
		{"4242", 4242, ""},
		{g.Name, gid, ""},
		{"no-such-group-here", -1, `--unix-domain-socket-group "no-such-group-here": no such group`},
	} {
		got, err := socketGroup(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %d %v, want %d", c.in, got, err, c.want)
		}
	}
}
