package evorec

import (
	"encoding/json"
	"strconv"
	"time"

	evorecv1 "github.com/evorec/evorec/clients/go/evorec/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// RetryPolicy says how often and how fast gRPC retries an idempotent call on UNAVAILABLE.
type RetryPolicy struct {
	MaxAttempts       int
	InitialBackoff    time.Duration
	MaxBackoff        time.Duration
	BackoffMultiplier float64
}

// DefaultRetryPolicy is the one the Python clients use (evorec.platform.clients).
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:       4,
	InitialBackoff:    50 * time.Millisecond,
	MaxBackoff:        time.Second,
	BackoffMultiplier: 2,
}

var contractFiles = []protoreflect.FileDescriptor{
	evorecv1.File_evorec_v1_preprocess_proto,
	evorecv1.File_evorec_v1_embedding_proto,
	evorecv1.File_evorec_v1_interest_proto,
	evorecv1.File_evorec_v1_ranking_proto,
}

type methodName struct {
	Service string `json:"service"`
	Method  string `json:"method"`
}

// IdempotentMethods lists the unary and server-streaming RPCs of the contracts whose
// idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS: the ones safe to retry.
func IdempotentMethods() []string {
	var names []string
	for _, m := range idempotentMethods() {
		names = append(names, "/"+m.Service+"/"+m.Method)
	}
	return names
}

func idempotentMethods() []methodName {
	var found []methodName
	for _, file := range contractFiles {
		services := file.Services()
		for i := 0; i < services.Len(); i++ {
			methods := services.Get(i).Methods()
			for j := 0; j < methods.Len(); j++ {
				method := methods.Get(j)
				options, _ := method.Options().(*descriptorpb.MethodOptions)
				level := options.GetIdempotencyLevel()
				if method.IsStreamingClient() || level == descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN {
					continue
				}
				found = append(found, methodName{string(services.Get(i).FullName()), string(method.Name())})
			}
		}
	}
	return found
}

// serviceConfig is gRPC's service config (JSON) with policy on the idempotent RPCs.
func serviceConfig(policy RetryPolicy) string {
	if policy.MaxAttempts < 2 {
		return `{"methodConfig": []}`
	}
	config := map[string]interface{}{
		"methodConfig": []interface{}{map[string]interface{}{
			"name": idempotentMethods(),
			"retryPolicy": map[string]interface{}{
				"maxAttempts":          policy.MaxAttempts,
				"initialBackoff":       seconds(policy.InitialBackoff),
				"maxBackoff":           seconds(policy.MaxBackoff),
				"backoffMultiplier":    policy.BackoffMultiplier,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}},
	}
	encoded, err := json.Marshal(config)
	if err != nil {
		panic(err)
	}
	return string(encoded)
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
