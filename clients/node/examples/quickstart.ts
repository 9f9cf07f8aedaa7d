// Shows the evorec Node.js client: ingests a user's events (twice, as a retry would: the
// second time they are all duplicates), asks for recommendations, prints them with their
// reasons, prints the user's interest profile, then shows the errors a caller handles:
// INVALID_ARGUMENT with its field violations, and NOT_FOUND. Each step is printed as one
// JSON object per line.
//
//   node dist/examples/quickstart.js --interest 127.0.0.1:50053 --ranking 127.0.0.1:50054 ITEM...
//
// The addresses default to $EVOREC_INTEREST_ADDR and $EVOREC_RANKING_ADDR, else to those of
// `evorec up`. ITEM... are ids of catalog items the user viewed, oldest first.
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import {
  CandidateSource,
  EvorecClients,
  Event,
  EventType,
  GetInterestProfileRequest,
  HealthCheckRequest,
  HealthCheckResponse_ServingStatus,
  IngestEventsRequest,
  RecommendRequest,
  candidateSourceToJSON,
  codeName,
  createClients,
  fieldViolations,
  healthCheckResponse_ServingStatusToJSON,
  isServiceError,
  predictionMethodToJSON,
  unary,
} from "../src";

function emit(step: string, fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ step, ...fields }));
}

async function waitUntilServing(clients: EvorecClients, service: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const response = await unary(clients.health, clients.health.check, HealthCheckRequest.fromPartial({ service })).catch(
      () => undefined,
    );
    if (response?.status === HealthCheckResponse_ServingStatus.SERVING) {
      emit("health", { service, status: healthCheckResponse_ServingStatusToJSON(response.status) });
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`${service} is not serving`);
    }
    await sleep(200);
  }
}

/**
 * The user viewing items one minute apart, ending now. The event ids are the user's and the
 * position's, so sending the same events again stores nothing twice.
 */
function viewEvents(user: string, items: string[]): Event[] {
  const start = Date.now() - items.length * 60_000;
  return items.map((itemId, i) =>
    Event.fromPartial({
      eventId: `${user}-view-${i}`,
      userId: user,
      itemId,
      type: EventType.EVENT_TYPE_VIEW,
      eventTime: new Date(start + i * 60_000),
    }),
  );
}

async function ingest(clients: EvorecClients, step: string, events: Event[]): Promise<void> {
  const response = await unary(clients.interest, clients.interest.ingestEvents, IngestEventsRequest.fromPartial({ events }));
  emit(step, {
    accepted: response.summary?.acceptedCount ?? 0,
    duplicates: response.summary?.duplicateCount ?? 0,
    rejected: response.summary?.rejectedCount ?? 0,
  });
}

const sourceNames = (sources: CandidateSource[]): string[] => sources.map(candidateSourceToJSON);

async function recommend(clients: EvorecClients, userId: string, k: number): Promise<void> {
  const response = await unary(clients.ranking, clients.ranking.recommend, RecommendRequest.fromPartial({ userId, k }));
  emit("recommend", {
    cold_start: response.coldStart,
    model_version: response.modelVersion,
    sources_used: sourceNames(response.sourcesUsed),
    degraded_sources: sourceNames(response.degradedSources),
    recommendations: response.recommendations.map((r) => ({
      item_id: r.itemId,
      title: r.title,
      topic_id: r.topicId,
      score: r.score,
      reason: r.reason,
      sources: sourceNames(r.sources),
    })),
  });
}

async function profile(clients: EvorecClients, userId: string): Promise<void> {
  const response = await unary(
    clients.interest,
    clients.interest.getInterestProfile,
    GetInterestProfileRequest.fromPartial({ userId }),
  );
  const p = response.profile;
  emit("profile", {
    user_id: p?.userId,
    event_count: p?.eventCount,
    drift_score: p?.driftScore,
    current: (p?.current?.weights ?? []).map((w) => ({ topic_id: w.topicId, label: w.label, weight: w.weight })),
    predictions: (p?.predictions ?? []).map((prediction) => ({
      method: predictionMethodToJSON(prediction.method),
      top_topic_id: prediction.distribution?.weights[0]?.topicId ?? "",
    })),
  });
}

/** What a caller reads from a failed call: its code, its message and the fields at fault. */
async function printError(step: string, call: Promise<unknown>): Promise<void> {
  try {
    await call;
    emit(step, { code: "OK", message: "", violations: [] });
  } catch (error) {
    if (!isServiceError(error)) {
      throw error;
    }
    emit(step, {
      code: codeName(error),
      message: error.details,
      violations: fieldViolations(error).map((v) => ({ field: v.field, description: v.description })),
    });
  }
}

async function main(): Promise<void> {
  const { values, positionals: items } = parseArgs({
    options: {
      interest: { type: "string", default: process.env.EVOREC_INTEREST_ADDR ?? "127.0.0.1:50053" },
      ranking: { type: "string", default: process.env.EVOREC_RANKING_ADDR ?? "127.0.0.1:50054" },
      user: { type: "string", default: "quickstart-user" },
      k: { type: "string", default: "10" },
    },
    allowPositionals: true,
  });
  if (items.length === 0) {
    throw new Error("usage: quickstart [--interest ADDR] [--ranking ADDR] [--user ID] [--k N] ITEM...");
  }
  const user = values.user;
  const interest = createClients(values.interest);
  const ranking = createClients(values.ranking);
  try {
    await waitUntilServing(interest, "evorec.v1.InterestService");
    await waitUntilServing(ranking, "evorec.v1.RankingService");
    const events = viewEvents(user, items);
    await ingest(interest, "ingest", events);
    await ingest(interest, "ingest_again", events);
    await recommend(ranking, user, Number(values.k));
    await profile(interest, user);
    await printError(
      "empty_user_id",
      unary(ranking.ranking, ranking.ranking.recommend, RecommendRequest.fromPartial({ userId: "" })),
    );
    await printError(
      "unknown_user",
      unary(interest.interest, interest.interest.getInterestProfile, GetInterestProfileRequest.fromPartial({ userId: `${user}-unknown` })),
    );
  } finally {
    interest.close();
    ranking.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
