// Promises for the callback-style unary methods of the generated @grpc/grpc-js clients.
import { CallOptions, ClientUnaryCall, Metadata, ServiceError } from "@grpc/grpc-js";

type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Response) => void,
) => ClientUnaryCall;

/**
 * Calls a unary RPC and resolves with its response, or rejects with its ServiceError:
 * `await unary(clients.ranking, clients.ranking.recommend, request)`.
 */
export function unary<Client, Request, Response>(
  client: Client,
  method: UnaryMethod<Request, Response>,
  request: Request,
  metadata: Metadata = new Metadata(),
  options: Partial<CallOptions> = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, options, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}
