package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/pkg/state"
)

// StateRoutes is the state API. Request bodies are read up to maxBody bytes.
func StateRoutes(svc *state.Service, maxBody int64) []Route {
	h := &stateHandler{svc: svc, maxBody: maxBody}
	const store, item = "/v1.0/state/{storeName}", "/v1.0/state/{storeName}/{key}"
	return []Route{
		{Method: "GET", Pattern: item, Name: "GetState", Handler: h.get},
		{Method: "POST", Pattern: store, Name: "SaveState", Handler: h.save},
		{Method: "PUT", Pattern: store, Name: "SaveState", Handler: h.save},
		{Method: "DELETE", Pattern: item, Name: "DeleteState", Handler: h.delete},
		{Method: "POST", Pattern: store + "/bulk", Name: "GetBulkState", Handler: h.bulk},
		{Method: "PUT", Pattern: store + "/bulk", Name: "GetBulkState", Handler: h.bulk},
		{Method: "POST", Pattern: store + "/transaction", Name: "ExecuteStateTransaction", Handler: h.transaction},
		{Method: "PUT", Pattern: store + "/transaction", Name: "ExecuteStateTransaction", Handler: h.transaction},
	}
}

type stateHandler struct {
	svc     *state.Service
	maxBody int64
}

// saveItem is one item of a save request, and the request of a transaction
// operation.
type saveItem struct {
	Key      string            `json:"key"`
	Value    json.RawMessage   `json:"value"`
	ETag     *string           `json:"etag"`
	Metadata map[string]string `json:"metadata"`
	Options  *saveOptions      `json:"options"`
}

type saveOptions struct {
	Concurrency string `json:"concurrency"`
	Consistency string `json:"consistency"`
}

func (h *stateHandler) get(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, err := state.ParseConsistency(q.Get("consistency")); err != nil {
		apierr.Write(w, apierr.State(apierr.CodeStateGet, err))
		return
	}
	it, err := h.svc.Get(r.Context(), r.PathValue("storeName"), r.PathValue("key"))
	if err != nil {
		apierr.Write(w, apierr.State(apierr.CodeStateGet, err))
		return
	}
	if it == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("ETag", it.ETag)
	w.Header().Set("Content-Type", contentType(it.Value))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(it.Value)
}

func (h *stateHandler) save(w http.ResponseWriter, r *http.Request) {
	body, ok := h.jsonBody(w, r)
	if !ok {
		return
	}
	items, ok := decodeSaveItems(body)
	if !ok && !unmarshal(w, body, &items) {
		return
	}
	reqs := make([]state.SetRequest, len(items))
	for i, it := range items {
		var err error
		if reqs[i], err = it.setRequest(); err != nil {
			apierr.Write(w, apierr.Malformed("item %d: %v", i, err))
			return
		}
	}
	if err := h.svc.Save(r.Context(), r.PathValue("storeName"), reqs); err != nil {
		apierr.Write(w, apierr.State(apierr.CodeStateSave, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *stateHandler) delete(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	strong, err := state.ParseConsistency(q.Get("consistency"))
	if err == nil {
		_, err = state.ParseConcurrency(q.Get("concurrency"))
	}
	if err != nil {
		apierr.Write(w, apierr.State(apierr.CodeStateDelete, err))
		return
	}
	req := state.DeleteRequest{Key: r.PathValue("key"), Strong: strong}
	if vv, ok := r.Header["If-Match"]; ok && len(vv) > 0 {
		etag := strings.Trim(vv[0], `"`)
		req.ETag = &etag
	}
	if err := h.svc.Delete(r.Context(), r.PathValue("storeName"), req); err != nil {
		apierr.Write(w, apierr.State(apierr.CodeStateDelete, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type bulkItem struct {
	Key   string          `json:"key"`
	Data  json.RawMessage `json:"data,omitempty"`
	ETag  string          `json:"etag,omitempty"`
	Error string          `json:"error,omitempty"`
}

// bulk answers a bulk read as a JSON array written item by item, as the
// store returns them: the answer's size costs the sidecar no memory. An
// error about the request comes before the first item and is an ordinary
// error answer; once the answer has begun, a failure (the client gone, the
// server stopping) breaks the connection, so that a cut-short array is
// never taken for a whole one.
func (h *stateHandler) bulk(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Keys        []string          `json:"keys"`
		Parallelism int               `json:"parallelism"`
		Metadata    map[string]string `json:"metadata"`
	}
	if !h.decode(w, r, &req) {
		return
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	started := false
	err := h.svc.BulkGet(r.Context(), r.PathValue("storeName"), req.Keys, req.Parallelism, func(it state.BulkItem) error {
		out := bulkItem{Key: it.Key, ETag: it.ETag}
		if it.Err != nil {
			out.Error = it.Err.Error()
		} else if it.Value != nil {
			out.Data = jsonValue(it.Value)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		sep := byte(',')
		if !started {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			started, sep = true, '['
		}
		_ = bw.WriteByte(sep)
		_, err = bw.Write(b)
		return err
	})
	switch {
	case err != nil && !started:
		apierr.Write(w, apierr.State(apierr.CodeStateBulkGet, err))
	case err != nil:
		panic(http.ErrAbortHandler)
	case !started:
		writeJSON(w, http.StatusOK, []bulkItem{})
	default:
		_ = bw.WriteByte(']')
		_ = bw.Flush()
	}
}

func (h *stateHandler) transaction(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Operations []struct {
			Operation string   `json:"operation"`
			Request   saveItem `json:"request"`
		} `json:"operations"`
		Metadata map[string]string `json:"metadata"`
	}
	if !h.decode(w, r, &req) {
		return
	}
	ops := make([]state.Op, len(req.Operations))
	for i, op := range req.Operations {
		switch op.Operation {
		case state.OpUpsert:
			set, err := op.Request.setRequest()
			if err != nil {
				apierr.Write(w, apierr.Malformed("operation %d: %v", i, err))
				return
			}
			ops[i].Set = &set
		case state.OpDelete:
			ops[i].Delete = &state.DeleteRequest{Key: op.Request.Key, ETag: op.Request.ETag}
		default:
			apierr.Write(w, apierr.State(apierr.CodeStateTransaction, fmt.Errorf("operation %d: %w", i, state.UnsupportedOperation(op.Operation))))
			return
		}
	}
	if err := h.svc.Transact(r.Context(), r.PathValue("storeName"), ops); err != nil {
		apierr.Write(w, apierr.State(apierr.CodeStateTransaction, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bodyReadTimeout bounds how long reading a buffered request body may take.
const bodyReadTimeout = 30 * time.Second

// readBody reads a buffered request body of at most maxBody bytes (more is
// a 413); on failure it writes the error and returns false.
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, bool) {
	// A buffered body must arrive in time: a client trickling it cannot
	// hold a connection and a goroutine for ever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := api.ReadAll(http.MaxBytesReader(w, r.Body, maxBody), r.ContentLength)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		apierr.Write(w, apierr.BodyTooLarge(maxBody))
		return nil, false
	case err != nil:
		apierr.Write(w, apierr.Malformed("reading the request body: %v", err))
		return nil, false
	}
	return body, true
}

// decode reads a JSON body of at most maxBody bytes into v; on failure it
// writes the error and returns false.
func (h *stateHandler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := h.jsonBody(w, r)
	return ok && unmarshal(w, body, v)
}

// jsonBody reads a body of at most maxBody bytes that is to be JSON: not
// empty, and valid UTF-8; on failure it writes the error and returns false.
func (h *stateHandler) jsonBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, ok := readBody(w, r, h.maxBody)
	if !ok {
		return nil, false
	}
	if len(body) == 0 {
		apierr.Write(w, apierr.Malformed("the request body is empty; it must be JSON"))
		return nil, false
	}
	if !utf8.Valid(body) {
		apierr.Write(w, apierr.Malformed("the request body is not valid UTF-8, which JSON must be"))
		return nil, false
	}
	return body, true
}

// unmarshal decodes body into v; on failure it writes the error and
// returns false.
func unmarshal(w http.ResponseWriter, body []byte, v any) bool {
	if err := json.Unmarshal(body, v); err != nil {
		apierr.Write(w, apierr.Malformed("the request body is not valid JSON of the expected shape: %v", err))
		return false
	}
	return true
}

// setRequest validates a save item.
func (it saveItem) setRequest() (state.SetRequest, error) {
	req := state.SetRequest{Key: it.Key, Value: it.Value, ETag: it.ETag}
	if it.Key == "" {
		return req, errors.New("key is missing")
	}
	if it.Value == nil {
		return req, fmt.Errorf("key %q: value is missing (send null to store null)", it.Key)
	}
	var err error
	if it.Options != nil {
		if req.FirstWrite, err = state.ParseConcurrency(it.Options.Concurrency); err != nil {
			return req, err
		}
		if req.Strong, err = state.ParseConsistency(it.Options.Consistency); err != nil {
			return req, err
		}
	}
	if req.TTL, err = state.ParseTTL(it.Key, it.Metadata); err != nil {
		return req, err
	}
	return req, nil
}

// jsonValue returns a stored value as JSON: itself when it is JSON, else a
// JSON string of its bytes.
func jsonValue(b []byte) json.RawMessage {
	if validJSON(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

func contentType(b []byte) string {
	if validJSON(b) {
		return "application/json"
	}
	return "application/octet-stream"
}
