// gRPC's service config with a retry policy on exactly the RPCs that the contracts mark
// idempotent (idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS), read from the generated
// service definitions.
import { EmbeddingServiceDefinition } from "./gen/evorec/v1/embedding";
import { InterestServiceDefinition } from "./gen/evorec/v1/interest";
import { PreprocessServiceDefinition } from "./gen/evorec/v1/preprocess";
import { RankingServiceDefinition } from "./gen/evorec/v1/ranking";

/** How often and how fast gRPC retries an idempotent call on UNAVAILABLE. */
export interface RetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  backoffMultiplier: number;
}

/** The policy of the Python clients (evorec.platform.clients). */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 4,
  initialBackoffMs: 50,
  maxBackoffMs: 1000,
  backoffMultiplier: 2,
};

interface MethodDefinition {
  name: string;
  requestStream: boolean;
  options: { idempotencyLevel?: string };
}

const SERVICES: { fullName: string; methods: Record<string, MethodDefinition> }[] = [
  PreprocessServiceDefinition,
  EmbeddingServiceDefinition,
  InterestServiceDefinition,
  RankingServiceDefinition,
];

const RETRIED_LEVELS = ["IDEMPOTENT", "NO_SIDE_EFFECTS"];

/** The RPCs that are safe to retry, as gRPC names them in a service config. */
export function idempotentMethods(): { service: string; method: string }[] {
  return SERVICES.flatMap((service) =>
    Object.values(service.methods)
      .filter((m) => !m.requestStream && RETRIED_LEVELS.includes(m.options.idempotencyLevel ?? ""))
      .map((m) => ({ service: service.fullName, method: m.name })),
  );
}

/** The service config (JSON) for the channel option "grpc.service_config". */
export function serviceConfig(policy: RetryPolicy = DEFAULT_RETRY_POLICY): string {
  if (policy.maxAttempts < 2) {
    return JSON.stringify({ methodConfig: [] });
  }
  return JSON.stringify({
    methodConfig: [
      {
        name: idempotentMethods(),
        retryPolicy: {
          maxAttempts: policy.maxAttempts,
          initialBackoff: `${policy.initialBackoffMs / 1000}s`,
          maxBackoff: `${policy.maxBackoffMs / 1000}s`,
          backoffMultiplier: policy.backoffMultiplier,
          retryableStatusCodes: ["UNAVAILABLE"],
        },
      },
    ],
  });
}
