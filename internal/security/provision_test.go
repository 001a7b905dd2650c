package security_test

import (
	"testing"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestProvisionKafka: ACLs for other names, created by admin with
// ProvisionKafkaACLs, give the producer and the trainer those names, and
// running it again changes nothing. (The users are kfake's own: a SCRAM
// credential upserted through kafka-go is not accepted by kfake's login;
// deploy/local provisions users on the real Kafka, where it works.)
func TestProvisionKafka(t *testing.T) {
	tg := embeddedTarget(t)
	names := security.Names{TopicPrefix: "run-" + tg.sfx + ".", DeadLetter: "run-" + tg.sfx + ".dead", GroupPrefix: "run-trainer-" + tg.sfx, CentersPrefix: "centers."}
	admin := kafkaClient(t, tg, role(t, tg, security.RoleAdmin))
	for range 2 {
		if err := security.ProvisionKafkaACLs(testutil.Context(t), admin, names); err != nil {
			t.Fatal(err)
		}
	}
	if err := createTopics(t, admin, names.DeadLetter)[names.DeadLetter]; err != nil {
		t.Fatal(err)
	}
	topic := names.TopicPrefix + "byid"
	if err := createTopics(t, kafkaClient(t, tg, role(t, tg, security.RoleProducer)), topic)[topic]; err != nil {
		t.Fatalf("producer creating %s after provisioning: %v", topic, err)
	}
	if err := write(t, tg, role(t, tg, security.RoleProducer), topic); err != nil {
		t.Fatalf("producer writing %s: %v", topic, err)
	}
	if err := write(t, tg, role(t, tg, security.RoleProducer), names.DeadLetter); !authzFailed(err) {
		t.Errorf("producer writing %s: %v, want an authorization failure", names.DeadLetter, err)
	}
}
