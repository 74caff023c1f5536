package grpcapi

import (
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tandem-run/tandem/internal/apierr"
)

// frame is one message of a proxied call, kept as the bytes it came as.
type frame struct{ b []byte }

// request is a request message of one of the sidecar's own services on its
// way in (see bounded): the codec decodes into m and keeps a decoding
// failure in err, an InvalidArgument naming the message type and the field,
// which the call then answers. (Were the codec to fail, gRPC would answer
// Internal, as if the sidecar were at fault.)
type request struct {
	m   any
	err error
}

// codec is the API port's codec: proxied calls pass frames through as raw
// bytes; every other message is protobuf, by gRPC's own codec.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch v := v.(type) {
	case *frame:
		v.b = data.Materialize()
		return nil
	case *request:
		if err := encoding.GetCodecV2("proto").Unmarshal(data, v.m); err != nil {
			v.err = malformed(v.m, data.Materialize(), err)
		}
		return nil
	}
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

// malformed is the error for b, which is not a valid message of m's type:
// InvalidArgument naming the type and, where one is at fault, the field.
func malformed(m any, b []byte, err error) *apierr.Error {
	pm, ok := m.(proto.Message)
	if !ok {
		return apierr.Malformed("the request is not valid: %v", err)
	}
	md := pm.ProtoReflect().Descriptor()
	path, badUTF8, found := badField(md, b, 0)
	var e *apierr.Error
	switch {
	case len(path) > 0 && badUTF8:
		e = apierr.Malformed("the request is not a valid %s: field %s is not valid UTF-8, which proto3 strings must be", md.FullName(), path)
	case len(path) > 0:
		e = apierr.Malformed("the request is not a valid %s: field %s is not valid protobuf wire format", md.FullName(), path)
	case found:
		e = apierr.Malformed("the request is not a valid %s: it is not valid protobuf wire format", md.FullName())
	default:
		e = apierr.Malformed("the request is not a valid %s: %v", md.FullName(), err)
	}
	e.Err = err
	return e
}

// maxFieldDepth bounds how deep badField looks into nested messages.
const maxFieldDepth = 32

// badField finds where b, the wire form of a message of type md, goes
// wrong: the path of the field at fault (field names joined by dots; a map
// entry's as <map>.key or <map>.value), and whether it is a string that is
// not UTF-8. found is false when b holds nothing this walk sees as wrong;
// it is true with an empty path when b is wrong outside any field (a tag
// that cannot be read). Every proto3 string must be UTF-8, as the types of
// the Dapr API and gRPC's health service are.
func badField(md protoreflect.MessageDescriptor, b []byte, depth int) (path string, badUTF8, found bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false, true
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			if fd == nil {
				return "", false, true
			}
			return string(fd.Name()), false, true
		}
		v := b[:n]
		b = b[n:]
		if fd == nil || typ != protowire.BytesType {
			continue
		}
		v, _ = protowire.ConsumeBytes(v)
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return string(fd.Name()), true, true
			}
		case protoreflect.MessageKind:
			if depth >= maxFieldDepth {
				continue
			}
			if p, u, bad := badField(fd.Message(), v, depth+1); bad {
				if p == "" {
					return string(fd.Name()), false, true
				}
				return string(fd.Name()) + "." + p, u, true
			}
		}
	}
	return "", false, false
}
