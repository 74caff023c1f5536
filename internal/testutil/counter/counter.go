// Package counter is a state API client for tests: it adds one to a counter
// with read-ETag-write retries, the way an app keeps a value consistent
// under concurrent writers. A lost update shows as a final count too low.
package counter

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Concurrently has clients writers each Increment key each times, all at
// once, and returns the first error any of them met (each stops at its
// first error).
func Concurrently(storeURL, key string, clients, each int) error {
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				if err := Increment(storeURL, key); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// maxAttempts bounds the retries of one increment.
const maxAttempts = 1000

// Increment adds one to the integer at key in the store at storeURL (for
// example http://127.0.0.1:3500/v1.0/state/statestore). It reads the value
// and its ETag, saves value+1 under that ETag (first-write when the key is
// absent) and starts again when the save answers 409.
func Increment(storeURL, key string) error {
	for range maxAttempts {
		n, etag, err := read(storeURL + "/" + key)
		if err != nil {
			return err
		}
		item := fmt.Sprintf(`[{"key":%q,"value":%d,"options":{"concurrency":"first-write"}`, key, n+1)
		if etag != "" {
			item += `,"etag":` + strconv.Quote(etag)
		}
		resp, err := http.Post(storeURL, "application/json", strings.NewReader(item+"}]"))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusNoContent:
			return nil
		case http.StatusConflict:
			continue
		default:
			return fmt.Errorf("save: %d %s", resp.StatusCode, body)
		}
	}
	return fmt.Errorf("increment of %q did not succeed after %d attempts", key, maxAttempts)
}

// read returns the counter at url and its ETag; a missing key is 0.
func read(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusNoContent:
		return 0, "", nil
	case http.StatusOK:
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return 0, "", fmt.Errorf("counter holds %q, not an integer", body)
		}
		return n, resp.Header.Get("ETag"), nil
	}
	return 0, "", fmt.Errorf("get: %d %s", resp.StatusCode, body)
}
