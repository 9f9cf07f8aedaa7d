// Client interceptors: a deadline on every call, and a request id on every call.
import { randomUUID } from "node:crypto";
import { InterceptingCall, Interceptor } from "@grpc/grpc-js";

/** The metadata key that carries the request id across services. */
export const REQUEST_ID_KEY = "x-request-id";

/** Gives a call without a deadline one `timeoutMs` from its start. */
export function deadlineInterceptor(timeoutMs: number): Interceptor {
  return (options, nextCall) => {
    const withDeadline =
      options.deadline === undefined && timeoutMs > 0
        ? { ...options, deadline: new Date(Date.now() + timeoutMs) }
        : options;
    return new InterceptingCall(nextCall(withDeadline));
  };
}

/** Adds an x-request-id (a new UUID) to a call whose metadata has none. */
export function requestIdInterceptor(): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get(REQUEST_ID_KEY).length === 0) {
          metadata.set(REQUEST_ID_KEY, randomUUID());
        }
        next(metadata, listener);
      },
    });
}
