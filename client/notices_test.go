package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

const (
	euNotice = "arn:aws:sns:eu-west-1:123456789012:sessionha-eu-notice"
	usNotice = "arn:aws:sns:us-east-1:123456789012:sessionha-us-notice"
)

// TestNoticeTopicsDefaultAndValidation: without SESSIONHA_NOTICE_TOPIC_ARNS an instance
// hears its own site's notice topic; a list is taken without repeats, must name SNS
// topics, and must hold the instance's own notice topic.
func TestNoticeTopicsDefaultAndValidation(t *testing.T) {
	if got := (Config{NoticeTopicARN: usNotice}).withDefaults().NoticeTopicARNs; !slices.Equal(got, []string{usNotice}) {
		t.Errorf("default NoticeTopicARNs %v, want the own notice topic alone", got)
	}
	if got := (Config{}).withDefaults().NoticeTopicARNs; got != nil {
		t.Errorf("without notice topics: %v", got)
	}
	if got := (Config{NoticeTopicARN: usNotice, NoticeTopicARNs: []string{usNotice, euNotice, usNotice}}).withDefaults().NoticeTopicARNs; !slices.Equal(got, []string{usNotice, euNotice}) {
		t.Errorf("repeats: %v, want each topic once, in order", got)
	}
	t.Setenv("SESSIONHA_NOTICE_TOPIC_ARNS", usNotice+",")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_NOTICE_TOPIC_ARNS") {
		t.Errorf("an empty entry: %v, want an error naming SESSIONHA_NOTICE_TOPIC_ARNS", err)
	}
	t.Setenv("SESSIONHA_NOTICE_TOPIC_ARNS", usNotice+", "+euNotice)
	c, err := ConfigFromEnv()
	if err != nil || !slices.Equal(c.NoticeTopicARNs, []string{usNotice, euNotice}) {
		t.Errorf("ConfigFromEnv: %v %v", c.NoticeTopicARNs, err)
	}
	if err := (Config{NoticeTopicARNs: []string{"sessionha-eu-notice"}}).validate(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_NOTICE_TOPIC_ARNS") {
		t.Errorf("a name for an ARN: %v", err)
	}
	_, err = Open(context.Background(), Config{Table: "t", OpsTopicARN: "arn:x", NoticeTopicARN: usNotice, NoticeTopicARNs: []string{euNotice},
		AWS: &aws.Config{Region: "us-east-1"}, JournalDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_NOTICE_TOPIC_ARNS") || !strings.Contains(err.Error(), "SESSIONHA_NOTICE_TOPIC_ARN)") {
		t.Errorf("a list without the own topic: %v, want an error naming both variables", err)
	}
}

// TestNoticeFilterScopes: with scope site an instance's subscriptions, on every site's
// notice topic, take its own site's destroys; with scope all every site's; and always the
// superseded notices for this instance alone.
func TestNoticeFilterScopes(t *testing.T) {
	for scope, destroys := range map[NoticeScope]any{
		NoticeSite: []any{"us"},
		NoticeAll:  []any{map[string]any{"exists": true}},
	} {
		var f map[string]any
		if err := json.Unmarshal([]byte(noticeFilter(Config{Site: "us", InstanceID: "auth-1", NoticeScope: scope})), &f); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"$or": []any{map[string]any{"site": destroys}, map[string]any{"owner": []any{"auth-1"}}}}
		if !reflect.DeepEqual(f, want) {
			t.Errorf("scope %s: filter %v, want %v", scope, f, want)
		}
	}
}

// TestHomeFirst: the topics of the instance's own region come first.
func TestHomeFirst(t *testing.T) {
	reply := "arn:aws:sns:us-east-1:123456789012:sessionha-us-reply"
	got, home := homeFirst([]string{reply, euNotice, usNotice}, "us-east-1")
	if !slices.Equal(got, []string{reply, usNotice, euNotice}) || home != 2 {
		t.Errorf("homeFirst: %v, %d", got, home)
	}
}

// TestInboxPolicyLetsEverySiteDeliver: the queue's policy names every topic that
// delivers to it, and SNS's principal of the topic's region where that region is opt-in.
func TestInboxPolicyLetsEverySiteDeliver(t *testing.T) {
	queue := "arn:aws:sqs:us-east-1:123456789012:sessionha-us-reply-auth-1"
	capeTown := "arn:aws:sns:af-south-1:123456789012:sessionha-za-notice"
	for _, tc := range []struct {
		topics     []string
		principals any
	}{
		{[]string{usNotice, euNotice}, "sns.amazonaws.com"},
		{[]string{usNotice, euNotice, capeTown}, []any{"sns.amazonaws.com", "sns.af-south-1.amazonaws.com"}},
	} {
		var p struct {
			Statement []struct {
				Sid       string
				Principal map[string]any
				Condition map[string]map[string]any
			}
		}
		if err := json.Unmarshal([]byte(inboxPolicy(queue, tc.topics)), &p); err != nil {
			t.Fatal(err)
		}
		st := p.Statement[0]
		if st.Sid != "TopicsDeliver" || !reflect.DeepEqual(st.Principal["Service"], tc.principals) {
			t.Errorf("topics %v: principal %v, want %v", tc.topics, st.Principal["Service"], tc.principals)
		}
		var src []string
		for _, v := range st.Condition["ArnEquals"]["aws:SourceArn"].([]any) {
			src = append(src, v.(string))
		}
		if !slices.Equal(src, tc.topics) {
			t.Errorf("topics %v: the policy lets %v deliver", tc.topics, src)
		}
	}
}

// TestRegionalSNSAsksTheTopicsRegion: a call about a topic or a subscription is signed
// for (and so sent to) the region in its ARN, as SNS requires; one naming this region's
// topic, or no ARN, goes to the store's own client.
func TestRegionalSNSAsksTheTopicsRegion(t *testing.T) {
	var mu sync.Mutex
	var got []string // action region
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		// Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/sns/aws4_request, ...
		scope := strings.Split(strings.SplitN(r.Header.Get("Authorization"), "Credential=", 2)[1], "/")
		mu.Lock()
		got = append(got, form.Get("Action")+" "+scope[2])
		mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>test</Message></Error></ErrorResponse>`)
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""), BaseEndpoint: aws.String(srv.URL)}
	r := newRegionalSNS(cfg, sns.NewFromConfig(cfg))
	ctx := context.Background()
	_, _ = r.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(euNotice), Protocol: aws.String("sqs"), Endpoint: aws.String("q")})
	_, _ = r.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(usNotice), Protocol: aws.String("sqs"), Endpoint: aws.String("q")})
	_, _ = r.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(euNotice)})
	_, _ = r.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: aws.String(euNotice + ":0f1e2d3c")})
	_, _ = r.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String("arn:aws:sns:ap-southeast-2:123456789012:sessionha-ap-notice")})
	_, _ = r.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String("not-an-arn")})
	want := []string{"Subscribe eu-west-1", "Subscribe us-east-1", "ListSubscriptionsByTopic eu-west-1", "Unsubscribe eu-west-1",
		"GetTopicAttributes ap-southeast-2", "GetTopicAttributes us-east-1"}
	if !slices.Equal(got, want) {
		t.Errorf("calls went to\n  %v\nwant\n  %v", got, want)
	}
}

// TestNoticeFromAnotherSiteRefusesTheSession: a destroy notice carries its origin site;
// one from another site drops this instance's copy and refuses the id, and the same
// notice again (SNS delivers at least once) changes nothing more.
func TestNoticeFromAnotherSiteRefusesTheSession(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Persistence: PersistenceMemory, Site: "us"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sess, err := s.Create(ctx, NewSession{Principal: "alice", MaxIdle: time.Hour, MaxLife: 8 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	body, err := events.EncodeNotice(&events.Notice{V: events.SchemaVersion, Cluster: "default", ID: events.HashID(sess.ID()),
		Site: "eu", Writer: "eu-auth-1", At: time.Now().UnixMilli(), Reason: "logout"})
	if err != nil {
		t.Fatal(err)
	}
	msg := sqstypes.Message{Body: aws.String(string(body)), MessageAttributes: map[string]sqstypes.MessageAttributeValue{
		"site": {DataType: aws.String("String"), StringValue: aws.String("eu")}}}
	b := &inbox{s: s}
	for range 2 {
		b.handle(msg)
		if _, err := s.Load(ctx, sess.ID()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after eu's notice, Load on us: %v, want ErrNotFound", err)
		}
	}
	if n := s.Stats().Notices; n != 2 {
		t.Errorf("notices counted %d, want 2 (each delivery)", n)
	}
	other, err := s.Create(ctx, NewSession{Principal: "bob", MaxIdle: time.Hour, MaxLife: 8 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, other.ID()); err != nil {
		t.Errorf("another session after the notices: %v", err)
	}
}

// fakeSubscriber subscribes, failing for the topics in fail.
type fakeSubscriber struct {
	subscriber // the calls ensure does not make panic
	mu         sync.Mutex
	fail       map[string]error
	subscribed []string
}

func (f *fakeSubscriber) Subscribe(_ context.Context, in *sns.SubscribeInput, _ ...func(*sns.Options)) (*sns.SubscribeOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[aws.ToString(in.TopicArn)]; err != nil {
		return nil, err
	}
	f.subscribed = append(f.subscribed, aws.ToString(in.TopicArn))
	return &sns.SubscribeOutput{}, nil
}

// TestAnotherRegionOutOfReach: the subscriptions in the instance's own region are made
// whatever another region does; while another region's is missing the instance does not
// count as listening (so it serves nothing from memory), its own region's bus is not
// taken for down, and the copies it owns stay owned; once it is made, the instance owns
// nothing (a notice from that region may have gone unheard), until it writes again.
func TestAnotherRegionOutOfReach(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Persistence: PersistenceMemory, Site: "us", InstanceID: "auth-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sess, err := s.Create(ctx, NewSession{Principal: "alice", MaxIdle: time.Hour, MaxLife: 8 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	owned := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		e := s.cache.get(record.Key("default", events.HashID(sess.ID())))
		return e != nil && e.owned
	}
	f := &fakeSubscriber{fail: map[string]error{euNotice: errors.New("dial tcp: connection refused")}}
	b := &inbox{s: s, sn: f, url: "https://sqs.us-east-1.amazonaws.com/1/q", arn: "arn:aws:sqs:us-east-1:1:q", subs: map[string]bool{}}
	b.topics, b.home = homeFirst([]string{euNotice, usNotice}, "us-east-1")
	if err := b.ensure(ctx, false); err != nil {
		t.Fatalf("this region's subscription: %v", err)
	}
	if !b.homeReady() || b.ready() || b.listening() {
		t.Errorf("home ready %v, ready %v, listening %v: want only this region's subscription made", b.homeReady(), b.ready(), b.listening())
	}
	s.mu.Lock()
	s.cache.get(record.Key("default", events.HashID(sess.ID()))).owned = true // a write meanwhile, as in an ha store
	s.mu.Unlock()
	err = b.ensure(ctx, true)
	var se *setupError
	if !errors.As(err, &se) || se.kind != setupUnreachable {
		t.Fatalf("another region out of reach: %v, want an unreachable setup error", err)
	}
	if b.busDown() || b.problem != nil {
		t.Errorf("another region out of reach taken for this region's bus: problem %v", b.problem)
	}
	if !owned() {
		t.Error("a failed subscription disowned the copies")
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	if err := b.ensure(ctx, true); err != nil {
		t.Fatalf("once the region answers: %v", err)
	}
	if !b.ready() || !b.listening() {
		t.Error("not listening with every subscription made")
	}
	if owned() {
		t.Error("still owns a copy that a notice from the other region may have made stale")
	}
	if !slices.Equal(f.subscribed, []string{usNotice, euNotice}) {
		t.Errorf("subscribed %v, want this region's first", f.subscribed)
	}
}
