// Command quickstart shows the evorec Go client: it ingests a user's events (twice, as a
// retry would: the second time they are all duplicates), asks for recommendations, prints
// them with their reasons, prints the user's interest profile, then shows the errors a caller
// handles: INVALID_ARGUMENT with its field violations, and NOT_FOUND. Each step is printed as
// one JSON object per line.
//
//	go run ./examples/quickstart -interest 127.0.0.1:50053 -ranking 127.0.0.1:50054 ITEM...
//
// The addresses default to $EVOREC_INTEREST_ADDR and $EVOREC_RANKING_ADDR, else to those of
// `evorec up`. ITEM... are ids of catalog items the user viewed, oldest first.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/evorec/evorec/clients/go/evorec"
	evorecv1 "github.com/evorec/evorec/clients/go/evorec/v1"
	"google.golang.org/genproto/googleapis/rpc/code"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func main() {
	interestAddr := flag.String("interest", env("EVOREC_INTEREST_ADDR", "127.0.0.1:50053"), "InterestService address")
	rankingAddr := flag.String("ranking", env("EVOREC_RANKING_ADDR", "127.0.0.1:50054"), "RankingService address")
	user := flag.String("user", "quickstart-user", "the user whose events are ingested")
	k := flag.Int("k", 10, "how many recommendations")
	flag.Parse()
	if flag.NArg() == 0 {
		log.Fatal("usage: quickstart [-interest ADDR] [-ranking ADDR] [-user ID] [-k N] ITEM...")
	}
	interest, err := evorec.Dial(*interestAddr)
	check(err)
	defer interest.Close()
	ranking, err := evorec.Dial(*rankingAddr)
	check(err)
	defer ranking.Close()
	ctx := context.Background()

	waitUntilServing(ctx, interest, "evorec.v1.InterestService")
	waitUntilServing(ctx, ranking, "evorec.v1.RankingService")
	events := viewEvents(*user, flag.Args())
	ingest(ctx, interest, "ingest", events)
	ingest(ctx, interest, "ingest_again", events)
	recommend(ctx, ranking, *user, int32(*k))
	profile(ctx, interest, *user)

	_, err = ranking.Ranking.Recommend(ctx, &evorecv1.RecommendRequest{
		Subject: &evorecv1.RecommendRequest_UserId{UserId: ""},
	})
	printError("empty_user_id", err)
	_, err = interest.Interest.GetInterestProfile(ctx, &evorecv1.GetInterestProfileRequest{UserId: *user + "-unknown"})
	printError("unknown_user", err)
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func emit(step string, fields map[string]interface{}) {
	fields["step"] = step
	line, err := json.Marshal(fields)
	check(err)
	fmt.Println(string(line))
}

func waitUntilServing(ctx context.Context, client *evorec.Client, service string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		response, err := client.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err == nil && response.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			emit("health", map[string]interface{}{"service": service, "status": response.GetStatus().String()})
			return
		}
		if time.Now().After(deadline) {
			log.Fatalf("%s is not serving: %v %v", service, response.GetStatus(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// viewEvents describes the user viewing items one minute apart, ending now. The event ids
// are the user's and the position's, so sending the same events again stores nothing twice.
func viewEvents(user string, items []string) []*evorecv1.Event {
	start := time.Now().Add(-time.Duration(len(items)) * time.Minute)
	events := make([]*evorecv1.Event, len(items))
	for i, item := range items {
		events[i] = &evorecv1.Event{
			EventId:   fmt.Sprintf("%s-view-%d", user, i),
			UserId:    user,
			ItemId:    item,
			Type:      evorecv1.EventType_EVENT_TYPE_VIEW,
			EventTime: timestamppb.New(start.Add(time.Duration(i) * time.Minute)),
		}
	}
	return events
}

func ingest(ctx context.Context, client *evorec.Client, step string, events []*evorecv1.Event) {
	response, err := client.Interest.IngestEvents(ctx, &evorecv1.IngestEventsRequest{Events: events})
	check(err)
	summary := response.GetSummary()
	emit(step, map[string]interface{}{
		"accepted":   summary.GetAcceptedCount(),
		"duplicates": summary.GetDuplicateCount(),
		"rejected":   summary.GetRejectedCount(),
	})
}

func recommend(ctx context.Context, client *evorec.Client, user string, k int32) {
	response, err := client.Ranking.Recommend(ctx, &evorecv1.RecommendRequest{
		Subject: &evorecv1.RecommendRequest_UserId{UserId: user},
		K:       &k,
	})
	check(err)
	items := []map[string]interface{}{}
	for _, r := range response.GetRecommendations() {
		items = append(items, map[string]interface{}{
			"item_id":  r.GetItemId(),
			"title":    r.GetTitle(),
			"topic_id": r.GetTopicId(),
			"score":    r.GetScore(),
			"reason":   r.GetReason(),
			"sources":  sourceNames(r.GetSources()),
		})
	}
	emit("recommend", map[string]interface{}{
		"cold_start":       response.GetColdStart(),
		"model_version":    response.GetModelVersion(),
		"sources_used":     sourceNames(response.GetSourcesUsed()),
		"degraded_sources": sourceNames(response.GetDegradedSources()),
		"recommendations":  items,
	})
}

func sourceNames(sources []evorecv1.CandidateSource) []string {
	names := []string{}
	for _, source := range sources {
		names = append(names, source.String())
	}
	return names
}

func profile(ctx context.Context, client *evorec.Client, user string) {
	response, err := client.Interest.GetInterestProfile(ctx, &evorecv1.GetInterestProfileRequest{UserId: user})
	check(err)
	p := response.GetProfile()
	current := []map[string]interface{}{}
	for _, w := range p.GetCurrent().GetWeights() {
		current = append(current, map[string]interface{}{"topic_id": w.GetTopicId(), "label": w.GetLabel(), "weight": w.GetWeight()})
	}
	predictions := []map[string]interface{}{}
	for _, prediction := range p.GetPredictions() {
		top := ""
		if weights := prediction.GetDistribution().GetWeights(); len(weights) > 0 {
			top = weights[0].GetTopicId()
		}
		predictions = append(predictions, map[string]interface{}{"method": prediction.GetMethod().String(), "top_topic_id": top})
	}
	emit("profile", map[string]interface{}{
		"user_id":     p.GetUserId(),
		"event_count": p.GetEventCount(),
		"drift_score": p.GetDriftScore(),
		"current":     current,
		"predictions": predictions,
	})
}

// printError prints what a caller reads from a failed call: its code, its message and the
// fields of the request at fault.
func printError(step string, err error) {
	violations := []map[string]string{}
	for _, v := range evorec.FieldViolations(err) {
		violations = append(violations, map[string]string{"field": v.GetField(), "description": v.GetDescription()})
	}
	emit(step, map[string]interface{}{
		"code":       code.Code_name[int32(status.Code(err))],
		"message":    status.Convert(err).Message(),
		"violations": violations,
	})
}
