// The rich error details of a failed call (gRPC's google.rpc.Status model).
import { Metadata, ServiceError, status } from "@grpc/grpc-js";
import { BadRequest, BadRequest_FieldViolation } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest";

/** Whether `error` is the error of a failed gRPC call. */
export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && "code" in error && (error as ServiceError).metadata instanceof Metadata;
}

/** The name of a failed call's status code, such as "INVALID_ARGUMENT". */
export function codeName(error: ServiceError): string {
  return status[error.code];
}

/** The google.rpc.Status a failed call carries in its trailers, if any. */
export function statusDetails(error: unknown): Status | undefined {
  if (!isServiceError(error)) {
    return undefined;
  }
  const [raw] = error.metadata.get(STATUS_DETAILS_KEY);
  if (raw === undefined) {
    return undefined;
  }
  return Status.decode(typeof raw === "string" ? Buffer.from(raw, "base64") : raw);
}

/**
 * The google.rpc.BadRequest field violations of a failed call (INVALID_ARGUMENT, or
 * RESOURCE_EXHAUSTED for a limit): each names a request field, such as "user_id" or
 * "events[3].event_time", and says what is wrong with it. Empty when there are none.
 */
export function fieldViolations(error: unknown): BadRequest_FieldViolation[] {
  const details = statusDetails(error)?.details ?? [];
  return details
    .filter((detail) => detail.typeUrl === BAD_REQUEST_TYPE)
    .flatMap((detail) => BadRequest.decode(detail.value).fieldViolations);
}
