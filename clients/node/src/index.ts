// The evorec client for Node.js: the generated messages and @grpc/grpc-js clients of the
// contracts (package evorec.v1), and a thin helper that sets deadlines, retries idempotent
// RPCs, passes request ids and reads error details.
export * from "./client";
export * from "./errors";
export * from "./interceptors";
export * from "./retry";
export * from "./unary";
export * from "./gen/evorec/v1/common";
export * from "./gen/evorec/v1/embedding";
export * from "./gen/evorec/v1/interest";
export * from "./gen/evorec/v1/preprocess";
export * from "./gen/evorec/v1/ranking";
export * from "./gen/google/rpc/error_details";
export * from "./gen/google/rpc/status";
export * from "./gen/grpc/health/v1/health";
