package security

import (
	"encoding/json"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// The roles of a deployment. Each component runs with the credentials of
// exactly one; admin provisions the others and is used by no component.
const (
	// RoleProducer reads ids/ and announce/ in object storage and writes
	// the sample topics (never the dead-letter topic).
	RoleProducer = "producer"
	// RoleTrainer reads the sample topics, commits its consumer group,
	// writes the dead-letter topic, reads ids/, reads and writes
	// checkpoints/, and is the only role that publishes centers.
	RoleTrainer = "trainer"
	// RoleSubscriber reads the centers (replicas, ffc centers, ffc ids
	// --wait) and publishes nothing.
	RoleSubscriber = "subscriber"
	// RoleUploader writes images under ids/ and markers under announce/.
	RoleUploader = "uploader"
	// RoleAdmin creates users, ACLs and buckets; no component runs as it.
	RoleAdmin = "admin"
)

// Roles are the roles with credentials of their own, admin first.
func Roles() []string {
	return []string{RoleAdmin, RoleProducer, RoleTrainer, RoleSubscriber, RoleUploader}
}

// Names are the resource names the policies are written for. Topics are
// matched by prefix, so that a deployment may name its topics
// <TopicPrefix>anything (tests use unique suffixes).
type Names struct {
	// TopicPrefix starts every sample topic and the dead-letter topic.
	TopicPrefix string
	// DeadLetter is the dead-letter topic, written by the trainer only.
	DeadLetter string
	// GroupPrefix starts the trainers' consumer groups.
	GroupPrefix string
	// NotifyTopic is the topic of the bucket notifications the producer
	// reads (empty: none).
	NotifyTopic string
	// CentersPrefix starts every subject of the centers streams.
	CentersPrefix string
}

// DefaultNames are the names of schemas' defaults (samples.*,
// samples.deadletter, ffc-trainer, centers.*). They are repeated here
// because this package imports nothing of the pipeline; a test holds them
// equal.
func DefaultNames() Names {
	return Names{TopicPrefix: "samples.", DeadLetter: "samples.deadletter", GroupPrefix: "ffc-trainer",
		NotifyTopic: "ffc.s3.events", CentersPrefix: "centers."}
}

// acl is one ALLOW (or DENY) entry of a role.
func acl(role string, rt kafka.ResourceType, name string, pt kafka.PatternType, op kafka.ACLOperationType, allow bool) kafka.ACLEntry {
	perm := kafka.ACLPermissionTypeDeny
	if allow {
		perm = kafka.ACLPermissionTypeAllow
	}
	return kafka.ACLEntry{ResourceType: rt, ResourceName: name, ResourcePatternType: pt, Principal: "User:" + role,
		Host: "*", Operation: op, PermissionType: perm}
}

// KafkaACLs are the ACLs of role (none for roles without Kafka access).
// READ and WRITE imply DESCRIBE (KIP-253).
//
//   - producer: create, describe and write the sample topics; never
//     write the dead-letter topic (an explicit DENY wins over the prefix);
//     describe the trainers' group (its flow control reads their
//     committed offsets); read the notification topic.
//   - trainer: read the sample topics; read its groups (join, commit);
//     create and write the dead-letter topic.
func KafkaACLs(role string, n Names) []kafka.ACLEntry {
	const (
		topic, group = kafka.ResourceTypeTopic, kafka.ResourceTypeGroup
		lit, pre     = kafka.PatternTypeLiteral, kafka.PatternTypePrefixed
	)
	switch role {
	case RoleProducer:
		out := []kafka.ACLEntry{
			acl(role, topic, n.TopicPrefix, pre, kafka.ACLOperationTypeCreate, true),
			acl(role, topic, n.TopicPrefix, pre, kafka.ACLOperationTypeWrite, true),
			acl(role, topic, n.DeadLetter, lit, kafka.ACLOperationTypeWrite, false),
			acl(role, group, n.GroupPrefix, pre, kafka.ACLOperationTypeDescribe, true),
		}
		if n.NotifyTopic != "" {
			out = append(out, acl(role, topic, n.NotifyTopic, lit, kafka.ACLOperationTypeRead, true))
		}
		return out
	case RoleTrainer:
		return []kafka.ACLEntry{
			acl(role, topic, n.TopicPrefix, pre, kafka.ACLOperationTypeRead, true),
			acl(role, group, n.GroupPrefix, pre, kafka.ACLOperationTypeRead, true),
			acl(role, topic, n.DeadLetter, lit, kafka.ACLOperationTypeCreate, true),
			acl(role, topic, n.DeadLetter, lit, kafka.ACLOperationTypeWrite, true),
		}
	}
	return nil
}

// Permissions are a NATS user's subject permissions (allow lists; what
// is not listed is refused).
type Permissions struct {
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
}

// jsRead are the JetStream API subjects a reader of the centers streams
// needs: account and stream info, direct and stored message gets, and
// its own (ordered, ephemeral) consumers with their flow control.
func jsRead() []string {
	return []string{
		"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
		"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
		"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.DELETE.>",
		"$JS.API.CONSUMER.MSG.NEXT.>", "$JS.FC.>", "$JS.ACK.>",
	}
}

// NATSPermissions are the subject permissions of role; ok is false for a
// role without NATS access. Only the trainer publishes under the centers
// prefix and manages the streams; a subscriber's publish list holds only
// JetStream API requests that read.
func NATSPermissions(role string, n Names) (p Permissions, ok bool) {
	switch role {
	case RoleTrainer:
		pub := append([]string{n.CentersPrefix + ">", "$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*"}, jsRead()...)
		return Permissions{Publish: pub, Subscribe: []string{n.CentersPrefix + ">", "_INBOX.>"}}, true
	case RoleSubscriber:
		return Permissions{Publish: jsRead(), Subscribe: []string{n.CentersPrefix + ">", "_INBOX.>"}}, true
	}
	return Permissions{}, false
}

// S3Policy is the IAM policy document (JSON) of role in every bucket;
// ok is false for a role without object-storage access.
//
//   - every role: find out whether a bucket exists;
//   - uploader: create and list buckets, write and delete ids/,
//     announce/ and manifest.json (ffc ids remove deletes an ID's images);
//   - producer: list and read ids/ and announce/, set the bucket's
//     notification;
//   - trainer: list and read ids/, read, write and delete checkpoints/.
func S3Policy(role string) (doc []byte, ok bool) {
	type stmt struct {
		Effect    string         `json:"Effect"`
		Action    []string       `json:"Action"`
		Resource  []string       `json:"Resource"`
		Condition map[string]any `json:"Condition,omitempty"`
	}
	list := func(prefixes ...string) stmt {
		var like []string
		for _, p := range prefixes {
			like = append(like, p+"*")
		}
		return stmt{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::*"},
			Condition: map[string]any{"StringLike": map[string]any{"s3:prefix": like}}}
	}
	objects := func(actions []string, prefixes ...string) stmt {
		var res []string
		for _, p := range prefixes {
			res = append(res, "arn:aws:s3:::*/"+p+"*")
		}
		return stmt{Effect: "Allow", Action: actions, Resource: res}
	}
	// HEAD bucket (does it exist?) is authorized as s3:ListBucket without
	// a prefix; a listing always names one (minio-go sends prefix=).
	bucket := []stmt{{Effect: "Allow", Action: []string{"s3:GetBucketLocation"}, Resource: []string{"arn:aws:s3:::*"}},
		{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::*"},
			Condition: map[string]any{"Null": map[string]any{"s3:prefix": []string{"true"}}}}}
	var stmts []stmt
	switch role {
	case RoleUploader:
		// ffc data upload lists the whole bucket (it resumes) and writes
		// manifest.json.
		stmts = append(bucket, stmt{Effect: "Allow", Action: []string{"s3:CreateBucket", "s3:ListBucket"}, Resource: []string{"arn:aws:s3:::*"}},
			objects([]string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}, "ids/", "announce/", "manifest.json"))
	case RoleProducer:
		stmts = append(bucket, list("ids/", "announce/"), objects([]string{"s3:GetObject"}, "ids/", "announce/"),
			stmt{Effect: "Allow", Action: []string{"s3:GetBucketNotification", "s3:PutBucketNotification"}, Resource: []string{"arn:aws:s3:::*"}})
	case RoleTrainer:
		stmts = append(bucket, list("ids/", "checkpoints/"), objects([]string{"s3:GetObject"}, "ids/"),
			objects([]string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, "checkpoints/"))
	default:
		return nil, false
	}
	b, err := json.MarshalIndent(map[string]any{"Version": "2012-10-17", "Statement": stmts}, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("security: policy of %s: %v", role, err)) // static data: cannot fail
	}
	return b, true
}
