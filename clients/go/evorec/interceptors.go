package evorec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDKey is the metadata key that carries the request id across services.
const RequestIDKey = "x-request-id"

// WithRequestID makes the calls made with ctx carry id as their request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, RequestIDKey, id)
}

func withDefaults(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(RequestIDKey)) == 0 {
		ctx = WithRequestID(ctx, newRequestID())
	}
	if _, ok := ctx.Deadline(); ok || timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

func newRequestID() string {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		panic(err)
	}
	return hex.EncodeToString(id)
}

func unaryDefaults(timeout time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, request, reply interface{}, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, cancel := withDefaults(ctx, timeout)
		defer cancel()
		return invoker(ctx, method, request, reply, conn, opts...)
	}
}

func streamDefaults(timeout time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, conn *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, cancel := withDefaults(ctx, timeout)
		stream, err := streamer(ctx, desc, conn, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		return &cancelAtEnd{ClientStream: stream, serverStreams: desc.ServerStreams, cancel: cancel}, nil
	}
}

// cancelAtEnd releases a stream's deadline timer once the stream has ended.
type cancelAtEnd struct {
	grpc.ClientStream
	serverStreams bool
	cancel        context.CancelFunc
}

func (s *cancelAtEnd) RecvMsg(m interface{}) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || !s.serverStreams {
		s.cancel()
	}
	return err
}
