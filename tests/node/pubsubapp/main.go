// Command pubsubapp is the app of tests/node's pub/sub tests. It serves on
// APP_PORT:
//
//   - POST /publish/<topic>: publishes the request's body to <topic> of
//     pub/sub -pubsub through its own sidecar (DAPR_HTTP_PORT), and answers
//     with the sidecar's status and body, so that a test outside the pod
//     publishes through it;
//   - with -topic, a subscription (GET /dapr/subscribe) to that topic,
//     route /events: each event's data, a JSON object with an "id", is
//     reported to the test's collector (POST <-collector>/delivered with
//     {"id":...,"pod":...}) before the event is acknowledged (200
//     SUCCESS); when the collector cannot be told, the answer is RETRY,
//     so a delivery the sidecar acknowledges is one the collector saw.
//     GET /dapr/subscribe is reported too (POST <-collector>/subscribed),
//     so that the test knows which pods' sidecars have subscribed;
//     -metadata k=v,k=v sets the subscription's metadata (for example
//     deliverToAllReplicas=true,replicaTimeout=15s).
//
// POD_NAME names the pod in the reports. On SIGTERM it stops taking
// requests and finishes those under way.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	pubsub := flag.String("pubsub", "pubsub", "the pub/sub component to publish to and subscribe with")
	topic := flag.String("topic", "", "the topic to subscribe to (none: no subscription)")
	collector := flag.String("collector", "", "base URL of the test's collector, told of every delivery")
	metadata := flag.String("metadata", "", "the subscription's metadata, k=v,k=v")
	flag.Parse()
	md := map[string]string{}
	for kv := range strings.SplitSeq(*metadata, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(os.Stderr, "pubsubapp: -metadata %q: want k=v,k=v\n", *metadata)
			os.Exit(2)
		}
		md[k] = v
	}
	port, sidecar := os.Getenv("APP_PORT"), os.Getenv("DAPR_HTTP_PORT")
	if port == "" || sidecar == "" || *topic != "" && *collector == "" {
		fmt.Fprintln(os.Stderr, "pubsubapp: APP_PORT and DAPR_HTTP_PORT are required, and -collector with -topic")
		os.Exit(2)
	}
	pod := os.Getenv("POD_NAME")
	client := &http.Client{Timeout: 10 * time.Second}
	tell := func(what string, v any) error {
		b, _ := json.Marshal(v)
		resp, err := client.Post(*collector+"/"+what, "application/json", bytes.NewReader(b))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("collector: %s", resp.Status)
		}
		return nil
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish/{topic...}", func(w http.ResponseWriter, r *http.Request) {
		url := "http://127.0.0.1:" + sidecar + "/v1.0/publish/" + *pubsub + "/" + r.PathValue("topic")
		resp, err := client.Post(url, r.Header.Get("Content-Type"), r.Body)
		if err != nil {
			http.Error(w, "publishing: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		if *topic == "" {
			w.Write([]byte("[]"))
			return
		}
		if err := tell("subscribed", map[string]string{"pod": pod}); err != nil {
			log.Printf("telling the collector of the subscription: %v", err)
		}
		json.NewEncoder(w).Encode([]map[string]any{{"pubsubname": *pubsub, "topic": *topic, "route": "/events", "metadata": md}})
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		var event struct {
			Data struct {
				ID json.Number `json:"id"`
			} `json:"data"`
		}
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&event); err != nil || event.Data.ID == "" {
			log.Printf("an event without data.id (%v): dropped", err)
			w.Write([]byte(`{"status":"DROP"}`))
			return
		}
		if err := tell("delivered", map[string]string{"id": event.Data.ID.String(), "pod": pod}); err != nil {
			log.Printf("event %s: telling the collector: %v; RETRY", event.Data.ID, err)
			w.Write([]byte(`{"status":"RETRY"}`))
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})

	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("pubsubapp on :%s, pod %s, subscribing to %q", port, pod, *topic)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
}
