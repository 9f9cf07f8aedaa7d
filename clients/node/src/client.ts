// One constructor for the clients of every evorec service, set up as the contracts expect.
import { ChannelCredentials, ChannelOptions, ClientOptions, credentials } from "@grpc/grpc-js";
import { EmbeddingServiceClient } from "./gen/evorec/v1/embedding";
import { InterestServiceClient } from "./gen/evorec/v1/interest";
import { PreprocessServiceClient } from "./gen/evorec/v1/preprocess";
import { RankingServiceClient } from "./gen/evorec/v1/ranking";
import { HealthClient } from "./gen/grpc/health/v1/health";
import { deadlineInterceptor, requestIdInterceptor } from "./interceptors";
import { DEFAULT_RETRY_POLICY, RetryPolicy, serviceConfig } from "./retry";

/** The deadline of a call that sets none. */
export const DEFAULT_TIMEOUT_MS = 5000;

export interface EvorecClientOptions {
  /** Deadline of calls that set none, in milliseconds (default 5000). */
  timeoutMs?: number;
  /** Retries of idempotent RPCs on UNAVAILABLE; maxAttempts below 2 turns them off. */
  retry?: RetryPolicy;
  /** TLS and the like; plaintext (as on loopback) when absent. */
  credentials?: ChannelCredentials;
  /** More @grpc/grpc-js channel options (keepalive, message sizes, ...). */
  channelOptions?: ChannelOptions;
}

/** The clients of every evorec service at one address. */
export interface EvorecClients {
  preprocess: PreprocessServiceClient;
  embedding: EmbeddingServiceClient;
  interest: InterestServiceClient;
  ranking: RankingServiceClient;
  health: HealthClient;
  close(): void;
}

/**
 * @grpc/grpc-js client options with evorec's deadline, request id and retry set-up, for
 * constructing a generated client directly: `new RankingServiceClient(target, creds, options)`.
 */
export function evorecClientOptions(options: EvorecClientOptions = {}): ClientOptions {
  return {
    ...options.channelOptions,
    "grpc.service_config": serviceConfig(options.retry ?? DEFAULT_RETRY_POLICY),
    interceptors: [deadlineInterceptor(options.timeoutMs ?? DEFAULT_TIMEOUT_MS), requestIdInterceptor()],
  };
}

/**
 * Connects to the evorec service at `target` ("host:port"). Each service answers at its own
 * address: use the client of the service that listens there (or all, behind one proxy).
 */
export function createClients(target: string, options: EvorecClientOptions = {}): EvorecClients {
  const creds = options.credentials ?? credentials.createInsecure();
  const clientOptions = evorecClientOptions(options);
  const clients = {
    preprocess: new PreprocessServiceClient(target, creds, clientOptions),
    embedding: new EmbeddingServiceClient(target, creds, clientOptions),
    interest: new InterestServiceClient(target, creds, clientOptions),
    ranking: new RankingServiceClient(target, creds, clientOptions),
    health: new HealthClient(target, creds, clientOptions),
  };
  return {
    ...clients,
    close: () => Object.values(clients).forEach((client) => client.close()),
  };
}
