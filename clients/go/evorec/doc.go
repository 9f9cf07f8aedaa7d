// Package evorec calls the evorec services (text preprocessing, embeddings, interest state
// and ranking) over gRPC with the stubs of package evorecv1, set up as the contracts expect:
//
//   - every call has a deadline: the context's, else the client's default (5 s);
//   - the RPCs that the contracts mark idempotent (idempotency_level IDEMPOTENT or
//     NO_SIDE_EFFECTS) are retried by gRPC on UNAVAILABLE, with exponential backoff, within
//     the deadline; no other RPC is retried;
//   - every call carries an x-request-id (the context's, see WithRequestID, else a new one),
//     which the services log and pass on;
//   - FieldViolations reads the google.rpc.BadRequest field violations of an
//     INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) error.
//
// Example:
//
//	client, err := evorec.Dial("127.0.0.1:50054")
//	if err != nil { ... }
//	defer client.Close()
//	response, err := client.Ranking.Recommend(ctx, &evorecv1.RecommendRequest{
//		Subject: &evorecv1.RecommendRequest_UserId{UserId: "alice"},
//	})
//	for _, v := range evorec.FieldViolations(err) {
//		fmt.Println(v.GetField(), v.GetDescription())
//	}
//
// grpc-go releases before 1.40 retry only when the environment variable GRPC_GO_RETRY is
// "on" in the process; later ones always do.
package evorec
