package grpcapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/pkg/state"
)

// GetState reads one key. A missing key is an empty answer, not an error.
func (s *Server) GetState(ctx context.Context, in *runtimev1pb.GetStateRequest) (*runtimev1pb.GetStateResponse, error) {
	if _, err := consistency(in.GetConsistency()); err != nil {
		return nil, apierr.State(apierr.CodeStateGet, err)
	}
	it, err := s.state.Get(ctx, in.GetStoreName(), in.GetKey())
	if err != nil {
		return nil, apierr.State(apierr.CodeStateGet, err)
	}
	if it == nil {
		return &runtimev1pb.GetStateResponse{}, nil
	}
	return &runtimev1pb.GetStateResponse{Data: it.Value, Etag: it.ETag}, nil
}

// GetBulkState reads many keys; a key that fails has its error in its item.
// The answer is one message, held whole until it is sent, so it may not be
// larger than --max-body-size (as InvokeService's answers); the HTTP API
// streams its answer instead.
func (s *Server) GetBulkState(ctx context.Context, in *runtimev1pb.GetBulkStateRequest) (*runtimev1pb.GetBulkStateResponse, error) {
	out := &runtimev1pb.GetBulkStateResponse{}
	size := 0
	err := s.state.BulkGet(ctx, in.GetStoreName(), in.GetKeys(), int(in.GetParallelism()), func(it state.BulkItem) error {
		b := &runtimev1pb.BulkStateItem{Key: it.Key, Data: it.Value, Etag: it.ETag}
		if it.Err != nil {
			b.Error = it.Err.Error()
		}
		if size += proto.Size(b); s.maxBody > 0 && int64(size) > s.maxBody {
			return apierr.New(apierr.CodeStateBulkGet, http.StatusInternalServerError, codes.ResourceExhausted,
				"the answer to GetBulkState is over %d bytes by item %d, and it is held whole: ask for fewer keys, raise --max-body-size, or use the HTTP API, which streams it", s.maxBody, len(out.Items))
		}
		out.Items = append(out.Items, b)
		return nil
	})
	if err != nil {
		return nil, apierr.State(apierr.CodeStateBulkGet, err)
	}
	return out, nil
}

// SaveState saves items in order.
func (s *Server) SaveState(ctx context.Context, in *runtimev1pb.SaveStateRequest) (*emptypb.Empty, error) {
	reqs := make([]state.SetRequest, len(in.GetStates()))
	for i, it := range in.GetStates() {
		var err error
		if reqs[i], err = setRequest(it); err != nil {
			return nil, apierr.State(apierr.CodeStateSave, fmt.Errorf("states[%d]: %w", i, err))
		}
	}
	if err := s.state.Save(ctx, in.GetStoreName(), reqs); err != nil {
		return nil, apierr.State(apierr.CodeStateSave, err)
	}
	return &emptypb.Empty{}, nil
}

// DeleteState deletes one key; an ETag makes it conditional.
func (s *Server) DeleteState(ctx context.Context, in *runtimev1pb.DeleteStateRequest) (*emptypb.Empty, error) {
	req, err := deleteRequest(in.GetKey(), in.GetEtag(), in.GetOptions())
	if err == nil {
		err = s.state.Delete(ctx, in.GetStoreName(), req)
	}
	if err != nil {
		return nil, apierr.State(apierr.CodeStateDelete, err)
	}
	return &emptypb.Empty{}, nil
}

// DeleteBulkState deletes keys in order; the first failure stops it.
func (s *Server) DeleteBulkState(ctx context.Context, in *runtimev1pb.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	reqs := make([]state.DeleteRequest, len(in.GetStates()))
	for i, it := range in.GetStates() {
		var err error
		if reqs[i], err = deleteRequest(it.GetKey(), it.GetEtag(), it.GetOptions()); err != nil {
			return nil, apierr.State(apierr.CodeStateDelete, fmt.Errorf("states[%d]: %w", i, err))
		}
	}
	for _, req := range reqs {
		if err := s.state.Delete(ctx, in.GetStoreName(), req); err != nil {
			return nil, apierr.State(apierr.CodeStateDelete, err)
		}
	}
	return &emptypb.Empty{}, nil
}

// ExecuteStateTransaction applies upserts and deletes atomically.
func (s *Server) ExecuteStateTransaction(ctx context.Context, in *runtimev1pb.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	ops := make([]state.Op, len(in.GetOperations()))
	for i, op := range in.GetOperations() {
		r := op.GetRequest()
		if r == nil {
			return nil, apierr.Malformed("operations[%d]: request is missing", i)
		}
		switch op.GetOperationType() {
		case state.OpUpsert:
			set, err := setRequest(r)
			if err != nil {
				return nil, apierr.State(apierr.CodeStateTransaction, fmt.Errorf("operations[%d]: %w", i, err))
			}
			ops[i].Set = &set
		case state.OpDelete:
			del, err := deleteRequest(r.GetKey(), r.GetEtag(), r.GetOptions())
			if err != nil {
				return nil, apierr.State(apierr.CodeStateTransaction, fmt.Errorf("operations[%d]: %w", i, err))
			}
			ops[i].Delete = &del
		default:
			return nil, apierr.State(apierr.CodeStateTransaction, fmt.Errorf("operations[%d]: %w", i, state.UnsupportedOperation(op.GetOperationType())))
		}
	}
	if err := s.state.Transact(ctx, in.GetStoreName(), ops); err != nil {
		return nil, apierr.State(apierr.CodeStateTransaction, err)
	}
	return &emptypb.Empty{}, nil
}

// setRequest validates a state item to save.
func setRequest(it *commonv1pb.StateItem) (state.SetRequest, error) {
	req := state.SetRequest{Key: it.GetKey(), Value: it.GetValue()}
	if req.Value == nil {
		req.Value = []byte{}
	}
	if e := it.GetEtag(); e != nil {
		v := e.GetValue()
		req.ETag = &v
	}
	var err error
	if req.FirstWrite, req.Strong, err = options(it.GetOptions()); err != nil {
		return req, err
	}
	if req.TTL, err = state.ParseTTL(it.GetKey(), it.GetMetadata()); err != nil {
		return req, err
	}
	return req, nil
}

func deleteRequest(key string, etag *commonv1pb.Etag, o *commonv1pb.StateOptions) (state.DeleteRequest, error) {
	req := state.DeleteRequest{Key: key}
	if etag != nil {
		v := strings.Trim(etag.GetValue(), `"`)
		req.ETag = &v
	}
	var err error
	_, req.Strong, err = options(o)
	return req, err
}

// options reads StateOptions through the same parsers as the HTTP API.
func options(o *commonv1pb.StateOptions) (firstWrite, strong bool, err error) {
	if o == nil {
		return false, false, nil
	}
	var conc string
	switch c := o.GetConcurrency(); c {
	case commonv1pb.StateOptions_CONCURRENCY_UNSPECIFIED:
	case commonv1pb.StateOptions_CONCURRENCY_FIRST_WRITE:
		conc = state.FirstWrite
	case commonv1pb.StateOptions_CONCURRENCY_LAST_WRITE:
		conc = state.LastWrite
	default:
		conc = c.String()
	}
	if firstWrite, err = state.ParseConcurrency(conc); err != nil {
		return false, false, err
	}
	strong, err = consistency(o.GetConsistency())
	return firstWrite, strong, err
}

func consistency(c commonv1pb.StateOptions_StateConsistency) (bool, error) {
	var s string
	switch c {
	case commonv1pb.StateOptions_CONSISTENCY_UNSPECIFIED:
	case commonv1pb.StateOptions_CONSISTENCY_EVENTUAL:
		s = state.Eventual
	case commonv1pb.StateOptions_CONSISTENCY_STRONG:
		s = state.Strong
	default:
		s = c.String()
	}
	return state.ParseConsistency(s)
}
