package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/sessionha/sessionha/infra/outputs"
	"github.com/sessionha/sessionha/infra/topology"
)

// Build adds one stack per site to app, and cdk-nag's AwsSolutions checks over all of
// them, and returns the stacks by site name. The primary site's stack holds the global
// table with a replica in every other site's region; the other stacks depend on it, so
// that `cdk deploy --all` creates the table (and so the replica their functions write to)
// first. The table has a fixed name, so no stack needs another's outputs: there are no
// cross-region references.
func Build(app awscdk.App, cfg Config) (map[string]awscdk.Stack, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Table == "" {
		cfg.Table = topology.DefaultTable
	}
	primary := cfg.primary()
	var replicas []string
	for _, s := range cfg.Sites {
		if s.Region != primary.Region && !slices.Contains(replicas, s.Region) {
			replicas = append(replicas, s.Region)
		}
	}
	stacks := map[string]awscdk.Stack{}
	// The same call the local stack makes: both render what topology.ForDeployment
	// describes, every site knowing every site's notice topic.
	var sites []topology.Site
	for _, s := range cfg.Sites {
		sites = append(sites, s.Site())
	}
	topos, err := topology.ForDeployment(sites, cfg.Table)
	if err != nil {
		return nil, err
	}
	render := func(sc SiteConfig, replicas []string) (awscdk.Stack, error) {
		for _, topo := range topos {
			if topo.Site.Name == sc.Name {
				return newSiteStack(app, cfg, sc, topo, replicas)
			}
		}
		return nil, fmt.Errorf("site %s: not in the deployment", sc.Name)
	}
	ps, err := render(primary, replicas)
	if err != nil {
		return nil, err
	}
	stacks[primary.Name] = ps
	for _, s := range cfg.Sites {
		if s.Primary {
			continue
		}
		st, err := render(s, nil)
		if err != nil {
			return nil, err
		}
		st.AddStackDependency(ps, jsii.String("the primary site's stack creates the global table and its replica in this region"))
		stacks[s.Name] = st
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return stacks, nil
}

// site renders one topology into one stack.
type site struct {
	cfg      Config
	sc       SiteConfig
	settings SiteSettings
	topo     topology.Topology
	stack    awscdk.Stack
	key      awskms.Key
	sealKey  awskms.Key          // wraps the data keys that seal attribute values (sealingKey)
	table    awsdynamodb.TableV2 // the primary site's only
	tableARN *string             // the replica in this stack's region
	stream   awsdynamodb.ITable  // the replica whose stream feeds functions (stream.go)
	topics   map[string]awssns.Topic
	queues   map[string]awssqs.Queue
	fns      map[string]awslambda.Function
}

// newSiteStack renders topo, the topology of site sc, as a stack of app; the primary's
// stack also gets the global table with a replica in each of replicas.
func newSiteStack(app awscdk.App, cfg Config, sc SiteConfig, topo topology.Topology, replicas []string) (awscdk.Stack, error) {
	name := outputs.StackName(sc.Name)
	env := &awscdk.Environment{Region: jsii.String(sc.Region)}
	if sc.Account != "" {
		env.Account = jsii.String(sc.Account)
	}
	role := "secondary site"
	if sc.Primary {
		role = "primary site, holds the global session table"
	}
	s := &site{
		cfg: cfg, sc: sc, settings: sc.Settings.withDefaults(), topo: topo,
		stack: awscdk.NewStack(app, jsii.String(name), &awscdk.StackProps{
			StackName:   jsii.String(name),
			Env:         env,
			Description: jsii.String(fmt.Sprintf("sessionha site %s in %s (%s)", sc.Name, sc.Region, role)),
		}),
		topics: map[string]awssns.Topic{}, queues: map[string]awssqs.Queue{}, fns: map[string]awslambda.Function{},
	}
	s.tableARN = s.stack.FormatArn(&awscdk.ArnComponents{
		Service: jsii.String("dynamodb"), Resource: jsii.String("table"), ResourceName: jsii.String(topo.Table.Name),
	})
	if sc.Primary {
		s.globalTable(replicas)
	}
	s.messaging()
	s.sealingKey()
	if err := s.subscriptions(); err != nil {
		return nil, err
	}
	if err := s.functions(); err != nil {
		return nil, err
	}
	s.alarms()
	s.dashboard()
	direct, busOnly := s.authServerPolicies()
	s.outputs(direct, busOnly)
	return s.stack, nil
}

// globalTable is the session table: one TableV2 whose CloudFormation resource
// (AWS::DynamoDB::GlobalTable) lives in the primary's region and has a replica in each
// other region. Its properties come from the topology, as the local provisioner's do.
func (s *site) globalTable(replicaRegions []string) {
	t := s.topo.Table
	var gsis []*awsdynamodb.GlobalSecondaryIndexPropsV2
	for _, ix := range t.Indexes {
		gsis = append(gsis, &awsdynamodb.GlobalSecondaryIndexPropsV2{
			IndexName:        jsii.String(ix.Name),
			PartitionKey:     &awsdynamodb.Attribute{Name: jsii.String(ix.PartitionKey), Type: awsdynamodb.AttributeType_STRING},
			SortKey:          &awsdynamodb.Attribute{Name: jsii.String(ix.SortKey), Type: awsdynamodb.AttributeType_NUMBER},
			ProjectionType:   awsdynamodb.ProjectionType_INCLUDE,
			NonKeyAttributes: jsii.Strings(ix.Include...),
		})
	}
	var replicas []*awsdynamodb.ReplicaTableProps
	for _, r := range replicaRegions {
		replicas = append(replicas, &awsdynamodb.ReplicaTableProps{Region: jsii.String(r)})
	}
	s.table = awsdynamodb.NewTableV2(s.stack, jsii.String("Table"), &awsdynamodb.TablePropsV2{
		TableName:              jsii.String(t.Name),
		PartitionKey:           &awsdynamodb.Attribute{Name: jsii.String(t.PartitionKey), Type: awsdynamodb.AttributeType_STRING},
		TimeToLiveAttribute:    jsii.String(t.TTLAttribute),
		GlobalSecondaryIndexes: &gsis,
		Replicas:               &replicas,
		Billing:                awsdynamodb.Billing_OnDemand(nil),
		// Global tables replicate through streams; the cross-region test harness reads
		// the same NEW_AND_OLD_IMAGES records locally.
		DynamoStream: awsdynamodb.StreamViewType_NEW_AND_OLD_IMAGES,
		// An AWS-managed key works in every replica region without a key per region
		// (a customer key would need one per region, named across stacks).
		Encryption: awsdynamodb.TableEncryptionV2_AwsManagedKey(),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		// Sessions are users' logins: neither a stack deletion nor a console click should
		// drop them.
		DeletionProtection: jsii.Bool(true),
		RemovalPolicy:      awscdk.RemovalPolicy_RETAIN,
	})
}

// messaging creates the site's key, topics and queues.
func (s *site) messaging() {
	// One customer key per site for its topics: SNS encryption needs a KMS key, and an
	// AWS-managed aws/sns key cannot be granted to anyone outside SNS. The queues use
	// SQS-managed encryption, so SNS needs no grant on any key to deliver to them.
	s.key = awskms.NewKey(s.stack, jsii.String("TopicKey"), &awskms.KeyProps{
		Description:       jsii.String("sessionha " + s.sc.Name + ": encrypts the site's SNS topics"),
		Alias:             jsii.String("alias/sessionha-" + s.sc.Name + "-topics"),
		EnableKeyRotation: jsii.Bool(true),
	})
	for _, tp := range s.topo.Topics {
		s.topics[tp.ID] = awssns.NewTopic(s.stack, jsii.String("Topic"+camel(tp.ID)), &awssns.TopicProps{
			TopicName:  jsii.String(tp.Name),
			MasterKey:  s.key,
			EnforceSSL: jsii.Bool(true), // topic policy: deny sns:Publish without TLS
		})
	}
	// Dead-letter queues first: a source queue's redrive policy names its DLQ.
	for pass := range 2 {
		for _, q := range s.topo.Queues {
			if (q.DLQ == "") != (pass == 0) {
				continue
			}
			props := &awssqs.QueueProps{
				QueueName:         jsii.String(q.Name),
				VisibilityTimeout: seconds(q.VisibilityTimeout),
				RetentionPeriod:   seconds(q.Retention),
				Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
				EnforceSSL:        jsii.Bool(true), // queue policy: deny sqs:* without TLS
			}
			if q.DLQ != "" {
				props.DeadLetterQueue = &awssqs.DeadLetterQueue{Queue: s.queues[q.DLQ], MaxReceiveCount: jsii.Number(q.MaxReceiveCount)}
			}
			s.queues[q.ID] = awssqs.NewQueue(s.stack, jsii.String("Queue"+camel(q.ID)), props)
		}
	}
}

// sealingKey is the site's seal key: it wraps the data keys with which the auth servers
// seal attribute values (client/kmskeys). The auth servers may decrypt with it, and only
// data keys made for sealing (the encryption context's purpose); the functions get no
// right on it: they never see a value in clear. The key is kept when the stack goes:
// without it no sealed value opens.
func (s *site) sealingKey() {
	s.sealKey = awskms.NewKey(s.stack, jsii.String("SealKey"), &awskms.KeyProps{
		Description:       jsii.String("sessionha " + s.sc.Name + ": wraps the data keys that seal session attribute values"),
		Alias:             jsii.String(s.topo.SealKey.Alias),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})
}

// subscriptions feeds the queues from the topics. SqsSubscription also adds the queue
// policy statement that lets this topic (and only it) send to the queue.
func (s *site) subscriptions() error {
	for _, sub := range s.topo.Subscriptions {
		topic, queue := s.topics[sub.Topic], s.queues[sub.Queue]
		if topic == nil || queue == nil {
			return fmt.Errorf("site %s: subscription %s -> %s: topic or queue not in the topology", s.sc.Name, sub.Topic, sub.Queue)
		}
		res := topic.AddSubscription(awssnssubscriptions.NewSqsSubscription(queue, &awssnssubscriptions.SqsSubscriptionProps{
			RawMessageDelivery: jsii.Bool(sub.RawDelivery),
		}))
		if sub.FilterPolicy != "" {
			// The topology's policy is SNS's own JSON; set it verbatim rather than
			// re-expressing it in the CDK's filter builders, so both renderers send SNS
			// the same document.
			var policy any
			if err := json.Unmarshal([]byte(sub.FilterPolicy), &policy); err != nil {
				return fmt.Errorf("site %s: subscription %s -> %s: filter policy: %w", s.sc.Name, sub.Topic, sub.Queue, err)
			}
			cfn := res.Node().DefaultChild().(awscdk.CfnResource)
			cfn.AddPropertyOverride(jsii.String("FilterPolicy"), policy)
		}
	}
	return nil
}

// functions deploys each topology function from its bootstrap, with its own role holding
// only what functionAccess lists, and its SQS event source mapping.
func (s *site) functions() error {
	for _, f := range s.topo.Functions {
		acc, ok := functionAccess[f.ID]
		if !ok {
			return fmt.Errorf("function %s: no entry in infra/access.go's functionAccess: write down what it may call", f.ID)
		}
		dir := filepath.Join(s.cfg.AssetDir, f.ID)
		if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil {
			return fmt.Errorf("function %s: %w: build the arm64 bootstraps first (make build; make synth does it)", f.ID, err)
		}
		queue := s.queues[f.Queue]
		if queue == nil && f.Stream == nil {
			return fmt.Errorf("function %s: its queue %q is not in the topology", f.ID, f.Queue)
		}
		id := camel(f.ID)
		logs := awslogs.NewLogGroup(s.stack, jsii.String("Logs"+id), &awslogs.LogGroupProps{
			RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
		})
		// The L2 takes retention as an enum of names; CloudFormation takes the days.
		logs.Node().DefaultChild().(awslogs.CfnLogGroup).SetRetentionInDays(jsii.Number(s.settings.LogRetentionDays))

		// A role of its own instead of the CDK default's AWSLambdaBasicExecutionRole,
		// which may write to every log group in the account.
		role := awsiam.NewRole(s.stack, jsii.String("Role"+id), &awsiam.RoleProps{
			AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
			Description: jsii.String("sessionha " + s.sc.Name + ": function " + f.ID),
		})
		allow(role, []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logs.LogGroupArn())
		if len(acc.TableActions) > 0 {
			allow(role, acc.TableActions, s.tableARN)
		}
		for _, t := range acc.Publish {
			topic := s.topics[t]
			if topic == nil {
				return fmt.Errorf("function %s publishes to topic %q, which is not in the topology", f.ID, t)
			}
			allow(role, []string{"sns:Publish"}, topic.TopicArn())
		}
		if len(acc.Publish) > 0 {
			allow(role, []string{"kms:GenerateDataKey", "kms:Decrypt"}, s.key.KeyArn())
		}
		if acc.DeadLetters {
			q, _ := s.topo.Queue(f.Queue)
			dlq := s.queues[q.DLQ]
			if dlq == nil {
				return fmt.Errorf("function %s dead-letters, but its queue %q has no dead-letter queue", f.ID, f.Queue)
			}
			// The DLQs are SQS-encrypted: sending needs no key grant.
			allow(role, []string{"sqs:SendMessage"}, dlq.QueueArn())
		}

		env, err := s.resolveEnv(f)
		if err != nil {
			return err
		}
		fn := awslambda.NewFunction(s.stack, jsii.String("Function"+id), &awslambda.FunctionProps{
			FunctionName: jsii.String(f.Name),
			Description:  jsii.String("sessionha " + s.sc.Name + ": " + f.ID + " (functions/" + f.ID + ")"),
			Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
			Architecture: awslambda.Architecture_ARM_64(),
			Handler:      jsii.String("bootstrap"),
			Code:         awslambda.Code_FromAsset(jsii.String(dir), nil),
			Timeout:      seconds(f.Timeout),
			MemorySize:   jsii.Number(s.settings.MemoryMB),
			Environment:  &env,
			Role:         role,
			LogGroup:     logs,
		})
		if f.Stream != nil {
			src, err := s.streamSource(f) // stream.go
			if err != nil {
				return err
			}
			fn.AddEventSource(src)
		} else {
			fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(queue, &awslambdaeventsources.SqsEventSourceProps{
				BatchSize:               jsii.Number(f.BatchSize),
				MaxBatchingWindow:       seconds(f.BatchingWindow),
				MaxConcurrency:          jsii.Number(f.MaxConcurrency),
				ReportBatchItemFailures: jsii.Bool(true), // a bad message fails only itself
			}))
		}
		if s.table != nil && len(acc.TableActions) > 0 {
			// The function's policy names the table by ARN, which CloudFormation cannot
			// see as a dependency: don't start consuming before the table exists.
			fn.Node().AddDependency(s.table)
		}
		s.fns[f.ID] = fn
	}
	return nil
}

// resolveEnv turns the topology's "table:", "topic:" and "queue:" references into names,
// ARNs and URLs, as the local site does for the Lambda runner.
func (s *site) resolveEnv(f topology.Function) (map[string]*string, error) {
	env := map[string]*string{}
	for k, v := range f.Env {
		kind, ref, _ := strings.Cut(v, ":")
		switch kind {
		case "table":
			env[k] = jsii.String(ref)
		case "topic":
			t := s.topics[ref]
			if t == nil {
				return nil, fmt.Errorf("function %s: %s=%s: no such topic", f.ID, k, v)
			}
			env[k] = t.TopicArn()
		case "queue":
			q := s.queues[ref]
			if q == nil {
				return nil, fmt.Errorf("function %s: %s=%s: no such queue", f.ID, k, v)
			}
			env[k] = q.QueueUrl()
		default:
			env[k] = jsii.String(v)
		}
	}
	return env, nil
}

// alarms: a message in a dead-letter queue is a message that never applied; an old
// message in a source queue means the functions are failing or falling behind. No actions
// are wired: operators route the alarms to their own paging.
func (s *site) alarms() {
	isDLQ := s.topo.DeadLetterQueues() // redrive targets and stream mappings' on-failure queues
	minute := awscdk.Duration_Minutes(jsii.Number(1))
	for _, q := range s.topo.Queues {
		queue := s.queues[q.ID]
		switch {
		case isDLQ[q.ID]:
			awscloudwatch.NewAlarm(s.stack, jsii.String("Alarm"+camel(q.ID)+"Depth"), &awscloudwatch.AlarmProps{
				AlarmName:          jsii.String(q.Name + "-depth"),
				AlarmDescription:   jsii.String("Messages in the dead-letter queue " + q.Name + ": messages that can never apply, or that failed on every receive of the retry schedule (sessionctl dlq list shows each one's reason)."),
				Metric:             queue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: minute, Statistic: jsii.String("Maximum")}),
				Threshold:          jsii.Number(1),
				EvaluationPeriods:  jsii.Number(1),
				ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
				TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
			})
		case q.DLQ != "":
			awscloudwatch.NewAlarm(s.stack, jsii.String("Alarm"+camel(q.ID)+"Age"), &awscloudwatch.AlarmProps{
				AlarmName:          jsii.String(q.Name + "-oldest-message"),
				AlarmDescription:   jsii.String("The oldest message in " + q.Name + " is older than " + time.Duration(s.settings.OldestMessageAlarm).String() + ": its function is failing or falling behind."),
				Metric:             queue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Period: minute, Statistic: jsii.String("Maximum")}),
				Threshold:          jsii.Number(time.Duration(s.settings.OldestMessageAlarm).Seconds()),
				EvaluationPeriods:  jsii.Number(1),
				ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
				TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
			})
		}
	}
}

// dashboard shows, per function, its own counters (the EMF metrics it emits) and
// Lambda's view of it, and per queue its depth and age.
func (s *site) dashboard() {
	minute := awscdk.Duration_Minutes(jsii.Number(1))
	var rows []*[]awscloudwatch.IWidget
	for _, f := range s.topo.Functions {
		fn := s.fns[f.ID]
		var counters []awscloudwatch.IMetric
		for _, name := range functionAccess[f.ID].Metrics {
			counters = append(counters, awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
				Namespace:     jsii.String(metricsNamespace),
				MetricName:    jsii.String(name),
				DimensionsMap: &map[string]*string{metricsDimension: jsii.String(f.ID)},
				Statistic:     jsii.String("Sum"),
				Period:        minute,
				Label:         jsii.String(name),
			}))
		}
		row := []awscloudwatch.IWidget{}
		if len(counters) > 0 {
			row = append(row, awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(f.ID + ": operations (sum per minute)"), Left: &counters, Width: jsii.Number(12),
			}))
		}
		opts := &awscloudwatch.MetricOptions{Period: minute, Statistic: jsii.String("Sum")}
		row = append(row, awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title: jsii.String(f.ID + ": invocations"),
			Left:  &[]awscloudwatch.IMetric{fn.MetricInvocations(opts), fn.MetricErrors(opts), fn.MetricThrottles(opts)},
			Right: &[]awscloudwatch.IMetric{fn.MetricDuration(&awscloudwatch.MetricOptions{Period: minute, Statistic: jsii.String("p99")})},
			Width: jsii.Number(12),
		}))
		rows = append(rows, &row)
	}
	var queues []awscloudwatch.IWidget
	for _, q := range s.topo.Queues {
		queue := s.queues[q.ID]
		opts := &awscloudwatch.MetricOptions{Period: minute, Statistic: jsii.String("Maximum")}
		queues = append(queues, awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title: jsii.String(q.Name),
			Left:  &[]awscloudwatch.IMetric{queue.MetricApproximateNumberOfMessagesVisible(opts)},
			Right: &[]awscloudwatch.IMetric{queue.MetricApproximateAgeOfOldestMessage(opts)},
			Width: jsii.Number(6),
		}))
	}
	rows = append(rows, &queues)
	awscloudwatch.NewDashboard(s.stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName: jsii.String("sessionha-" + s.sc.Name),
		Widgets:       &rows,
	})
}

// authServerPolicies are what an auth server's client needs, and nothing more: the
// first for instances that read the table (ReadPath direct, the default), the second for
// bus-only instances (ReadPath bus), which get no table access at all. Both may publish
// operations, queries and destroy notices, and own the per-instance queues: an instance
// finds or makes its own at Open, keeps it alive with a tag, receives from it, subscribes
// it (and only it) to the reply, notice and lifecycle topics, and deletes the queues of
// instances gone for good, with their subscriptions (client/inbox.go, client/sweep.go,
// client/lifecycle.go).
func (s *site) authServerPolicies() (direct, busOnly awsiam.ManagedPolicy) {
	reply, _ := s.topo.Topic(topology.TopicReply)
	// Instance queues are named after the reply topic plus the instance: the client
	// makes them, so the policy can only name their prefix.
	instanceQueues := s.stack.FormatArn(&awscdk.ArnComponents{
		Service: jsii.String("sqs"), Resource: jsii.String(reply.Name + "-*"), ArnFormat: awscdk.ArnFormat_NO_RESOURCE_NAME,
	})
	policy := func(id, name, desc string, table bool) awsiam.ManagedPolicy {
		p := awsiam.NewManagedPolicy(s.stack, jsii.String(id), &awsiam.ManagedPolicyProps{
			ManagedPolicyName: jsii.String(name),
			Description:       jsii.String(desc),
			Statements:        s.authServerStatements(instanceQueues, table),
		})
		cdknag.NagSuppressions_AddResourceSuppressions(p, &[]*cdknag.NagPackSuppression{{
			Id: jsii.String("AwsSolutions-IAM5"),
			Reason: jsii.String("Each client instance makes its own queue at Open (" + reply.Name +
				"-<instance>-<hash>), keeps it across restarts and sweeps those of instances gone for good; their names are not known at deploy time, so the policy names their prefix. " +
				"sqs:ListQueues (for the sweep, which lists that prefix) has no resource-level permissions, so it takes Resource *."),
			AppliesTo: &[]any{
				"Resource::arn:<AWS::Partition>:sqs:" + s.sc.Region + ":" + s.nagAccount() + ":" + reply.Name + "-*",
				"Resource::*",
			},
		}}, jsii.Bool(false))
		return p
	}
	direct = policy("AuthServerPolicy", "sessionha-"+s.sc.Name+"-auth-server",
		"sessionha "+s.sc.Name+": what an auth server's client needs (reads the table); attach to the auth servers' role", true)
	busOnly = policy("AuthServerBusPolicy", "sessionha-"+s.sc.Name+"-auth-server-bus",
		"sessionha "+s.sc.Name+": what a bus-only auth server's client needs (ReadPath bus, no table access); attach instead of the auth-server policy", false)
	return direct, busOnly
}

// noticeTopicARNs are the notice topics of every site of the deployment (the topology's
// Peers), this site's first: its own by reference, the others' built from their names and
// regions with this stack's account and partition, which every site shares (Config.Validate),
// so that no stack refers to another.
func (s *site) noticeTopicARNs() []*string {
	arns := []*string{s.topics[topology.TopicNotice].TopicArn()}
	for _, p := range s.topo.Peers[1:] {
		arns = append(arns, s.stack.FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("sns"), Region: jsii.String(p.Region), Resource: jsii.String(p.NoticeTopic),
			ArnFormat: awscdk.ArnFormat_NO_RESOURCE_NAME,
		}))
	}
	return arns
}

// authServerStatements are the statements of an auth server policy; table adds reading
// the session table.
func (s *site) authServerStatements(instanceQueues *string, table bool) *[]awsiam.PolicyStatement {
	topicARNs := func(ids ...string) []*string {
		var arns []*string
		for _, id := range ids {
			if id == topology.TopicNotice {
				arns = append(arns, s.noticeTopicARNs()...) // every site's
				continue
			}
			arns = append(arns, s.topics[id].TopicArn())
		}
		return arns
	}
	stmt := func(sid string, actions []string, resources ...*string) awsiam.PolicyStatement {
		return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String(sid), Actions: jsii.Strings(actions...), Resources: &resources,
		})
	}
	stmts := []awsiam.PolicyStatement{
		// Publishing: this site's topics only (a destroy notice goes out on its own
		// site's notice topic, and reaches the other sites' instances through their
		// subscriptions to it).
		stmt("PublishOpsQueriesNotices", []string{"sns:Publish"},
			s.topics[topology.TopicOps].TopicArn(), s.topics[topology.TopicQuery].TopicArn(), s.topics[topology.TopicNotice].TopicArn()),
		// Publishing to a KMS-encrypted topic needs the publisher to use its key.
		stmt("UseTopicKey", []string{"kms:GenerateDataKey", "kms:Decrypt"}, s.key.KeyArn()),
		// Its own queue: found or made at Open (never purged), its attributes, policy
		// and tags set, its last-seen tag refreshed, received from. Others' queues of
		// the site: their tags and ARN read, and deleted once their instance is gone.
		stmt("OwnInstanceQueues", []string{
			"sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes",
			"sqs:TagQueue", "sqs:ListQueueTags", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteQueue",
		}, instanceQueues),
		// The sweep lists the site's instance queues by prefix; ListQueues has no
		// resource-level permissions.
		stmt("ListInstanceQueues", []string{"sqs:ListQueues"}, jsii.String("*")),
		// Subscribe only an instance queue of this site, and only as a queue, to the
		// site's reply topic and to every site's notice topic (cross-region subscriptions:
		// SNS delivers from a topic to a queue in another region, and needs no key of
		// the topic to do so; the queues use SQS-managed encryption).
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("SubscribeInstanceQueues"), Actions: jsii.Strings("sns:Subscribe"),
			Resources: ptrs(topicARNs(topology.TopicReply, topology.TopicNotice, topology.TopicLifecycle)),
			Conditions: &map[string]any{
				"StringEquals": map[string]any{"sns:Protocol": "sqs"},
				"StringLike":   map[string]any{"sns:Endpoint": instanceQueues},
			},
		}),
		// Replacing a subscription with an older filter, and removing those of a swept
		// queue, on every topic it subscribes to.
		stmt("ManageInstanceSubscriptions", []string{"sns:Unsubscribe", "sns:ListSubscriptionsByTopic"}, topicARNs(topology.TopicReply, topology.TopicNotice, topology.TopicLifecycle)...),
		// Open's start-up checks: every topic exists and can be used, every site's notice
		// topic included.
		stmt("CheckTopicsAtOpen", []string{"sns:GetTopicAttributes"}, topicARNs(topology.TopicOps, topology.TopicQuery, topology.TopicReply, topology.TopicNotice, topology.TopicLifecycle)...),
		// Unwrap the sealing keys at Open (client/kmskeys): Decrypt only, and only of
		// data keys made for sealing. Making keys (GenerateDataKey, Encrypt) is an
		// administrator's step (sessionctl seal-key new), not the auth servers'.
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("UnwrapSealKeys"), Actions: jsii.Strings("kms:Decrypt"),
			Resources: &[]*string{s.sealKey.KeyArn()},
			Conditions: &map[string]any{
				"StringEquals": map[string]any{"kms:EncryptionContext:" + topology.SealContextPurposeKey: topology.SealContextPurpose},
			},
		}),
	}
	if table {
		var indexARNs []*string
		for _, ix := range s.topo.Table.Indexes {
			indexARNs = append(indexARNs, s.stack.FormatArn(&awscdk.ArnComponents{
				Service: jsii.String("dynamodb"), Resource: jsii.String("table"),
				ResourceName: jsii.String(s.topo.Table.Name + "/index/" + ix.Name),
			}))
		}
		stmts = append(stmts,
			// A session is read with its logout item in one BatchGetItem (record.Table.Read);
			// List reads the logout items of the sessions the index lists the same way.
			stmt("ReadSessions", []string{"dynamodb:BatchGetItem"}, s.tableARN),
			// Degraded mode writes a logout to the table at once (client/degraded.go): the
			// session's logout item, and no other item. LeadingKeys are the partition keys
			// of the items the request writes, Attributes every attribute it names; as a
			// ForAllValues condition holds for an empty set too, Null requires the key.
			// StringLike matches "*" anywhere, so the key scheme needs no prefix of its own
			// (such as "L#<cluster>#<hash>") for IAM to tell logout items apart: their keys
			// keep their cluster's prefix, which clear-store deletes by. (Insert-only is the
			// client's condition expression, which IAM cannot name; a logout item holds no
			// more than a logout, which the instance may publish anyway.)
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid: jsii.String("WriteLogoutItems"), Actions: jsii.Strings("dynamodb:PutItem"), Resources: &[]*string{s.tableARN},
				Conditions: &map[string]any{
					"ForAllValues:StringLike":   map[string]any{"dynamodb:LeadingKeys": []any{"*" + topology.LogoutSuffix}},
					"ForAllValues:StringEquals": map[string]any{"dynamodb:Attributes": toAny(topology.LogoutAttributes)},
					"Null":                      map[string]any{"dynamodb:LeadingKeys": "false"},
				},
			}),
			stmt("ListUserSessions", []string{"dynamodb:Query"}, indexARNs...),
			// Open's start-up check: the table (with its index) exists and can be read,
			// so a wrong name stops Open instead of the first request.
			stmt("CheckTableAtOpen", []string{"dynamodb:DescribeTable"}, s.tableARN))
	}
	return &stmts
}

// toAny is ss as a JSON array for a policy condition.
func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, v := range ss {
		out[i] = v
	}
	return out
}

// nagAccount is the account as cdk-nag writes it in a finding: the id when the site
// names one, else the pseudo parameter.
func (s *site) nagAccount() string {
	if a := s.stack.Account(); !*awscdk.Token_IsUnresolved(a) {
		return *a
	}
	return "<AWS::AccountId>"
}

// outputs are named like the SESSIONHA_* variables a client reads (CloudFormation ids
// allow no underscores, so SESSIONHA_TABLE is SessionhaTable; outputs.EnvFile maps them
// back). No export names: nothing imports them, and exports would pin the values.
func (s *site) outputs(policy, busPolicy awsiam.ManagedPolicy) {
	out := func(envVar string, value *string, desc string) {
		awscdk.NewCfnOutput(s.stack, jsii.String(outputs.LogicalID(envVar)), &awscdk.CfnOutputProps{
			Value: value, Description: jsii.String(envVar + ": " + desc),
		})
	}
	out(outputs.Site, jsii.String(s.sc.Name), "the site's name")
	out(outputs.Table, jsii.String(s.topo.Table.Name), "the session table (the replica in this region)")
	for _, tp := range s.topo.Topics {
		out(tp.EnvVar, s.topics[tp.ID].TopicArn(), "the "+tp.ID+" topic")
	}
	out(outputs.NoticeTopicARNs, awscdk.Fn_Join(jsii.String(","), ptrs(s.noticeTopicARNs())),
		"every site's notice topic, this site's first, comma-separated: an instance subscribes its queue to each")
	out(outputs.AuthPolicyARN, policy.ManagedPolicyArn(), "attach to the auth servers' role")
	out(outputs.AuthBusPolicyARN, busPolicy.ManagedPolicyArn(), "attach to the role of bus-only auth servers (ReadPath bus, no table access) instead")
	out(s.topo.SealKey.EnvVar, s.sealKey.KeyArn(), "the site's seal key, which unwraps SESSIONHA_SEAL_KMS_KEYS (sessionctl seal-key new makes them)")
	out(outputs.Region, s.stack.Region(), "the site's region")
}

// allow adds one statement to a role's own policy.
func allow(role awsiam.Role, actions []string, resources ...*string) {
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings(actions...), Resources: &resources,
	}))
}

// ptrs points at a slice, as the CDK's list properties want.
func ptrs(s []*string) *[]*string { return &s }

// seconds is a whole-second CDK duration (Config.Validate rejects fractions).
func seconds(d time.Duration) awscdk.Duration {
	return awscdk.Duration_Seconds(jsii.Number(d.Seconds()))
}

// camel makes a construct id part of a topology ID: "ops-dlq" becomes "OpsDlq".
func camel(id string) string {
	var b strings.Builder
	for part := range strings.FieldsFuncSeq(id, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
