package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a Unix socket address holds (sun_path
// less its terminating NUL).
var maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// listenUnix listens on the Unix socket path, which only the sidecar's user
// may connect to (mode 0600), or with gid >= 0 that group too (0660). A
// socket file that nothing answers on is what a sidecar that was killed
// left: it is replaced. The file is removed when the listener closes.
func (l *listeners) listenUnix(flag, path string, gid int) ([]net.Listener, error) {
	if len(path) > maxSocketPath {
		l.close()
		return nil, fmt.Errorf("%s: the socket path %s is %d bytes, longer than a Unix socket address holds (%d); pick a shorter folder", flag, path, len(path), maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			l.close()
			return nil, fmt.Errorf("%s: %s exists and is not a socket; remove it or pick another folder", flag, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			l.close()
			return nil, inUse(flag, path)
		}
		_ = os.Remove(path)
	}
	ln, err := listenPrivate(path, gid)
	if err != nil {
		l.close()
		if errors.Is(err, fs.ErrExist) {
			return nil, inUse(flag, path)
		}
		return nil, fmt.Errorf("%s: cannot listen on %s: %w", flag, path, err)
	}
	l.all = append(l.all, ln)
	return []net.Listener{ln}, nil
}

func inUse(flag, path string) error {
	return fmt.Errorf("%s: %s is in use, by another sidecar of this app id?; stop it or pick another folder", flag, path)
}

// listenPrivate listens on a Unix socket at path whose mode is 0600 (0660
// and group gid when gid >= 0) from the moment path exists, whatever the
// umask.
//
// bind(2) creates the socket file with the mode 0777 less the umask, and
// whoever may write it may connect: bound in place, the socket would be
// open to every local user for a moment (under umask 000, for good). The
// umask cannot be narrowed for the bind alone: it is the process's, and a
// file another goroutine creates meanwhile would get it too. So the socket
// is bound in a fresh folder beside path, mode 0700, where no other user can
// reach it; it gets its mode and group there, and only then is hard-linked
// at path, which fails if path exists (two sidecars cannot take one path,
// as bind in place would refuse). The folder goes when this returns.
func listenPrivate(path string, gid int) (net.Listener, error) {
	// ".s" and the one-letter name keep the private path shorter than
	// path (dapr-<app-id>-http.socket), so it fits in a socket address
	// whenever path does.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// MkdirTemp's 0700 less the umask: never wider, but maybe narrower
	// than the owner needs.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	private := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: private, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // the name it was bound to is gone; path is removed by Close
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Chown(private, -1, gid); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("giving it to group %d (the sidecar's user must be a member): %w", gid, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(private, mode); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if err := os.Link(private, path); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return &unixListener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener is a Unix socket listener known by the path it was linked
// at, which it removes when it closes, once.
type unixListener struct {
	*net.UnixListener
	addr   *net.UnixAddr
	unlink sync.Once
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.unlink.Do(func() { _ = os.Remove(l.addr.Name) })
	return err
}

// socketGroup is the group id --unix-domain-socket-group names (a group
// name or a numeric id), or -1 when it is empty.
func socketGroup(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(group); err == nil {
		return gid, nil // range-checked by parseOptions
	}
	g, err := user.LookupGroup(group)
	var unknown user.UnknownGroupError
	switch {
	case errors.As(err, &unknown):
		return -1, fmt.Errorf("--unix-domain-socket-group %q: no such group on this machine; accepted: the name or numeric id of one of its groups", group)
	case err != nil:
		return -1, fmt.Errorf("--unix-domain-socket-group %q: looking the group up: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("--unix-domain-socket-group %q: its id %q is not a number", group, g.Gid)
	}
	return gid, nil
}

var _ net.Listener = (*unixListener)(nil)
