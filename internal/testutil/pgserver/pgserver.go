// Package pgserver runs a real PostgreSQL server for tests: initdb into a
// temporary folder, then postgres on a free loopback port, with
// durability off (fsync) for speed, trust authentication, and user
// postgres.
//
// PostgreSQL refuses to run as root, and tests here run as root: the
// server then runs as the postgres system user (Debian's package creates
// it), or nobody, in a folder it owns.
//
// A test package shares one server: its TestMain calls Main, and tests
// call Shared, which starts the server at the first call and gives each
// caller a database of its own. Start gives a test a server of its own,
// which it can stop and start again.
//
// Without the PostgreSQL binaries (Debian's postgresql package) tests are
// skipped, unless CI is set, where they fail: CI installs them.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

// Server is a running PostgreSQL server.
type Server struct {
	Port int
	dir  string // removed by Close
	bin  string // folder of initdb and postgres
	cred *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	out    *syncbuf.Buffer
	dbs    atomic.Int64
}

// Bin finds the folder of initdb and postgres: PATH, or Debian's
// /usr/lib/postgresql/<version>/bin (the newest).
func Bin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			p, _ = filepath.EvalSymlinks(p)
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed (no initdb and postgres on PATH or in /usr/lib/postgresql/*/bin): apt-get install -y postgresql (or run make test)")
}

func version(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// need skips t, or fails it in CI, when PostgreSQL is not installed.
func need(t testing.TB) string {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI must install it", err)
		}
		t.Skip(err)
	}
	return bin
}

// Start starts a server of t's own, stopped and removed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start(need(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres output:\n%s", s.out.String())
		}
		s.Close()
	})
	return s
}

// New starts a server for a program that is not a test (bench); the
// caller closes it (Close). Its database postgres is there to use.
func New() (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	return start(bin)
}

var shared struct {
	sync.Mutex
	s   *Server
	err error
}

// Main runs the tests of a package that uses Shared, and stops the shared
// server (if a test started it) when they end:
//
//	func TestMain(m *testing.M) { os.Exit(pgserver.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.s != nil {
		shared.s.Close()
		shared.s = nil
	}
	return code
}

// Shared returns the connection string of a new, empty database on the
// package's shared server, started at the first call (see Main).
func Shared(t testing.TB) string {
	t.Helper()
	bin := need(t)
	shared.Lock()
	if shared.s == nil && shared.err == nil {
		shared.s, shared.err = start(bin)
	}
	s, err := shared.s, shared.err
	shared.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return s.NewDatabase(t)
}

// ConnString is the connection string of database db.
func (s *Server) ConnString(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable connect_timeout=10", s.Port, db)
}

// NewDatabase creates an empty database and returns its connection string.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		t.Fatalf("connecting to postgres on port %d: %v", s.Port, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	return s.ConnString(name)
}

// PasswordUser creates a role that logs in with password (SCRAM, where
// every other role is trusted), owning a new database, and returns the
// connection string of that database as the role, without the password:
// the caller adds "password=...", the right one or not.
func (s *Server) PasswordUser(t testing.TB, password string) string {
	t.Helper()
	n := s.dbs.Add(1)
	role, db := fmt.Sprintf("pw_%d", n), fmt.Sprintf("test_%d", n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		t.Fatalf("connecting to postgres on port %d: %v", s.Port, err)
	}
	defer conn.Close(ctx)
	hba := filepath.Join(s.data(), "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	// The first line that matches decides.
	line := fmt.Sprintf("host all %s 127.0.0.1/32 scram-sha-256\n", role)
	if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.cred != nil {
		if err := os.Chown(hba, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		"SET password_encryption = 'scram-sha-256'",
		"CREATE ROLE " + role + " LOGIN PASSWORD " + quote(password),
		"CREATE DATABASE " + db + " OWNER " + role,
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The reload is asynchronous: wait until the role needs its password.
	cs := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=10", s.Port, role, db)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, cs+" password=not-"+password)
		if err != nil {
			break
		}
		_ = c.Close(ctx)
		if time.Now().After(deadline) {
			t.Fatal("pg_hba.conf not reloaded within 30s: a wrong password is still taken")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cs
}

// quote is a SQL string literal.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// start runs initdb into a new folder, then the server.
func start(bin string) (*Server, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgserver-")
	if err != nil {
		return nil, err
	}
	s := &Server{Port: port, dir: dir, bin: bin, out: &syncbuf.Buffer{}}
	fail := func(err error) (*Server, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(); err != nil {
			return fail(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fail(err)
		}
	}
	var out bytes.Buffer
	initdb := s.command("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.Stdout, initdb.Stderr = &out, &out
	if err := initdb.Run(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out.String()))
	}
	if err := s.run(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// unprivileged is the user the server runs as under root.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("PostgreSQL does not run as root, and there is no postgres or nobody user to run it as")
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Env = []string{"LANG=C", "LC_ALL=C", "PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	return cmd
}

// run starts postgres and waits until it takes connections.
func (s *Server) run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := s.command("postgres", "-D", s.data(), "-p", strconv.Itoa(s.Port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	s.exited = exited
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("postgres exited at start: %v\n%s", waitErr, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("postgres on port %d took no connection within 60s\n%s", s.Port, s.out.String())
}

// Stop stops the server at once (SIGQUIT: immediate shutdown), and waits
// until its port is closed. Its data stays; Restart starts it again.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd = nil
}

// Restart starts a stopped server again, on the same port with the same
// data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
}

// Close stops the server and removes its folder.
func (s *Server) Close() {
	s.Stop()
	_ = os.RemoveAll(s.dir)
}
