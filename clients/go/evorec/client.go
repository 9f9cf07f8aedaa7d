package evorec

import (
	"time"

	evorecv1 "github.com/evorec/evorec/clients/go/evorec/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultTimeout is the deadline of a call whose context has none.
const DefaultTimeout = 5 * time.Second

// Client holds one connection and the stubs of every evorec service on it; each service
// answers at its own address, so dial one Client per address you call (or one for a proxy
// that routes them all).
type Client struct {
	conn       *grpc.ClientConn
	Preprocess evorecv1.PreprocessServiceClient
	Embedding  evorecv1.EmbeddingServiceClient
	Interest   evorecv1.InterestServiceClient
	Ranking    evorecv1.RankingServiceClient
	Health     healthpb.HealthClient
}

type settings struct {
	timeout     time.Duration
	retry       RetryPolicy
	credentials credentials.TransportCredentials
	dialOptions []grpc.DialOption
}

// Option changes how Dial sets up a Client.
type Option func(*settings)

// WithTimeout sets the deadline of calls whose context has none (default DefaultTimeout).
func WithTimeout(timeout time.Duration) Option {
	return func(s *settings) { s.timeout = timeout }
}

// WithRetryPolicy replaces DefaultRetryPolicy; MaxAttempts below 2 turns retries off.
func WithRetryPolicy(policy RetryPolicy) Option {
	return func(s *settings) { s.retry = policy }
}

// WithTransportCredentials secures the connection (TLS); without it the connection is
// plaintext, as on loopback.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(s *settings) { s.credentials = creds }
}

// WithDialOptions adds gRPC dial options (keepalive, more interceptors, ...).
func WithDialOptions(options ...grpc.DialOption) Option {
	return func(s *settings) { s.dialOptions = append(s.dialOptions, options...) }
}

// Dial connects to the evorec service at target ("host:port"). The connection is made in the
// background; calls wait for it within their deadline.
func Dial(target string, options ...Option) (*Client, error) {
	s := settings{timeout: DefaultTimeout, retry: DefaultRetryPolicy}
	for _, option := range options {
		option(&s)
	}
	dialOptions := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(serviceConfig(s.retry)),
		grpc.WithChainUnaryInterceptor(unaryDefaults(s.timeout)),
		grpc.WithChainStreamInterceptor(streamDefaults(s.timeout)),
	}
	if s.credentials != nil {
		dialOptions = append(dialOptions, grpc.WithTransportCredentials(s.credentials))
	} else {
		dialOptions = append(dialOptions, grpc.WithInsecure())
	}
	conn, err := grpc.Dial(target, append(dialOptions, s.dialOptions...)...)
	if err != nil {
		return nil, err
	}
	return &Client{
		conn:       conn,
		Preprocess: evorecv1.NewPreprocessServiceClient(conn),
		Embedding:  evorecv1.NewEmbeddingServiceClient(conn),
		Interest:   evorecv1.NewInterestServiceClient(conn),
		Ranking:    evorecv1.NewRankingServiceClient(conn),
		Health:     healthpb.NewHealthClient(conn),
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	return c.conn.Close()
}
