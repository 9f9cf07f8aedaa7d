package evorec

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// FieldViolations returns the google.rpc.BadRequest field violations that a failed call's
// status carries (each names a request field, such as "user_id" or "events[3].event_time",
// and says what is wrong with it); nil when err has none.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return nil
	}
	var violations []*errdetails.BadRequest_FieldViolation
	for _, detail := range withStatus.GRPCStatus().Details() {
		if badRequest, ok := detail.(*errdetails.BadRequest); ok {
			violations = append(violations, badRequest.GetFieldViolations()...)
		}
	}
	return violations
}
