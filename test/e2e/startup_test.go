package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/localtest"
)

// TestOpenRefusesMissingResources: Open fails at once, naming the resource, for a table
// or a topic that does not exist, a table without the per-user index, and a table that
// is not a session table; all that is wrong is named at once.
func TestOpenRefusesMissingResources(t *testing.T) {
	ctx := context.Background()
	db := theSite.DynamoDBClient()
	noIndex, otherKey := "e2e-noindex-"+randomSuffix(), "e2e-otherkey-"+randomSuffix()
	if err := localtest.CreateSessionTable(ctx, db, noIndex); err != nil { // pk, and no index
		t.Fatal(err)
	}
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(otherKey), BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []string{noIndex, otherKey} {
			_, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(n)})
		}
	})
	ops := theSite.Outputs.TopicARNs[topology.TopicOps]
	missingTopic := ops[:strings.LastIndexByte(ops, ':')+1] + "sessionha-no-such-topic"
	for _, tc := range []struct {
		name string
		edit func(*client.Config)
		want []string
	}{
		{"missing table", func(c *client.Config) { c.Table = "sessionha-no-such-table" },
			[]string{`Table (SESSIONHA_TABLE) "sessionha-no-such-table": no such table`}},
		{"missing ops topic", func(c *client.Config) { c.OpsTopicARN = missingTopic },
			[]string{`OpsTopicARN (SESSIONHA_OPS_TOPIC_ARN) "` + missingTopic + `": no such topic`}},
		{"missing notice topic", func(c *client.Config) { c.NoticeTopicARN = missingTopic },
			[]string{`NoticeTopicARN (SESSIONHA_NOTICE_TOPIC_ARN) "` + missingTopic + `": no such topic`}},
		{"missing query topic", func(c *client.Config) { busReader(c); c.QueryTopicARN = missingTopic },
			[]string{`QueryTopicARN (SESSIONHA_QUERY_TOPIC_ARN) "` + missingTopic + `"`}},
		{"table and topic both missing", func(c *client.Config) { c.Table, c.OpsTopicARN = "sessionha-no-such-table", missingTopic },
			[]string{`"sessionha-no-such-table": no such table`, `"` + missingTopic + `": no such topic`}},
		{"table without the per-user index", func(c *client.Config) { c.Table = noIndex },
			[]string{`"` + noIndex + `" has no index "byPrincipal"`}},
		{"table of another kind", func(c *client.Config) { c.Table = otherKey },
			[]string{`"` + otherKey + `" is not a session table: its partition key is "id"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := client.Config{
				Table: theSite.Outputs.Table, OpsTopicARN: ops, NoticeTopicARN: theSite.Outputs.TopicARNs[topology.TopicNotice],
				InstanceID: "startup-" + randomSuffix(), AWS: &theSite.AWS, JournalDir: t.TempDir(),
			}
			tc.edit(&cfg)
			s, err := client.Open(ctx, cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open: %v\nwant it to say %s", err, w)
				}
			}
			// Refused before anything was made: the instance id is free.
			cfg.Table, cfg.OpsTopicARN, cfg.NoticeTopicARN = theSite.Outputs.Table, ops, theSite.Outputs.TopicARNs[topology.TopicNotice]
			cfg.ReadPath, cfg.QueryTopicARN, cfg.ReplyTopicARN = "", "", ""
			s, err = client.Open(ctx, cfg)
			if err != nil {
				t.Fatalf("Open with the right resources after a refusal: %v", err)
			}
			s.Close()
		})
	}
}
