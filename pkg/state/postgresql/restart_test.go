package postgresql

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
	"github.com/tandem-run/tandem/pkg/state"
)

// The database stopped and started again under a steady load of saves
// and reads: while it is down every call fails fast, saying which
// database and why; once it is back every worker's calls succeed again,
// on the same store.
func TestRestartUnderLoad(t *testing.T) {
	srv := pgserver.Start(t)
	conn := srv.NewDatabase(t)
	s := newStore(t, conn, map[string]string{"timeout": "5s"})
	ctx := context.Background()
	const workers = 6
	type result struct {
		start, end time.Time
		err        error
	}
	var mu sync.Mutex
	results := make([][]result, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-k%d", w, n%20)
				start := time.Now()
				err := s.Set(ctx, state.SetRequest{Key: key, Value: []byte("v")})
				if err == nil {
					_, err = s.Get(ctx, key)
				}
				mu.Lock()
				results[w] = append(results[w], result{start, time.Now(), err})
				mu.Unlock()
				if err != nil {
					// A client retrying at its own pace.
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	// okSince says whether every worker has had a success that started
	// after at.
	okSince := func(at time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range results {
			found := false
			for _, r := range rs {
				if r.err == nil && r.start.After(at) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	waitUntil(t, "every worker's calls succeed", func() bool { return okSince(time.Time{}) })
	stopped := time.Now()
	srv.Stop()
	down := time.Now()
	// Down until every worker has failed 25 calls.
	waitUntil(t, "every worker's calls fail", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range results {
			n := 0
			for _, r := range rs {
				if r.err != nil && r.start.After(down) {
					n++
				}
			}
			if n < 25 {
				return false
			}
		}
		return true
	})
	restarted := time.Now()
	srv.Restart(t)
	up := time.Now()
	waitUntil(t, "every worker's calls succeed after the restart", func() bool { return okSince(up) })
	recovered := time.Since(up)
	close(stop)
	wg.Wait()

	failed, slowest := 0, time.Duration(0)
	where := fmt.Sprintf("postgresql at 127.0.0.1:%d", srv.Port)
	for _, rs := range results {
		for _, r := range rs {
			if r.err == nil {
				continue
			}
			failed++
			if d := r.end.Sub(r.start); d > slowest {
				slowest = d
			}
			// Down the whole call: it names the database and why.
			if r.start.After(down) && r.end.Before(restarted) {
				msg := r.err.Error()
				if !strings.Contains(msg, where) || !strings.Contains(msg, "unreachable") && !strings.Contains(msg, "connection to the database was lost") {
					t.Errorf("error with the database down: %v; want one naming %s and that it is unreachable", r.err, where)
				}
			}
		}
	}
	t.Logf("database stopped for %s under %d workers: %d calls failed, the slowest in %s; every worker's calls succeeded again %s after the restart",
		restarted.Sub(stopped).Round(time.Millisecond), workers, failed, slowest.Round(time.Millisecond), recovered.Round(time.Millisecond))
	// Fast: a refused connection is not a 5s timeout (a call in flight
	// when the server stopped may end with it).
	if slowest > 30*time.Second {
		t.Errorf("a call took %s with the database down (timeout 5s)", slowest)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 60s waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The password of the connection string is in no error: not when the
// string cannot be read, whatever its shape, nor when the server refuses
// it, nor when the database is down or does not exist.
func TestPasswordNeverShown(t *testing.T) {
	const pw = "Secr3t-pw_x"
	for _, cs := range []string{
		"postgres://u:" + pw + "@h:notaport/d",
		"postgres://u:" + pw + "@h:5432/d?sslmode=sometimes",
		"postgresql://u:" + pw + "@h:5432/d?connect_timeout=soon",
		"host=h port=abc user=u password=" + pw,
		"host=h user=u password=" + pw + " sslmode=sometimes",
		"host=h user=u password='" + pw,
		"host=h user=u password=" + pw + " connect_timeout=x",
		"user=u password=" + pw + " host",
	} {
		_, err := ParseMetadata(map[string]string{"connectionString": cs})
		if err == nil {
			t.Errorf("%q read", cs)
			continue
		}
		if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "metadata connectionString") {
			t.Errorf("%q: %v; want an error naming connectionString without the password", cs, err)
		}
	}
	srv := pgserver.Start(t)
	cs := srv.PasswordUser(t, pw)
	ctx := context.Background()
	right := newStore(t, cs+" password="+pw, map[string]string{"timeout": "5s"})
	if err := right.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	check := func(what string, s *Store, want ...string) {
		t.Helper()
		err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")})
		if err == nil || !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(err.Error(), w) }) || strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "Secr3t") {
			t.Errorf("%s: %v; want an error saying one of %q, without the password", what, err, want)
		}
		t.Logf("%s: %v", what, err)
	}
	// The wrong password's text is in the string too.
	refused := "refused the connection (check the user, password and database of metadata connectionString)"
	check("a wrong password", newStore(t, cs+" password="+pw+"-wrong", nil), refused)
	check("a missing database", newStore(t, strings.Replace(cs, "dbname=", "dbname=no_", 1)+" password="+pw, nil), refused)
	url := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", field(cs, "user"), pw+"-wrong", srv.Port, field(cs, "dbname"))
	check("a wrong password in a URL", newStore(t, url, nil), refused)
	srv.Stop()
	check("the database down", right, "unreachable", "connection to the database was lost")
	check("the database down, again", right, "unreachable", "connection to the database was lost")
}

// field is the value of name in a key=value connection string.
func field(cs, name string) string {
	for f := range strings.FieldsSeq(cs) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}
